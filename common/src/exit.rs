//! Process exit codes shared by both binaries (documented in
//! docs/operations.md), so scripts can tell failures apart.

/// Something else failed.
pub const FAILURE: u8 = 1;
/// Bad command line or configuration (sysexits EX_USAGE).
pub const CONFIG: u8 = 64;
/// Bad input data: a file was refused or rows were refused (EX_DATAERR).
pub const INPUT: u8 = 65;
/// The coordinator could not be reached (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// The audit log failed verification (a split view or a bad proof).
pub const AUDIT: u8 = 70;

/// An error that carries its exit code to `main`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl Exit {
    /// An error with a code.
    pub fn new(code: u8, message: impl Into<String>) -> Exit {
        Exit { code, message: message.into() }
    }
}

/// Maps an error chain to an exit code: the first [`Exit`] in the chain wins.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<Exit>().map(|x| x.code)).unwrap_or(FAILURE)
}
