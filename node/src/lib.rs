//! `vigil-node`: everything Vigil does on a force's or a national source's
//! own machine. Identity data in clear never leaves this crate's process;
//! what leaves is tokens, opaque references and sealed boxes.
//!
//! # Layout
//! Pure logic (values in, values out, no I/O):
//! - [`normalize`]: folding, names, dates, NI numbers and postcodes.
//! - [`nicknames`]: the documented nickname table.
//! - [`keys`]: identities and the match keys of scheme v1.
//! - [`tokens`]: linkage key, local secret, tokens, pseudonyms, references.
//! - [`seal`]: AEAD sealing of record details.
//! - [`category`]: the category vocabulary and its severity order.
//!
//! I/O:
//! - [`keyfile`]: reading and writing key files.
//! - [`input`]: streaming CSV readers for rosters, extracts and applicants,
//!   with the machine-readable report of what was refused.
//! - [`synth`]: the synthetic data generator.
//! - [`config`]: the `node.toml` configuration.
//! - [`local`]: the node's local store (enrolment, inbox, checkpoints).
//! - [`tls`]: this node's certificate checked against its configuration,
//!   and the coordinator's identity checked at every connection.
//! - [`client`]: the mutual-TLS connection to the coordinator.
//! - [`cli`]: logging and signal handling shared by both binaries.
//! - [`sync`]: roster sync and national feed.
//! - [`watch`]: the disclosure subscription into the inbox.
//! - [`verify`]: checkpoints, consistency and inclusion against the audit log.
//! - [`inbox`]: the ranked inbox, joined with the roster locally.
//! - [`check`]: pre-employment checks.
//! - [`audit`]: `audit verify`, `report` and `export`; [`report_html`]
//!   renders the report as one self-contained page.
#![forbid(unsafe_code)]

pub mod audit;
pub mod category;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod exit;
pub mod inbox;
pub mod input;
pub mod keyfile;
pub mod keys;
pub mod local;
pub mod nicknames;
pub mod normalize;
pub mod report_html;
pub mod seal;
pub mod sync;
pub mod synth;
pub mod tls;
pub mod tokens;
pub mod verify;
pub mod watch;
