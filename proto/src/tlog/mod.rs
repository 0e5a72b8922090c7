//! The transparency log's formats and maths, shared by the coordinator
//! (which builds the log and signs checkpoints) and nodes and auditors
//! (which verify). Pure: values in, values out.
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 hashing (SHA-256), an append-only tree,
//!   inclusion and consistency proofs and their verification.
//! - [`note`]: C2SP signed notes with Ed25519, signer and verifier keys.
//! - [`checkpoint`]: C2SP checkpoints inside signed notes.
//! - [`cosignature`]: C2SP witness cosignatures (cosignature/v1) and k-of-n
//!   checks.
//! - [`tiles`]: C2SP tlog-tiles path arithmetic, used by `audit export`.

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod tiles;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use merkle::{Hash, ProofError, Tree, leaf_hash, verify_consistency, verify_inclusion};
pub use note::{NoteError, Signer, Verifier};
