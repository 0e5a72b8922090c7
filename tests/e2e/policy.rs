//! The policy as an operator changes it: `calibrate` trains it on what a
//! stopped coordinator holds, and a coordinator started with a new policy
//! logs the change and decides every pair again: what no longer confirms
//! is retracted (`policy_changed`), never silently dropped. Every
//! disclosure carries its probability and its evidence by field, into the
//! audit entry and the force's inbox.

use std::time::Duration;
use vigil_tests::{World, ok, run, wait_until};

use crate::common::{active_pairs, expected, synth_set};

#[test]
fn calibrate_trains_and_a_new_policy_redecides_every_pair_in_the_open() {
    // The shipped confirmation threshold, as the default policy sets it.
    let confirm = vigil_coordinator::policy::Policy::default_policy().confirm;
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 41, 1, 400, 4000);
    let force = s.forces[0].clone();
    let want = expected(&data, &s.forces, &["extract.csv"]);
    let coordinator = w.start_coordinator();
    let node = w.node("force", &force);
    let pnc = w.node("source", "pnc");
    let ico = w.node("auditor", "ico");
    ok(node.run(&["sync", "--roster", data.join(format!("roster-{force}.csv")).to_str().unwrap()]));
    let watcher = node.watch();
    ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    assert!(wait_until(Duration::from_secs(30), || active_pairs(&node.inbox()) == want[&force]));

    // Each disclosure shows how strong it is.
    let inbox = node.inbox();
    assert!(!inbox.is_empty());
    for i in &inbox {
        let p = i["probability"].as_f64().unwrap();
        assert!((confirm..=1.0).contains(&p), "a confirmed disclosure below the threshold: {i}");
        let fields = i["fields"].as_str().unwrap();
        assert_eq!(fields.split(' ').count(), 5, "{fields}");
        assert!(fields.starts_with('F') && fields.contains(" N"), "{fields}");
    }
    let table = String::from_utf8_lossy(&node.run(&["inbox", "list"]).stdout).into_owned();
    assert!(table.contains("PROBABILITY") && table.contains("F3 S3 D3"), "{table}");

    // Training needs the store to itself: refused while the coordinator runs.
    let trained = w.path().join("coordinator/trained.toml");
    let busy = run(std::process::Command::new(vigil_tests::bin("vigil-coordinator"))
        .args(["calibrate", "--version", "t1", "--out"])
        .arg(&trained)
        .arg("--config")
        .arg(w.path().join("coordinator/coordinator.toml")));
    assert!(!busy.status.success() && !trained.exists(), "{busy:?}");
    coordinator.stop();
    let out = ok(run(std::process::Command::new(vigil_tests::bin("vigil-coordinator"))
        .args(["calibrate", "--version", "t1", "--out"])
        .arg(&trained)
        .arg("--config")
        .arg(w.path().join("coordinator/coordinator.toml"))));
    assert!(out.contains("policy t1 trained from default-") && out.contains("400 subjects"), "{out}");
    let text = std::fs::read_to_string(&trained).unwrap();
    assert!(text.contains("[training]") && text.contains("version = \"t1\""), "{text}");
    // Run again onto the same file: refused before any training, the
    // trained policy left as it was.
    let again = run(std::process::Command::new(vigil_tests::bin("vigil-coordinator"))
        .args(["calibrate", "--version", "t2", "--out"])
        .arg(&trained)
        .arg("--config")
        .arg(w.path().join("coordinator/coordinator.toml")));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("exists already") && err.contains("nothing was trained"), "{err}");
    assert_eq!(std::fs::read_to_string(&trained).unwrap(), text);

    // A much stricter policy (the trained one with a confirmation threshold
    // few pairs reach): the coordinator logs it and retracts what it no
    // longer confirms, with the reason.
    let strict = text.replace(&format!("confirm_probability = {confirm}"), "confirm_probability = 0.999999999");
    assert_ne!(strict, text);
    std::fs::write(&trained, strict).unwrap();
    // (appended to the harness's `[matching]` section)
    w.write_coordinator_config("policy = \"trained.toml\"");
    let _c = w.start_coordinator();
    let retracted = |inbox: &[serde_json::Value]| {
        inbox.iter().filter(|i| i["state"] == "retracted" && i["retraction_reason"] == "policy_changed").count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || retracted(&node.inbox()) > 0),
        "nothing was retracted under the stricter policy; watch log:\n{}",
        watcher.log_text()
    );
    let inbox = node.inbox();
    assert!(active_pairs(&inbox).is_subset(&want[&force]));
    assert_eq!(active_pairs(&inbox).len() + retracted(&inbox), want[&force].len(), "every pair was decided again");

    // The auditor sees the policy change and every probability.
    let verified = ok(ico.run(&["audit", "verify"]));
    assert!(verified.contains("2 policy"), "{verified}");
    let export = w.path().join("export");
    ok(ico.run(&["audit", "export", export.to_str().unwrap()]));
    let entries = std::fs::read_to_string(export.join("entries.jsonl")).unwrap();
    let disclosures: Vec<serde_json::Value> = entries
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "disclosure")
        .collect();
    assert!(!disclosures.is_empty());
    assert!(disclosures.iter().all(|e| e["probability"].as_f64().unwrap() >= confirm && e["fields"].is_string()));
    assert!(entries.contains("\"reason\":\"policy_changed\""), "retractions name the policy change");
}
