//! The data protection officer's report of what was shared with whom:
//! counts by force, source, month, policy and reason, and every disclosure,
//! amendment and retraction, built from verified log entries. Pure: entries
//! in, a [`Report`] out. `render` turns it into text, CSV, JSON or HTML.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use vigil_proto::audit::Entry;

/// One row of the report's detail: one disclosure, amendment or retraction.
#[derive(Debug, Clone, Serialize)]
pub struct Shared {
    /// RFC 3339 time.
    pub time: String,
    /// `disclosure`, `amendment` or `retraction`.
    pub kind: String,
    /// Id.
    pub id: String,
    /// Force it went to.
    pub force: String,
    /// Source of the record.
    pub source: String,
    /// Category (a force's own report only; `sealed` otherwise).
    pub category: String,
    /// Evidence kinds (disclosures).
    pub evidence: String,
    /// Policy version (disclosures) or reason (retractions).
    pub policy_or_reason: String,
}

/// The report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Who produced it: `auditor <code>` or `force <code>`.
    pub produced_by: String,
    /// Log size covered.
    pub log_size: u64,
    /// Filters applied.
    pub filters: String,
    /// Totals by entry type.
    pub totals: BTreeMap<String, u64>,
    /// Disclosures by force.
    pub by_force: BTreeMap<String, u64>,
    /// Disclosures by source.
    pub by_source: BTreeMap<String, u64>,
    /// Disclosures by category (force reports only).
    pub by_category: BTreeMap<String, u64>,
    /// Disclosures by month (YYYY-MM).
    pub by_month: BTreeMap<String, u64>,
    /// Disclosures by policy version.
    pub by_policy: BTreeMap<String, u64>,
    /// Retractions by reason.
    pub retractions_by_reason: BTreeMap<String, u64>,
    /// Amendments by reason.
    pub amendments_by_reason: BTreeMap<String, u64>,
    /// Roster sync batches by force.
    pub roster_batches_by_force: BTreeMap<String, u64>,
    /// National batches by source.
    pub national_batches_by_source: BTreeMap<String, u64>,
    /// Pre-employment checks by force (applicants checked).
    pub checks_by_force: BTreeMap<String, u64>,
    /// Candidates counted (never disclosed).
    pub candidates: u64,
    /// Policy and epoch changes.
    pub changes: Vec<String>,
    /// Every disclosure, amendment and retraction.
    pub shared: Vec<Shared>,
    /// Problems found while verifying.
    pub problems: Vec<String>,
}

/// Builds a report from verified entries (and, for a force, categories
/// opened from its inbox: id → category).
pub fn report(
    entries: &[Vec<u8>],
    force: Option<&str>,
    since: Option<&str>,
    categories: &HashMap<String, String>,
) -> Report {
    let mut r = Report::default();
    let keep_force = |f: &str| force.is_none_or(|x| x == f);
    let keep_time = |t: &str| since.is_none_or(|s| t >= s);
    for bytes in entries {
        let Ok(e) = Entry::parse(bytes) else { continue };
        if !keep_time(e.time()) {
            continue;
        }
        match &e {
            Entry::Disclosure { time, id, force: f, source, agreeing, policy_version, .. } if keep_force(f) => {
                *r.totals.entry("disclosure".into()).or_default() += 1;
                *r.by_force.entry(f.clone()).or_default() += 1;
                *r.by_source.entry(source.clone()).or_default() += 1;
                *r.by_month.entry(time.get(..7).unwrap_or("").to_string()).or_default() += 1;
                *r.by_policy.entry(policy_version.clone()).or_default() += 1;
                let category = categories.get(id).cloned().unwrap_or_else(|| "sealed".into());
                if force.is_some() {
                    *r.by_category.entry(category.clone()).or_default() += 1;
                }
                r.shared.push(Shared {
                    time: time.clone(),
                    kind: "disclosure".into(),
                    id: id.clone(),
                    force: f.clone(),
                    source: source.clone(),
                    category,
                    evidence: agreeing.join(","),
                    policy_or_reason: policy_version.clone(),
                });
            }
            Entry::Amendment { time, id, amends, force: f, source, agreeing, reason, .. } if keep_force(f) => {
                *r.totals.entry("amendment".into()).or_default() += 1;
                *r.amendments_by_reason.entry(reason.clone()).or_default() += 1;
                r.shared.push(Shared {
                    time: time.clone(),
                    kind: "amendment".into(),
                    id: format!("{id} (amends {amends})"),
                    force: f.clone(),
                    source: source.clone(),
                    category: categories.get(id).cloned().unwrap_or_else(|| "sealed".into()),
                    evidence: agreeing.join(","),
                    policy_or_reason: reason.clone(),
                });
            }
            Entry::Retraction { time, id, force: f, source, reason, .. } if keep_force(f) => {
                *r.totals.entry("retraction".into()).or_default() += 1;
                *r.retractions_by_reason.entry(reason.clone()).or_default() += 1;
                r.shared.push(Shared {
                    time: time.clone(),
                    kind: "retraction".into(),
                    id: id.clone(),
                    force: f.clone(),
                    source: source.clone(),
                    category: String::new(),
                    evidence: String::new(),
                    policy_or_reason: reason.clone(),
                });
            }
            Entry::RosterBatch { force: f, candidates, .. } if keep_force(f) => {
                *r.totals.entry("roster_batch".into()).or_default() += 1;
                *r.roster_batches_by_force.entry(f.clone()).or_default() += 1;
                r.candidates += candidates;
            }
            Entry::NationalBatch { source, candidates, .. } if force.is_none() => {
                *r.totals.entry("national_batch".into()).or_default() += 1;
                *r.national_batches_by_source.entry(source.clone()).or_default() += 1;
                r.candidates += candidates;
            }
            Entry::Check { force: f, applicants, candidates, .. } if keep_force(f) => {
                let candidates = candidates.unwrap_or(0);
                *r.totals.entry("check".into()).or_default() += 1;
                *r.checks_by_force.entry(f.clone()).or_default() += applicants;
                r.candidates += candidates;
            }
            Entry::Policy { time, version, sha256, disclosures, amendments, retractions } => {
                r.changes.push(format!(
                    "{time}: policy {version} (sha256 {}); every pair decided again: {disclosures} disclosed, \
                     {amendments} amended, {retractions} retracted",
                    sha256.get(..16).unwrap_or("")
                ));
            }
            Entry::Epoch { time, epoch, previous, shredded, dropped_subjects, dropped_records, retractions } => {
                r.changes.push(match (previous, shredded) {
                    (Some(p), _) => format!("{time}: key epoch {epoch}, epoch {p} still accepted while parties move"),
                    (None, Some(_)) => format!(
                        "{time}: key epoch {epoch}; the previous epoch's tokens dropped ({dropped_subjects} subjects and \
                         {dropped_records} records not re-sent deleted, {retractions} retractions)"
                    ),
                    (None, None) => format!("{time}: key epoch {epoch}"),
                })
            }
            _ => {}
        }
    }
    r.filters = format!("force: {}; since: {}", force.unwrap_or("all"), since.unwrap_or("the start"));
    r
}
