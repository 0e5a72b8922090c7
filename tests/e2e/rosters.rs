//! Roster hygiene as a force meets it: a truncated file is refused whole,
//! rows with errors keep their previous enrolment, and a pre-employment
//! check answers with the applicants who really have records.

use std::collections::BTreeSet;
use std::time::Duration;
use vigil_tests::{World, ok, wait_until};

use crate::common::{active_pairs, expected, synth_set};

#[test]
fn truncated_rosters_are_refused_broken_rows_keep_their_enrolment_and_checks_answer() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 31, 1, 300, 3000);
    let force = s.forces[0].clone();
    let want = expected(&data, &s.forces, &["extract.csv"]);
    let _c = w.start_coordinator();
    let node = w.node("force", &force);
    let pnc = w.node("source", "pnc");
    let roster_path = data.join(format!("roster-{force}.csv"));
    ok(node.run(&["sync", "--roster", roster_path.to_str().unwrap()]));
    let watcher = node.watch();
    ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    assert!(wait_until(Duration::from_secs(30), || active_pairs(&node.inbox()) == want[&force]));
    // The stores and the feed's reports are in directories only their owner
    // can open (a force's inbox holds names).
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        w.path().join("coordinator/data"),
        w.path().join(format!("nodes/{force}/data")),
        w.path().join("nodes/pnc/data"),
        w.path().join("nodes/pnc/data/reports"),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }

    // A truncated roster (half the staff) is refused before anything is sent.
    let roster = std::fs::read_to_string(&roster_path).unwrap();
    let lines: Vec<&str> = roster.lines().collect();
    let truncated = w.path().join("truncated.csv");
    std::fs::write(&truncated, lines[..150].join("\n") + "\n").unwrap();
    let out = node.run(&["sync", "--roster", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to remove"));
    assert_eq!(active_pairs(&node.inbox()), want[&force], "nothing was applied");

    // A matched employee's row becomes unusable: refused, reported, and the
    // previous enrolment (and its disclosure) stays.
    let (emp, _) = want[&force].iter().next().unwrap().clone();
    let broken: String = lines
        .iter()
        .map(|l| {
            if l.starts_with(&format!("{emp},")) {
                format!("{emp},,,,not-a-date,,,officer,\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let broken_path = w.path().join("broken.csv");
    std::fs::write(&broken_path, broken).unwrap();
    // The other rows were applied, so the command succeeds and says on
    // standard error what it refused.
    let out = node.run(&["sync", "--roster", broken_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 rows were refused"), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 refused") && stdout.contains("0 removed"), "{stdout}");
    let report_line = stdout.lines().find(|l| l.starts_with("report: ")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_line[8..]).unwrap()).unwrap();
    assert_eq!(report["errors"][0]["field"], serde_json::Value::Null);
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("no match key"));
    assert!(!report.to_string().contains(&emp), "the report does not repeat the employee number");
    assert_eq!(active_pairs(&node.inbox()), want[&force], "the refused row's disclosure was not retracted");

    // Allowed, a real shrink goes through and retracts the leavers' disclosures.
    let out = ok(node.run(&["sync", "--roster", truncated.to_str().unwrap(), "--allow-removals"]));
    assert!(out.contains("removed"), "{out}");

    // Pre-employment check: the confirmed matches are applicants who really
    // have records, answered to this force only.
    let truth_app: BTreeSet<(String, String)> = csv::Reader::from_path(data.join("truth.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .filter(|r| r[1].starts_with("APP"))
        .map(|r| (r[1].to_string(), r[2].to_string()))
        .collect();
    let out = ok(node.run(&[
        "check",
        "--purpose",
        "vetting 2026/114",
        "--applicants",
        data.join("applicants.csv").to_str().unwrap(),
        "--format",
        "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: BTreeSet<(String, String)> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["applicant_id"].as_str().unwrap().to_string(), m["record_id"].as_str().unwrap().to_string()))
        .collect();
    assert!(!got.is_empty() && got.is_subset(&truth_app), "check matches {got:?} not within {truth_app:?}");
    watcher.stop();
}
