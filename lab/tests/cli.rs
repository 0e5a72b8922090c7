//! The `vigil-lab` command as a developer meets it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil-lab"))
}

#[test]
fn synth_writes_a_set_that_eval_scores_and_bad_parameters_exit_64() {
    let d = tempfile::tempdir().unwrap();
    let out = lab().args(["synth", "--forces", "99", "--out"]).arg(d.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let set = d.path().join("set");
    let out = lab()
        .args(["synth", "--seed", "3", "--forces", "1", "--staff-per-force", "200", "--national", "2000", "--out"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let roster = std::fs::read_dir(&set)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("roster-"))
        .unwrap();
    let (missed, wrong) = (d.path().join("missed.csv"), d.path().join("wrong.csv"));
    let out = lab()
        .arg("eval")
        .arg("--roster")
        .arg(&roster)
        .arg("--extract")
        .arg(set.join("extract.csv"))
        .arg("--truth")
        .arg(set.join("truth.csv"))
        .arg("--missed")
        .arg(&missed)
        .arg("--wrong")
        .arg(&wrong)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("precision ") && text.contains("recall "), "{out:?}");
    // "confirmed  N pairs: T true, F false; M same-person pairs missed ..."
    let line = text.lines().find(|l| l.starts_with("confirmed")).unwrap();
    let numbers: Vec<usize> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    let (false_pairs, missed_pairs) = (numbers[2], numbers[3]);
    // One row a pair, under a header: the lists hold exactly what was counted.
    let rows = |p: &std::path::Path| {
        let text = std::fs::read_to_string(p).unwrap();
        let mut lines = text.lines();
        (lines.next().unwrap().to_string(), lines.count())
    };
    let (header, n) = rows(&missed);
    assert_eq!(header, "force,employee_id,record_id,evidence,probability");
    assert_eq!(n, missed_pairs, "{line}");
    let (header, n) = rows(&wrong);
    assert_eq!(header, "force,employee_id,record_id,relation,evidence,probability");
    assert_eq!(n, false_pairs, "{line}");
}
