//! The audit report as one self-contained HTML page: inline CSS and SVG
//! bar charts, no scripts and no external resources, so it opens in any
//! browser on a locked-down machine.

use std::collections::BTreeMap;

use crate::report::Report;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A horizontal bar chart of `data`.
fn chart(title: &str, data: &BTreeMap<String, u64>) -> String {
    if data.is_empty() {
        return String::new();
    }
    let max = data.values().copied().max().unwrap_or(1).max(1) as f64;
    let row = 26;
    let label_w = 190;
    let bar_w = 420.0;
    let h = data.len() * row + 10;
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" width="{}" height="{h}" viewBox="0 0 {} {h}">"#,
        esc(title),
        esc(title),
        label_w + 480,
        label_w + 480
    );
    for (i, (k, v)) in data.iter().enumerate() {
        let y = i * row + 4;
        let w = (*v as f64 / max * bar_w).max(1.0);
        svg.push_str(&format!(
            r##"<text x="{}" y="{}" text-anchor="end" class="l">{}</text><rect x="{}" y="{y}" width="{w:.1}" height="18" rx="2" fill="#1d5e8c"><title>{}: {v}</title></rect><text x="{:.1}" y="{}" class="v">{v}</text>"##,
            label_w - 8,
            y + 14,
            esc(k),
            label_w,
            esc(k),
            label_w as f64 + w + 6.0,
            y + 14
        ));
    }
    svg.push_str("</svg></figure>");
    svg
}

fn table(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!("<h2>{}</h2><table><thead><tr>", esc(title));
    for h in header {
        s.push_str(&format!("<th>{}</th>", esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{}</td>", esc(c)));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let total = |k: &str| r.totals.get(k).copied().unwrap_or(0);
    let mut body = format!(
        r#"<h1>Vigil audit report</h1>
<p class="meta">Produced by {} from the transparency log at size {} (every entry verified against the signed checkpoint). Filters: {}.</p>
<div class="cards">
<div class="card"><b>{}</b><span>disclosures</span></div>
<div class="card"><b>{}</b><span>retractions</span></div>
<div class="card"><b>{}</b><span>roster batches</span></div>
<div class="card"><b>{}</b><span>national batches</span></div>
<div class="card"><b>{}</b><span>pre-employment checks</span></div>
<div class="card"><b>{}</b><span>candidates counted, never disclosed</span></div>
</div>"#,
        esc(&r.produced_by),
        r.log_size,
        esc(&r.filters),
        total("disclosure"),
        total("retraction"),
        total("roster_batch"),
        total("national_batch"),
        total("check"),
        r.candidates
    );
    if !r.problems.is_empty() {
        body.push_str("<div class=\"problems\"><h2>Problems found</h2><ul>");
        for p in &r.problems {
            body.push_str(&format!("<li>{}</li>", esc(p)));
        }
        body.push_str("</ul></div>");
    } else {
        body.push_str("<p class=\"ok\">The log's invariants hold: every disclosure, amendment and retraction follows the batch that caused it, ids are unique, and every amendment or retraction names an earlier disclosure still in force.</p>");
    }
    body.push_str("<h2>What was shared</h2><div class=\"charts\">");
    body.push_str(&chart("Disclosures by month", &r.by_month));
    body.push_str(&chart("Disclosures by force", &r.by_force));
    body.push_str(&chart("Disclosures by source", &r.by_source));
    if !r.by_category.is_empty() {
        body.push_str(&chart("Disclosures by category", &r.by_category));
    }
    body.push_str(&chart("Disclosures by policy version", &r.by_policy));
    body.push_str(&chart("Retractions by reason", &r.retractions_by_reason));
    body.push_str(&chart("Amendments by reason", &r.amendments_by_reason));
    body.push_str(&chart("Roster sync batches by force", &r.roster_batches_by_force));
    body.push_str(&chart("National batches by source", &r.national_batches_by_source));
    body.push_str(&chart("Applicants checked by force", &r.checks_by_force));
    body.push_str("</div>");
    if r.by_category.is_empty() {
        body.push_str("<p class=\"note\">Categories travel sealed from the national source to the force; the log cannot count them. A force's own report shows its disclosures by category.</p>");
    }
    let changes: Vec<Vec<String>> = r.changes.iter().map(|c| vec![c.clone()]).collect();
    body.push_str(&table("Policy and key changes", &["change"], &changes));
    let rows: Vec<Vec<String>> = r
        .shared
        .iter()
        .map(|s| {
            vec![
                // "2026-11-23 01:13:20.283Z" and "nino, name_dob": so that
                // the page wraps at spaces, not mid-word or off the screen.
                s.time.replacen('T', " ", 1),
                s.kind.clone(),
                s.id.clone(),
                s.force.clone(),
                s.source.clone(),
                s.category.clone(),
                s.evidence.replace(',', ", "),
                s.policy_or_reason.clone(),
            ]
        })
        .collect();
    body.push_str(&table(
        "Every disclosure and retraction",
        &["time", "kind", "id", "force", "source", "category", "evidence", "policy / reason"],
        &rows,
    ));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil audit report</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b;padding:0 1rem}}
h1{{font-size:1.6rem;margin-bottom:.2rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}}
.meta,.note{{color:#555}} .ok{{color:#1f6f2f}} .problems{{background:#fdecea;border:1px solid #d93025;padding:.5rem 1rem}}
.cards{{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}} .card{{border:1px solid #ccd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}}
.card b{{display:block;font-size:1.5rem}} .card span{{color:#555;font-size:.85rem}}
.charts{{display:flex;flex-wrap:wrap;gap:1rem}} figure{{margin:0}} figcaption{{font-weight:600;margin:.5rem 0}}
svg .l{{font-size:12px;fill:#333}} svg .v{{font-size:12px;fill:#333}}
table{{border-collapse:collapse;width:100%;font-size:.85rem}} th,td{{border-bottom:1px solid #eee;text-align:left;padding:.25rem .4rem}} th{{background:#f4f6f8}}
td{{overflow-wrap:break-word}} td:first-child,td:nth-child(2),td:nth-child(3){{white-space:nowrap}}
</style></head><body>
{body}
<p class="note">No personal data appears in this report: subjects and records are opaque references in the log; names stay on each force's machine.</p>
</body></html>
"#
    )
}
