//! Nothing lost, nothing half-applied, as an operator meets it with the
//! real binaries: the same content sent again later is applied again, a
//! change amends the case a reviewer is working on, a refused file changes
//! nothing, and a coordinator killed between steps loses nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use vigil_tests::{Node, World, ok, wait_until};

use crate::common::{Pair, active_pairs};

const ROSTER_HEADER: &str = "employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode,role\n";
const EXTRACT_HEADER: &str =
    "record_id,category,event_date,forenames,surname,alias_names,date_of_birth,alt_dates_of_birth,ni_number,postcode\n";

/// Five officers; E1 to E3 have national records.
const STAFF: &[(&str, &str, &str, &str, &str)] = &[
    ("E1", "Alice", "Okafor", "1981-02-03", "AB123456C"),
    ("E2", "Brian", "Hughes", "1975-06-07", "CE234567D"),
    ("E3", "Chloe", "Marsh", "1990-10-11", "JL345678A"),
    ("E4", "Daniel", "Price", "1969-12-13", "MP456789B"),
    ("E5", "Erin", "Walsh", "1988-04-05", "RS567890C"),
];

fn roster(dir: &Path, name: &str, ids: &[&str]) -> PathBuf {
    let mut text = ROSTER_HEADER.to_string();
    for (id, f, s, dob, ni) in STAFF.iter().filter(|p| ids.contains(&p.0)) {
        text.push_str(&format!("{id},{f},{s},,{dob},{ni},M1 1AA,officer\n"));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// One extract row for officer `staff` (by index) as record `id`.
fn record(id: &str, category: &str, staff: usize) -> String {
    let (_, f, s, dob, ni) = STAFF[staff];
    format!("{id},{category},2020-01-01,{f},{s},,{dob},,{ni},\n")
}

fn file(dir: &Path, name: &str, header: &str, rows: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{header}{}", rows.concat())).unwrap();
    p
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<Pair> {
    list.iter().map(|(e, r)| (e.to_string(), r.to_string())).collect()
}

fn converges(node: &Node, want: &BTreeSet<Pair>) {
    let ok = wait_until(Duration::from_secs(30), || &active_pairs(&node.inbox()) == want);
    assert!(ok, "inbox {:?} never became {want:?}", active_pairs(&node.inbox()));
}

fn item<'a>(inbox: &'a [serde_json::Value], record: &str) -> &'a serde_json::Value {
    inbox.iter().find(|i| i["record_id"] == record && i["state"] == "active").unwrap()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn content_sent_again_later_applies_changes_amend_and_kills_lose_nothing() {
    let mut w = World::new();
    let dir = w.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let c = w.start_coordinator();
    let gmp = w.node("force", "gmp");
    let pnc = w.node("source", "pnc");
    let all = roster(&dir, "all.csv", &["E1", "E2", "E3", "E4", "E5"]);
    ok(gmp.run(&["sync", "--roster", arg(&all)]));
    let watcher = gmp.watch();
    let extract = file(
        &dir,
        "extract.csv",
        EXTRACT_HEADER,
        &[record("R1", "violence", 0), record("R2", "drugs", 1), record("R3", "dishonesty", 2)],
    );
    ok(pnc.run(&["feed", "--extract", arg(&extract)]));
    converges(&gmp, &pairs(&[("E1", "R1"), ("E2", "R2"), ("E3", "R3")]));

    // Withdrawn, then fed again unchanged: disclosed again.
    let withdraw = file(&dir, "withdraw.csv", "record_id\n", &["R1\n".into()]);
    ok(pnc.run(&["feed", "--withdraw", arg(&withdraw), "--allow-removals"]));
    converges(&gmp, &pairs(&[("E2", "R2"), ("E3", "R3")]));
    c.kill9();
    let c = w.start_coordinator();
    let again = file(&dir, "r1.csv", EXTRACT_HEADER, &[record("R1", "violence", 0)]);
    let out = ok(pnc.run(&["feed", "--delta", arg(&again)]));
    assert!(out.contains("1 added") && out.contains("3 records at the coordinator"), "{out}");
    converges(&gmp, &pairs(&[("E1", "R1"), ("E2", "R2"), ("E3", "R3")]));

    // A reviewer is working on R2; its category changes drugs → violence →
    // drugs. The case keeps its id, status and note; its version counts
    // the changes and the inbox says what changed.
    let case = item(&gmp.inbox(), "R2")["id"].as_str().unwrap().to_string();
    ok(gmp.run(&["inbox", "set", &case, "--status", "under_review", "--note", "interview booked"]));
    for (i, cat) in ["violence", "drugs"].iter().enumerate() {
        let delta = file(&dir, &format!("r2-{i}.csv"), EXTRACT_HEADER, &[record("R2", cat, 1)]);
        let out = ok(pnc.run(&["feed", "--delta", arg(&delta)]));
        assert!(out.contains("1 changed"), "{out}");
        let version = i as u64 + 2;
        let amended = wait_until(Duration::from_secs(30), || item(&gmp.inbox(), "R2")["version"] == version);
        assert!(amended, "R2 never reached version {version}: {:?}", gmp.inbox());
        let r2 = item(&gmp.inbox(), "R2").clone();
        assert_eq!((r2["id"].as_str(), r2["category"].as_str()), (Some(case.as_str()), Some(*cat)));
        assert_eq!((r2["status"].as_str(), r2["note"].as_str()), (Some("under_review"), Some("interview booked")));
    }
    let changes = item(&gmp.inbox(), "R2")["changes"].to_string();
    assert!(
        changes.contains("category drugs → violence") && changes.contains("category violence → drugs"),
        "{changes}"
    );
    assert_eq!(gmp.inbox().len(), 4, "amendments add no inbox items: {:?}", gmp.inbox());
    // `inbox list | head -1`: a reader that goes away ends the listing
    // quietly (it panicked with exit code 101).
    let mut child = gmp.cmd(&["inbox", "list"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // E3 leaves, rejoins and leaves again, with a kill -9 of the
    // coordinator in between.
    let without = roster(&dir, "without-e3.csv", &["E1", "E2", "E4", "E5"]);
    let sync = |f: &Path| ok(gmp.run(&["sync", "--roster", arg(f), "--allow-removals"]));
    assert!(sync(&without).contains("4 enrolled at the coordinator"));
    converges(&gmp, &pairs(&[("E1", "R1"), ("E2", "R2")]));
    assert!(sync(&all).contains("5 enrolled at the coordinator"));
    converges(&gmp, &pairs(&[("E1", "R1"), ("E2", "R2"), ("E3", "R3")]));
    c.kill9();
    let c = w.start_coordinator();
    let out = sync(&without);
    assert!(out.contains("1 removed") && out.contains("4 enrolled at the coordinator"), "{out}");
    converges(&gmp, &pairs(&[("E1", "R1"), ("E2", "R2")]));

    // A delta of good rows ending in an over-long line is refused whole:
    // nothing is applied, the line is named, and a report is written.
    let mut rows: Vec<String> = (0..450).map(|i| format!("X{i},other,,Zed,Person{i},,1970-01-01,,,\n")).collect();
    rows.push(format!("X999,other,,{},Long,,1970-01-01,,,\n", "z".repeat(70_000)));
    let long = file(&dir, "long.csv", EXTRACT_HEADER, &rows);
    let out = pnc.run(&["feed", "--delta", arg(&long)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(err.contains("record starting at line 452 ") && err.contains("Nothing was sent"), "{err}");
    assert!(err.contains("Report: "), "a report is written: {err}");
    let out = ok(pnc.run(&["feed", "--delta", arg(&again)]));
    assert!(out.contains("3 records at the coordinator"), "nothing of the refused file was applied: {out}");

    // A duplicated record id: both rows refused, neither counted as used.
    let dup = file(&dir, "dup.csv", EXTRACT_HEADER, &[record("R4", "dishonesty", 3), record("R4", "drugs", 3)]);
    let out = pnc.run(&["feed", "--delta", arg(&dup)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("2 rows read, 2 refused; 0 added"), "{out:?}");
    drop(c);
    watcher.stop();
}
