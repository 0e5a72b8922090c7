//! The invariants of a Vigil transparency log, checked over its entries
//! in order (docs/audit.md): the check a data protection officer's `audit
//! verify` runs after the log's signature, consistency and root hold.
//! Pure: entries in, counts and problems out.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::audit::Entry;

/// (force, subject, source, record reference) of a log entry.
type Pair = (String, String, String, String);

/// Checks the log's invariants over all entries:
/// - every entry parses;
/// - a batch entry (or a policy entry, whose new policy decides every pair
///   again) is followed by exactly the disclosures, amendments and
///   retractions it announces, and those appear nowhere else;
/// - ids are unique;
/// - an amendment or retraction names an earlier disclosure of the same
///   pair that is still in force; an amendment's version is one more than
///   the case's last.
pub fn check(entries: &[Vec<u8>]) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    // Cases in force: id → (pair, version).
    let mut cases: HashMap<String, (Pair, u32)> = HashMap::new();
    let mut disclosed: HashSet<String> = HashSet::new();
    let mut ids: HashSet<String> = HashSet::new();
    // The key service's log: evaluations so far per (caller, epoch).
    let mut evaluated: HashMap<(String, u32), u64> = HashMap::new();
    // After a batch entry: (its index, announced [disclosures, amendments,
    // retractions], seen so far).
    let mut expect: Option<(usize, [u64; 3], [u64; 3])> = None;
    let announced = |at: usize, want: [u64; 3], seen: [u64; 3]| {
        format!(
            "batch at entry {at} announces {} disclosures, {} amendments and {} retractions; {}, {} and {} follow",
            want[0], want[1], want[2], seen[0], seen[1], seen[2]
        )
    };
    for (i, bytes) in entries.iter().enumerate() {
        let e = match Entry::parse(bytes) {
            Ok(e) => e,
            Err(err) => {
                problems.push(format!("entry {i} is not a valid entry: {err}"));
                continue;
            }
        };
        *counts.entry(e.kind().to_string()).or_default() += 1;
        let slot = match e {
            Entry::Disclosure { .. } => Some(0),
            Entry::Amendment { .. } => Some(1),
            Entry::Retraction { .. } => Some(2),
            _ => None,
        };
        match (expect.as_mut(), slot) {
            (Some((_, _, seen)), Some(k)) => seen[k] += 1,
            (Some((at, want, seen)), None) => {
                if want != seen {
                    problems.push(announced(*at, *want, *seen));
                }
                expect = None;
            }
            (None, Some(_)) => problems.push(format!("entry {i} ({}) does not follow a batch entry", e.kind())),
            (None, None) => {}
        }
        if let Entry::Evaluation { caller, epoch, count, used, .. } = &e {
            let before = evaluated.entry((caller.clone(), *epoch)).or_insert(0);
            if *used != *before + count {
                problems.push(format!(
                    "entry {i}: {caller} had {before} evaluations in epoch {epoch}; {count} more cannot make {used}"
                ));
            }
            *before = *used;
        }
        match &e {
            Entry::RosterBatch { disclosures, amendments, retractions, .. }
            | Entry::NationalBatch { disclosures, amendments, retractions, .. }
            | Entry::Policy { disclosures, amendments, retractions, .. } => {
                expect = Some((i, [*disclosures, *amendments, *retractions], [0; 3]));
            }
            Entry::Disclosure { id, force, subject, source, record_ref, .. } => {
                if !ids.insert(id.clone()) {
                    problems.push(format!("entry {i}: disclosure id {id} appears twice"));
                }
                disclosed.insert(id.clone());
                cases.insert(id.clone(), ((force.clone(), subject.clone(), source.clone(), record_ref.clone()), 1));
            }
            Entry::Amendment { id, amends, version, force, subject, source, record_ref, .. } => {
                if !ids.insert(id.clone()) {
                    problems.push(format!("entry {i}: amendment id {id} appears twice"));
                }
                let pair = (force.clone(), subject.clone(), source.clone(), record_ref.clone());
                match cases.get_mut(amends) {
                    None => problems
                        .push(format!("entry {i}: amendment {id} amends {amends}, which is not a disclosure in force")),
                    Some((p, _)) if *p != pair => {
                        problems.push(format!("entry {i}: amendment {id} names another pair than {amends}"))
                    }
                    Some((_, v)) => {
                        if *version != *v + 1 {
                            problems.push(format!(
                                "entry {i}: amendment {id} is version {version} of {amends}, whose last version is {v}"
                            ));
                        }
                        *v = *version;
                    }
                }
            }
            Entry::Retraction { id, retracts, force, subject, source, record_ref, .. } => {
                if !ids.insert(id.clone()) {
                    problems.push(format!("entry {i}: retraction id {id} appears twice"));
                }
                let pair = (force.clone(), subject.clone(), source.clone(), record_ref.clone());
                match cases.get(retracts) {
                    None if disclosed.contains(retracts) => {
                        problems.push(format!("entry {i}: {retracts} is retracted twice"))
                    }
                    None => problems.push(format!(
                        "entry {i}: retraction {id} withdraws {retracts}, which is not an earlier disclosure"
                    )),
                    Some((p, _)) if *p != pair => {
                        problems.push(format!("entry {i}: retraction {id} names another pair than {retracts}"))
                    }
                    Some(_) => {
                        cases.remove(retracts);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((at, want, seen)) = expect
        && want != seen
    {
        problems.push(announced(at, want, seen));
    }
    (counts, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(d: u64, a: u64, r: u64) -> Entry {
        Entry::NationalBatch {
            time: "t".into(),
            source: "pnc".into(),
            sequence: 1,
            upserts: 1,
            removes: 0,
            removes_unknown: 0,
            records: 1,
            disclosures: d,
            amendments: a,
            retractions: r,
            candidates: 0,
            commitment: "c".into(),
        }
    }

    fn disclosure(id: &str, rec: &str) -> Entry {
        Entry::Disclosure {
            time: "t".into(),
            id: id.into(),
            force: "gmp".into(),
            subject: "s".into(),
            source: "pnc".into(),
            record_ref: rec.into(),
            agreeing: vec![],
            probability: 0.999,
            fields: String::new(),
            policy_version: "p".into(),
        }
    }

    fn amendment(id: &str, amends: &str, version: u32, rec: &str) -> Entry {
        Entry::Amendment {
            time: "t".into(),
            id: id.into(),
            amends: amends.into(),
            version,
            force: "gmp".into(),
            subject: "s".into(),
            source: "pnc".into(),
            record_ref: rec.into(),
            agreeing: vec![],
            probability: 0.999,
            fields: String::new(),
            policy_version: "p".into(),
            reason: "record_changed".into(),
        }
    }

    fn retraction(id: &str, retracts: &str, rec: &str) -> Entry {
        Entry::Retraction {
            time: "t".into(),
            id: id.into(),
            retracts: retracts.into(),
            force: "gmp".into(),
            subject: "s".into(),
            source: "pnc".into(),
            record_ref: rec.into(),
            reason: "record_withdrawn".into(),
        }
    }

    fn problems(entries: Vec<Entry>) -> Vec<String> {
        check(&entries.iter().map(Entry::to_bytes).collect::<Vec<_>>()).1
    }

    #[test]
    fn a_consistent_log_has_no_problems() {
        let p = problems(vec![
            batch(1, 0, 0),
            disclosure("gmp-1", "r"),
            batch(0, 1, 0),
            amendment("gmp-2", "gmp-1", 2, "r"),
            batch(0, 1, 1),
            amendment("gmp-3", "gmp-1", 3, "r"),
            retraction("gmp-4", "gmp-1", "r"),
        ]);
        assert!(p.is_empty(), "{p:?}");
    }

    fn policy(d: u64, a: u64, r: u64) -> Entry {
        Entry::Policy {
            time: "2026-11-30T00:00:00.000Z".into(),
            version: "p2".into(),
            sha256: "ab".into(),
            disclosures: d,
            amendments: a,
            retractions: r,
        }
    }

    /// A new policy decides every pair again: its entry announces what
    /// follows, like a batch's.
    /// The key service's log: each caller's running total grows by exactly
    /// each batch's count, per epoch.
    #[test]
    fn evaluation_totals_add_up() {
        let ev = |caller: &str, epoch: u32, count: u64, used: u64| Entry::Evaluation {
            time: "2026-12-01T00:00:00.000Z".into(),
            caller: caller.into(),
            epoch,
            kind: "name_dob".into(),
            count,
            purpose: "r".into(),
            used,
            check: false,
        };
        assert!(
            problems(vec![
                ev("force/gmp", 1, 3, 3),
                ev("force/wmp", 1, 2, 2),
                ev("force/gmp", 1, 5, 8),
                ev("force/gmp", 2, 1, 1)
            ])
            .is_empty()
        );
        let p = problems(vec![ev("force/gmp", 1, 3, 3), ev("force/gmp", 1, 5, 5)]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("force/gmp had 3 evaluations in epoch 1; 5 more cannot make 5"), "{p:?}");
    }

    #[test]
    fn a_policy_entry_announces_its_redecisions() {
        let ok = problems(vec![
            batch(1, 0, 0),
            disclosure("gmp-1", "r"),
            policy(0, 0, 1),
            retraction("gmp-2", "gmp-1", "r"),
        ]);
        assert!(ok.is_empty(), "{ok:?}");
        let bad = problems(vec![
            batch(1, 0, 0),
            disclosure("gmp-1", "r"),
            policy(0, 0, 0),
            retraction("gmp-2", "gmp-1", "r"),
        ]);
        assert!(bad.iter().any(|x| x.contains("announces 0 disclosures, 0 amendments and 0 retractions")), "{bad:?}");
        // An old policy entry without counts reads as announcing none.
        let old = br#"{"type":"policy","time":"t","version":"v","sha256":"s"}"#;
        assert!(matches!(Entry::parse(old), Ok(Entry::Policy { disclosures: 0, retractions: 0, .. })));
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let cases = [
            (vec![batch(2, 0, 0), disclosure("gmp-1", "r")], "announces 2 disclosures"),
            (vec![disclosure("gmp-1", "r")], "does not follow a batch"),
            (vec![batch(2, 0, 0), disclosure("gmp-1", "r"), disclosure("gmp-1", "q")], "appears twice"),
            (vec![batch(0, 1, 0), amendment("gmp-2", "gmp-1", 2, "r")], "not a disclosure in force"),
            (vec![batch(1, 1, 0), disclosure("gmp-1", "r"), amendment("gmp-2", "gmp-1", 3, "r")], "version 3"),
            (vec![batch(1, 1, 0), disclosure("gmp-1", "r"), amendment("gmp-2", "gmp-1", 2, "q")], "another pair"),
            (
                vec![
                    batch(1, 0, 2),
                    disclosure("gmp-1", "r"),
                    retraction("gmp-2", "gmp-1", "r"),
                    retraction("gmp-3", "gmp-1", "r"),
                ],
                "retracted twice",
            ),
            (vec![batch(0, 0, 1), retraction("gmp-2", "gmp-9", "r")], "not an earlier disclosure"),
        ];
        for (entries, want) in cases {
            let p = problems(entries);
            assert!(p.iter().any(|x| x.contains(want)), "{want:?} not in {p:?}");
        }
    }
}
