//! The whole flow: rosters, national feed, continuous delivery, a delta,
//! a leaver.

use std::time::Duration;
use vigil_tests::{World, ok, wait_until};

use crate::common::{active_pairs, expected, synth_set, truth};

#[test]
fn sync_feed_watch_delta_and_leaver() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 5, 2, 400, 6000);
    let forces = s.forces.clone();
    let want = expected(&data, &forces, &["extract.csv"]);
    let truth = truth(&data);
    assert!(want.values().all(|p| p.len() >= 10), "the set should give each force some matches: {want:?}");

    let coordinator = w.start_coordinator();
    let nodes: Vec<_> = forces.iter().map(|f| w.node("force", f)).collect();
    let pnc = w.node("source", "pnc");
    for n in &nodes {
        let out = ok(n.run(&["sync", "--roster", data.join(format!("roster-{}.csv", n.code)).to_str().unwrap()]));
        assert!(out.contains("400 added"), "{out}");
    }
    let watchers: Vec<_> = nodes.iter().map(|n| n.watch()).collect();
    let out = ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    assert!(out.contains("6000 added"), "{out}");

    // Each force's inbox converges to exactly the pairs the policy confirms,
    // all of them the same person, none of another force's.
    for n in &nodes {
        let expect = &want[&n.code];
        let arrived = wait_until(Duration::from_secs(60), || &active_pairs(&n.inbox()) == expect);
        let got = active_pairs(&n.inbox());
        assert!(
            arrived,
            "{}: inbox {} pairs, expected {}; watch log:\n{}",
            n.code,
            got.len(),
            expect.len(),
            watchers[0].log_text()
        );
        assert!(got.is_subset(&truth[&n.code]), "{}: a disclosure is not the same person", n.code);
    }

    // A delta with new records reaches the right force.
    let want2 = expected(&data, &forces, &["extract.csv", "delta.csv"]);
    let out = ok(pnc.run(&["feed", "--delta", data.join("delta.csv").to_str().unwrap()]));
    assert!(out.contains("40 added"), "{out}");
    for n in &nodes {
        let expect = &want2[&n.code];
        assert!(
            wait_until(Duration::from_secs(30), || &active_pairs(&n.inbox()) == expect),
            "{}: delta not delivered",
            n.code
        );
    }
    let new_pairs: usize = forces.iter().map(|f| want2[f].len() - want[f].len()).sum();
    assert!(new_pairs > 0, "the delta should match someone");

    // A leaver: drop one matched employee from the roster and sync again.
    let met = &nodes[0];
    let (leaver, _) = want2[&met.code].iter().next().unwrap().clone();
    let roster = std::fs::read_to_string(data.join(format!("roster-{}.csv", met.code))).unwrap();
    let without: String =
        roster.lines().filter(|l| !l.starts_with(&format!("{leaver},"))).map(|l| format!("{l}\n")).collect();
    let path = w.path().join("roster-leaver.csv");
    std::fs::write(&path, without).unwrap();
    let out = ok(met.run(&["sync", "--roster", path.to_str().unwrap()]));
    assert!(out.contains("1 removed"), "{out}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let inbox = met.inbox();
            let left: Vec<_> = inbox.iter().filter(|i| i["employee_id"] == leaver.as_str()).collect();
            !left.is_empty()
                && left.iter().all(|i| i["state"] == "retracted" && i["retraction_reason"] == "subject_left")
        }),
        "the leaver's disclosures were not retracted"
    );
    // The review status is the force's own.
    let first = met.inbox()[0]["id"].as_str().unwrap().to_string();
    ok(met.run(&["inbox", "set", &first, "--status", "under_review", "--note", "PSD reviewing"]));
    assert!(met.inbox().iter().any(|i| i["id"] == first.as_str() && i["status"] == "under_review"));

    for wt in watchers {
        wt.stop();
    }
    coordinator.stop();
}
