//! `vigil-node`: everything Vigil does on a force's or a national source's
//! own machine. Identity data in clear never leaves this crate's process;
//! what leaves is tokens, opaque references and sealed boxes.
//!
//! # Layout
//! The pure identity core (normalisation, match keys, tokens, sealing,
//! categories) is `vigil-identity`; what both programs share at their edges
//! (exit codes, logs, secret files) is `vigil-common`. This crate does the
//! node's I/O:
//! - [`keyfile`]: reading and writing key files.
//! - [`input`]: streaming CSV readers for rosters, extracts and applicants,
//!   with the machine-readable report of what was refused.
//! - [`error`]: the library's error kinds (`main` maps them to exit codes).
//! - [`config`]: the `node.toml` configuration.
//! - [`local`]: the node's local store (enrolment, inbox, checkpoints).
//! - [`tls`]: this node's certificate checked against its configuration,
//!   and the coordinator's identity checked at every connection.
//! - [`client`]: the mutual-TLS connection to the coordinator (and to the
//!   key service).
//! - [`keyservice`]: token scheme 3: match keys blinded, evaluated by the
//!   key service, proofs checked against the pinned key, unblinded.
//! - [`sync`]: roster sync and national feed.
//! - [`watch`]: the disclosure subscription into the inbox.
//! - [`verify`]: checkpoints, consistency and inclusion against the audit log.
//! - [`inbox`]: the ranked inbox, joined with the roster locally.
//! - [`check`]: pre-employment checks.
//! - [`audit`]: `audit verify`, building the report, `export`.
//! - [`witness`]: the witness role: check a checkpoint's consistency, cosign it.
//! - [`report`]: the audit report built from verified entries (pure).
//! - [`report_html`]: the report as one self-contained HTML page (pure).
//! - [`render`]: everything the command prints, as text (pure).
#![forbid(unsafe_code)]

pub mod audit;
pub mod check;
pub mod client;
pub mod config;
pub mod error;
pub mod inbox;
pub mod input;
pub mod keyfile;
pub mod keyservice;
pub mod local;
pub mod render;
pub mod report;
pub mod report_html;
pub mod sync;
pub mod tls;
pub mod verify;
pub mod watch;
pub mod witness;
