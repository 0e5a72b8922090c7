//! The `vigil-node` command as a user meets it (this file also makes
//! `cargo test` build the binary the end-to-end tests run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil-node"))
}

#[test]
fn help_names_every_command() {
    let out = node().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["keygen", "sync", "feed", "watch", "inbox", "check", "audit"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
    // The lab tools are not in the production binary (they are `vigil-lab`).
    assert!(!text.contains("synth"), "{text}");
    let out = node().args(["synth", "--out", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn keygen_writes_private_files_and_refuses_to_overwrite() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("keys");
    let out = node().args(["keygen", "--epoch", "2", "--out"]).arg(&d).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(d.join("linkage.key")).unwrap();
    assert!(text.contains("epoch = 2"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.join("local.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // The key directory it created is the owner's alone.
    assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    let again = node().args(["keygen", "--out"]).arg(&d).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn bad_arguments_and_configuration_exit_64() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("node.toml"), "role = \"force\"\nplaintext = true\n").unwrap();
    let out = node().args(["sync", "--roster", "x.csv", "--config"]).arg(d.path().join("node.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plaintext"));
}
