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
    let out = lab()
        .arg("eval")
        .arg("--roster")
        .arg(&roster)
        .arg("--extract")
        .arg(set.join("extract.csv"))
        .arg("--truth")
        .arg(set.join("truth.csv"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("precision ") && text.contains("recall "), "{out:?}");
}
