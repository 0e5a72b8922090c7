//! The professional standards department's inbox: disclosures opened and
//! joined with the force's own roster, on the force's own machine.
//!
//! One item per case: a disclosure and its amendments (a record's details
//! or the evidence changed and the pair still confirms) are one case with
//! one review status and note; the item shows the latest version and what
//! each amendment changed. A retraction ends the case.
//!
//! Ranking: disclosures in force before retracted ones; then by category
//! severity (docs/formats.md); then people with several distinct records in
//! force (a *pattern*) first; then newest first.

use prost::Message;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use vigil_proto::audit::Entry;
use vigil_proto::v1::{Disclosure, DisclosureType};

use crate::error::NodeError;
use crate::keyfile::Keys;
use crate::local::{LocalStore, ReviewState};
use vigil_identity::category;

/// One disclosure as the inbox shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Disclosure id.
    pub id: String,
    /// Review status: new, under_review, closed.
    pub status: String,
    /// `active`, or `retracted` when the coordinator withdrew it.
    pub state: String,
    /// Why it was retracted, if it was.
    pub retraction_reason: String,
    /// Employee number.
    pub employee_id: String,
    /// Name from the roster.
    pub name: String,
    /// Role from the roster.
    pub role: String,
    /// Source of the record.
    pub source: String,
    /// The source's record id.
    pub record_id: String,
    /// Category.
    pub category: String,
    /// Event date.
    pub event_date: String,
    /// The policy's probability that employee and record are the same
    /// person (latest version).
    pub probability: f64,
    /// The evidence by field (latest version): `F3 S2 D3 P0 N-`, a level per
    /// field (forename, surname, date of birth, postcode, NI number; higher
    /// agrees more, 0 is no agreement seen, `-` where a side lacks the field;
    /// docs/matching.md).
    pub fields: String,
    /// Key kinds that agree (latest version).
    pub evidence: Vec<String>,
    /// The case's version: 1, then one more for each amendment.
    pub version: u32,
    /// What each amendment changed, oldest first (empty if none).
    pub changes: Vec<String>,
    /// Several distinct records in force for this person.
    pub pattern: bool,
    /// Policy version.
    pub policy_version: String,
    /// When the coordinator created it (RFC 3339).
    pub created: String,
    /// When it arrived (RFC 3339).
    pub received: String,
    /// Milliseconds from creation at the coordinator to storage here.
    pub latency_ms: i64,
    /// Reviewer's note.
    pub note: String,
    #[serde(skip)]
    rank: (u8, usize, u8, i64),
}

fn kinds(d: &Disclosure) -> Vec<String> {
    vigil_proto::KeyKind::names_of_wire(&d.agreeing)
}

/// What changed from one version of a case to the next, in words (the
/// details are opened here, on the force's machine).
fn describe_change(
    before: &(String, String, String),
    after: &(String, String, String),
    ev: (&[String], &[String]),
    strength: ((f64, &str), (f64, &str)),
) -> String {
    let mut parts = Vec::new();
    let ((p0, f0), (p1, f1)) = strength;
    if format!("{p0:.4}") != format!("{p1:.4}") || f0 != f1 {
        parts.push(format!("probability {p0:.4} → {p1:.4} ({f0} → {f1})"));
    }
    if before.0 != after.0 {
        parts.push(format!("record id {} → {}", before.0, after.0));
    }
    if before.1 != after.1 {
        parts.push(format!("category {} → {}", before.1, after.1));
    }
    if before.2 != after.2 {
        let show = |d: &str| if d.is_empty() { "(none)".to_string() } else { d.to_string() };
        parts.push(format!("event date {} → {}", show(&before.2), show(&after.2)));
    }
    let added: Vec<&String> = ev.1.iter().filter(|k| !ev.0.contains(k)).collect();
    let dropped: Vec<&String> = ev.0.iter().filter(|k| !ev.1.contains(k)).collect();
    if !added.is_empty() || !dropped.is_empty() {
        let mut e = Vec::new();
        e.extend(added.iter().map(|k| format!("+{k}")));
        e.extend(dropped.iter().map(|k| format!("-{k}")));
        parts.push(format!("evidence {}", e.join(" ")));
    }
    if parts.is_empty() { "no visible change".into() } else { parts.join("; ") }
}

/// The case a disclosure id belongs to: itself, or for an amendment the
/// disclosure it amends. `None` if the id is not in the inbox.
pub fn case_of(store: &LocalStore, id: &str) -> Result<Option<String>, NodeError> {
    let fail = |e: crate::local::LocalError| NodeError::failed(e.to_string());
    let Some(bytes) = store.inbox_message(id).map_err(fail)? else { return Ok(None) };
    let d = Disclosure::decode(bytes.as_slice()).map_err(|_| NodeError::failed("corrupt inbox entry"))?;
    Ok(Some(if d.r#type == DisclosureType::Amendment as i32 { d.amends } else { d.id }))
}

fn unseal(store: &LocalStore, keys: &Keys, d: &Disclosure) -> (String, String, String) {
    let wraps = match d.sealed.as_ref().filter(|s| !s.wrap_kinds.is_empty()) {
        Some(s) => crate::keyservice::unpack_wraps(&store.wraps_of(&d.subject, s.epoch).unwrap_or_default()),
        None => Vec::new(),
    };
    let o = keys.open(&d.source, &d.record_ref, d.sealed.as_ref(), &wraps);
    (o.record_id, o.category, o.event_date)
}

/// Builds the ranked inbox.
pub fn build(store: &LocalStore, keys: &Keys) -> Result<Vec<Item>, NodeError> {
    let fail = |e: crate::local::LocalError| NodeError::failed(e.to_string());
    let raw = store.inbox().map_err(fail)?;
    let mut disclosures: Vec<(Disclosure, ReviewState)> = Vec::new();
    let mut retracted: HashMap<String, String> = HashMap::new();
    // Amendments by the case they amend, received in any order.
    let mut amendments: HashMap<String, Vec<(Disclosure, ReviewState)>> = HashMap::new();
    for (_, bytes, st) in raw {
        let d = Disclosure::decode(bytes.as_slice()).map_err(|_| NodeError::failed("corrupt inbox entry"))?;
        if d.r#type == DisclosureType::Amendment as i32 {
            amendments.entry(d.amends.clone()).or_default().push((d, st));
        } else if d.r#type == DisclosureType::Retraction as i32 {
            let reason = d
                .audit
                .as_ref()
                .and_then(|a| Entry::parse(&a.entry).ok())
                .and_then(|e| match e {
                    Entry::Retraction { reason, .. } => Some(reason),
                    _ => None,
                })
                .unwrap_or_default();
            retracted.insert(d.retracts.clone(), reason);
        } else {
            disclosures.push((d, st));
        }
    }
    // Patterns: distinct records in force per subject.
    let mut per_subject: HashMap<Vec<u8>, HashSet<(String, Vec<u8>)>> = HashMap::new();
    for (d, _) in &disclosures {
        if !retracted.contains_key(&d.id) {
            per_subject.entry(d.subject.to_vec()).or_default().insert((d.source.clone(), d.record_ref.to_vec()));
        }
    }
    let mut items = Vec::with_capacity(disclosures.len());
    for (first, st) in disclosures {
        let mut versions = amendments.remove(&first.id).unwrap_or_default();
        versions.sort_by_key(|(a, _)| a.version);
        let mut details = unseal(store, keys, &first);
        let mut evidence = kinds(&first);
        let mut strength = (first.probability, first.fields.clone());
        let mut changes = Vec::new();
        let mut latest_ms = st.received_ms;
        for (a, ast) in &versions {
            let next = unseal(store, keys, a);
            let next_ev = kinds(a);
            changes.push(format!(
                "v{} {}: {}",
                a.version,
                vigil_proto::time::rfc3339(a.created_unix_ms),
                describe_change(
                    &details,
                    &next,
                    (&evidence, &next_ev),
                    ((strength.0, &strength.1), (a.probability, &a.fields))
                )
            ));
            details = next;
            evidence = next_ev;
            strength = (a.probability, a.fields.clone());
            latest_ms = latest_ms.max(ast.received_ms);
        }
        let d = versions.pop().map(|(a, _)| a).unwrap_or(first.clone());
        let (record_id, cat, event_date) = details;
        let (employee_id, name, role) = match store.employee_of(&d.subject).map_err(fail)? {
            Some((emp, e)) => (emp, format!("{} {}", e.forenames, e.surname), e.role),
            None => ("(not enrolled)".into(), String::new(), String::new()),
        };
        let reason = retracted.get(&first.id).cloned();
        let active = reason.is_none();
        let pattern = active && per_subject.get(d.subject.as_ref()).is_some_and(|s| s.len() >= 2);
        let severity = category::rank(&cat).unwrap_or(category::CATEGORIES.len());
        items.push(Item {
            id: first.id.clone(),
            status: st.status.as_str().to_string(),
            state: if active { "active".into() } else { "retracted".into() },
            retraction_reason: reason.unwrap_or_default(),
            employee_id,
            name,
            role,
            source: d.source.clone(),
            record_id,
            category: cat,
            event_date,
            probability: d.probability,
            fields: d.fields.clone(),
            evidence,
            version: d.version.max(1),
            changes,
            pattern,
            policy_version: d.policy_version.clone(),
            created: vigil_proto::time::rfc3339(first.created_unix_ms),
            received: vigil_proto::time::rfc3339(st.received_ms),
            latency_ms: st.received_ms - first.created_unix_ms,
            note: st.note,
            rank: (u8::from(!active), severity, u8::from(!pattern), -latest_ms),
        });
    }
    items.sort_by(|a, b| a.rank.cmp(&b.rank).then_with(|| a.id.cmp(&b.id)));
    Ok(items)
}
