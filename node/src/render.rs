//! Everything the `vigil-node` command prints, as text: the inbox, the
//! audit report (text, CSV, JSON or the HTML page of [`crate::report_html`]),
//! a check's outcome, and the one-line summaries of sync, feed and audit
//! verification. Pure: values in, strings out; `main` writes them.

use std::collections::BTreeMap;

use crate::audit::Verified;
use crate::check::CheckOutcome;
use crate::config::NodeRole;
use crate::error::NodeError;
use crate::inbox::Item;
use crate::report::Report;
use crate::sync::Summary;

/// The inbox as `table`, `csv` or `json`.
pub fn inbox(items: &[Item], format: &str) -> Result<String, NodeError> {
    match format {
        "json" => serde_json::to_string_pretty(items).map_err(|e| NodeError::failed(e.to_string())),
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let header = [
                "id",
                "status",
                "state",
                "retraction_reason",
                "employee_id",
                "name",
                "role",
                "source",
                "record_id",
                "category",
                "event_date",
                "probability",
                "fields",
                "evidence",
                "version",
                "changes",
                "pattern",
                "policy_version",
                "received",
                "note",
            ];
            let err = |e: csv::Error| NodeError::failed(e.to_string());
            w.write_record(header).map_err(err)?;
            for i in items {
                w.write_record([
                    i.id.as_str(),
                    &i.status,
                    &i.state,
                    &i.retraction_reason,
                    &i.employee_id,
                    &i.name,
                    &i.role,
                    &i.source,
                    &i.record_id,
                    &i.category,
                    &i.event_date,
                    &format!("{:.6}", i.probability),
                    &i.fields,
                    &i.evidence.join(";"),
                    &i.version.to_string(),
                    &i.changes.join(" | "),
                    if i.pattern { "yes" } else { "no" },
                    &i.policy_version,
                    &i.received,
                    &i.note,
                ])
                .map_err(err)?;
            }
            let bytes = w.into_inner().map_err(|e| NodeError::failed(e.to_string()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        "table" => {
            let header = [
                "ID",
                "STATUS",
                "STATE",
                "EMPLOYEE",
                "NAME",
                "ROLE",
                "CATEGORY",
                "SOURCE",
                "RECORD",
                "EVENT",
                "PATTERN",
                "PROBABILITY",
                "EVIDENCE",
            ];
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        i.id.clone(),
                        i.status.clone(),
                        if i.state == "active" && i.version > 1 {
                            format!("active (v{}, amended)", i.version)
                        } else if i.state == "active" {
                            "active".into()
                        } else {
                            format!("retracted ({})", i.retraction_reason)
                        },
                        i.employee_id.clone(),
                        i.name.clone(),
                        i.role.clone(),
                        i.category.clone(),
                        i.source.clone(),
                        i.record_id.clone(),
                        i.event_date.clone(),
                        if i.pattern { "PATTERN".into() } else { String::new() },
                        probability(i.probability),
                        i.fields.clone(),
                    ]
                })
                .collect();
            Ok(table(&header, &rows))
        }
        other => Err(NodeError::config(format!("unknown format {other:?}: use table, csv or json"))),
    }
}

/// A match probability for people: four decimals, or how close to
/// certain it is (`>0.9999`).
pub fn probability(p: f64) -> String {
    if p >= 0.99995 { ">0.9999".into() } else { format!("{p:.4}") }
}

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Renders a report as `table`, `csv`, `json` or `html`.
pub fn audit_report(r: &Report, format: &str) -> Result<String, NodeError> {
    match format {
        "json" => serde_json::to_string_pretty(r).map_err(|e| NodeError::failed(e.to_string())),
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let err = |e: csv::Error| NodeError::failed(e.to_string());
            w.write_record(["time", "kind", "id", "force", "source", "category", "evidence", "policy_or_reason"])
                .map_err(err)?;
            for s in &r.shared {
                w.write_record([
                    &s.time,
                    &s.kind,
                    &s.id,
                    &s.force,
                    &s.source,
                    &s.category,
                    &s.evidence,
                    &s.policy_or_reason,
                ])
                .map_err(err)?;
            }
            let bytes = w.into_inner().map_err(|e| NodeError::failed(e.to_string()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        "table" => {
            let mut s = format!("Vigil audit report ({}), log size {}, {}\n", r.produced_by, r.log_size, r.filters);
            let section = |s: &mut String, title: &str, m: &BTreeMap<String, u64>| {
                if m.is_empty() {
                    return;
                }
                s.push_str(&format!("\n{title}\n"));
                let rows: Vec<Vec<String>> = m.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
                s.push_str(&table(&["", "COUNT"], &rows));
            };
            section(&mut s, "Entries", &r.totals);
            section(&mut s, "Disclosures by force", &r.by_force);
            section(&mut s, "Disclosures by source", &r.by_source);
            section(&mut s, "Disclosures by category", &r.by_category);
            section(&mut s, "Disclosures by month", &r.by_month);
            section(&mut s, "Disclosures by policy", &r.by_policy);
            section(&mut s, "Retractions by reason", &r.retractions_by_reason);
            section(&mut s, "Amendments by reason", &r.amendments_by_reason);
            section(&mut s, "Roster batches by force", &r.roster_batches_by_force);
            section(&mut s, "National batches by source", &r.national_batches_by_source);
            section(&mut s, "Applicants checked by force", &r.checks_by_force);
            s.push_str(&format!("\nCandidates counted (never disclosed): {}\n", r.candidates));
            for c in &r.changes {
                s.push_str(&format!("change: {c}\n"));
            }
            for p in &r.problems {
                s.push_str(&format!("PROBLEM: {p}\n"));
            }
            Ok(s)
        }
        "html" => Ok(crate::report_html::render(r)),
        other => Err(NodeError::config(format!("unknown format {other:?}: use table, csv, json or html"))),
    }
}

/// A check's outcome as `table`, `csv` or `json`.
pub fn check(out: &CheckOutcome, format: &str) -> Result<String, NodeError> {
    let fail = |e: String| NodeError::failed(e);
    match format {
        "json" => serde_json::to_string_pretty(out).map(|s| s + "\n").map_err(|e| fail(e.to_string())),
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let err = |e: csv::Error| fail(e.to_string());
            w.write_record([
                "applicant_id",
                "name",
                "source",
                "record_id",
                "category",
                "event_date",
                "probability",
                "fields",
                "evidence",
            ])
            .map_err(err)?;
            for m in &out.matches {
                w.write_record([
                    &m.applicant_id,
                    &m.name,
                    &m.source,
                    &m.record_id,
                    &m.category,
                    &m.event_date,
                    &format!("{:.6}", m.probability),
                    &m.fields,
                    &m.evidence.join(";"),
                ])
                .map_err(err)?;
            }
            let bytes = w.into_inner().map_err(|e| fail(e.to_string()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => {
            let mut s = format!(
                "check {}: {} applicants checked, {} confirmed matches, policy {}\n",
                out.request_id,
                out.applicants,
                out.matches.len(),
                out.policy_version
            );
            let rows: Vec<Vec<String>> = out
                .matches
                .iter()
                .map(|m| {
                    vec![
                        m.applicant_id.clone(),
                        m.name.clone(),
                        m.category.clone(),
                        m.source.clone(),
                        m.record_id.clone(),
                        m.event_date.clone(),
                        probability(m.probability),
                        m.fields.clone(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                s.push_str(&table(
                    &["APPLICANT", "NAME", "CATEGORY", "SOURCE", "RECORD", "EVENT", "PROBABILITY", "EVIDENCE"],
                    &rows,
                ));
            }
            Ok(s)
        }
    }
}

/// The summary of a roster sync.
pub fn sync_summary(code: &str, s: &Summary) -> String {
    format!(
        "sync {code}: {} rows read, {} refused; {} added, {} changed, {} removed, {} unchanged; {} batches ({} retries already applied); {} enrolled at the coordinator\nreport: {}\n",
        s.rows, s.refused, s.added, s.changed, s.removed, s.unchanged, s.batches, s.replayed, s.total, s.report
    )
}

/// The summary of a national feed.
pub fn feed_summary(code: &str, s: &Summary) -> String {
    let mut out = format!(
        "feed {code}: {} rows read, {} refused; {} added, {} changed, {} withdrawn, {} unchanged; {} batches ({} retries already applied); {} records at the coordinator\n",
        s.rows, s.refused, s.added, s.changed, s.removed, s.unchanged, s.batches, s.replayed, s.total
    );
    if !s.report.is_empty() {
        out.push_str(&format!("report: {}\n", s.report));
    }
    out
}

/// What `audit verify` found, in one line (problems are listed apart).
pub fn verified(role: NodeRole, v: &Verified) -> String {
    let counts: Vec<String> = v.entries.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut s = if role == NodeRole::Auditor {
        format!(
            "log verified at size {}: signature, consistency and root hold; entries: {}\n",
            v.size,
            counts.join(", ")
        )
    } else {
        format!(
            "log verified at size {}: {} disclosures in this inbox are in the log ({})\n",
            v.size,
            v.inbox_proven,
            counts.join(", ")
        )
    };
    if !v.witnesses.is_empty() {
        s.push_str(&format!("checkpoint cosigned by witnesses: {}\n", v.witnesses.join(", ")));
    }
    if v.awaiting_witnesses > 0 {
        s.push_str(&format!(
            "{} newer disclosures await a witnessed checkpoint that covers them (proven at a later audit)\n",
            v.awaiting_witnesses
        ));
    }
    s
}
