//! The README's demo command, run as CI runs it: the real script with the
//! already-built binaries at a small scale.

use std::process::Command;
use vigil_tests::bin;

#[test]
fn the_local_demo_runs_end_to_end() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let out = tempfile::tempdir().unwrap();
    let bin_dir = bin("vigil-node").parent().unwrap().to_path_buf();
    let run = Command::new(root.join("deploy/local/demo.sh"))
        .env("VIGIL_BIN", &bin_dir)
        .env("VIGIL_DEMO_OUT", out.path().join("demo"))
        .env("VIGIL_DEMO_STAFF", "300")
        .env("VIGIL_DEMO_NATIONAL", "5000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("new alert at"), "{stdout}");
    assert!(stdout.contains("stopped cleanly"), "{stdout}");
    // Every force's precision is printed as 1.0000 on this set.
    let rows: Vec<&str> =
        stdout.lines().filter(|l| l.starts_with("met ") || l.starts_with("gmp ") || l.starts_with("wmp ")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows.iter().all(|r| r.split_whitespace().nth(3) == Some("1.0000")), "{stdout}");
    assert!(out.path().join("demo/audit-report.html").exists());
}
