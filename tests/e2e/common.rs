//! Shared helpers for the scenarios.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use vigil_coordinator::policy::Policy;
use vigil_lab::{eval, synth};

/// (employee id, record id)
pub type Pair = (String, String);

/// A synthetic set for `forces` forces.
pub fn synth_set(dir: &Path, seed: u64, forces: usize, staff: usize, national: usize) -> synth::Summary {
    let params = synth::Params {
        seed,
        forces,
        staff_per_force: staff,
        national,
        overlap: 0.08,
        hard_negatives: 0.03,
        delta: 40,
        applicants: 30,
        ..synth::Params::default()
    };
    synth::generate(&params, dir).unwrap()
}

/// The pairs the default policy confirms for each force, computed offline.
pub fn expected(dir: &Path, forces: &[String], extracts: &[&str]) -> HashMap<String, BTreeSet<Pair>> {
    let rosters: Vec<_> = forces.iter().map(|f| dir.join(format!("roster-{f}.csv"))).collect();
    let ex: Vec<_> = extracts.iter().map(|e| dir.join(e)).collect();
    let opts = eval::Options { train: false, national_records: vigil_tests::NATIONAL_RECORDS, ..Default::default() };
    let r = eval::run(&rosters, &ex, &dir.join("truth.csv"), &Policy::default_policy(), opts).unwrap();
    let mut out: HashMap<String, BTreeSet<Pair>> = forces.iter().map(|f| (f.clone(), BTreeSet::new())).collect();
    for (f, e, rec) in r.confirmed_pairs {
        out.entry(f).or_default().insert((e, rec));
    }
    out
}

/// Same-person pairs of the ground truth, per force.
pub fn truth(dir: &Path) -> HashMap<String, BTreeSet<Pair>> {
    let mut out: HashMap<String, BTreeSet<Pair>> = HashMap::new();
    let mut rdr = csv::Reader::from_path(dir.join("truth.csv")).unwrap();
    for row in rdr.records() {
        let row = row.unwrap();
        if &row[3] == "same_person" {
            out.entry(row[0].to_string()).or_default().insert((row[1].to_string(), row[2].to_string()));
        }
    }
    out
}

/// The (employee, record) pairs of a force's inbox that are in force.
/// Waits until `node`'s inbox holds exactly `expect` in force, then checks
/// that no disclosure is there twice; `what` says after what.
pub fn assert_inbox_converges(
    node: &vigil_tests::Node,
    watcher: &vigil_tests::Watcher,
    expect: &BTreeSet<Pair>,
    what: &str,
) {
    let converged =
        vigil_tests::wait_until(std::time::Duration::from_secs(60), || &active_pairs(&node.inbox()) == expect);
    assert!(converged, "inbox did not converge {what}; watch log:\n{}", watcher.log_text());
    let inbox = node.inbox();
    let ids: std::collections::HashSet<&str> = inbox.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), inbox.len(), "an id appears twice in the inbox");
    assert_eq!(inbox.len(), expect.len(), "a disclosure was duplicated");
}

pub fn active_pairs(inbox: &[serde_json::Value]) -> BTreeSet<Pair> {
    inbox
        .iter()
        .filter(|i| i["state"] == "active")
        .map(|i| (i["employee_id"].as_str().unwrap().to_string(), i["record_id"].as_str().unwrap().to_string()))
        .collect()
}
