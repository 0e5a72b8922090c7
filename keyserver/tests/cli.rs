//! The command line, through the real binary (which also makes `cargo test`
//! build it for the end-to-end tests).
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn keygen_writes_secrets_0600_and_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_vigil-keyserver"))
            .args(["keygen", "--origin", "vigil.test/keyserver", "--out"])
            .arg(d.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    for f in ["seed.key", "log.key"] {
        let mode = std::fs::metadata(d.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let vkey = std::fs::read_to_string(d.path().join("log.vkey")).unwrap();
    assert!(vkey.starts_with("vigil.test/keyserver+"), "{vkey}");
    let again = run();
    assert_eq!(again.status.code(), Some(64), "an existing key is never overwritten: {again:?}");
    let bad = Command::new(env!("CARGO_BIN_EXE_vigil-keyserver"))
        .args(["keygen", "--origin", "has space", "--out"])
        .arg(d.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}
