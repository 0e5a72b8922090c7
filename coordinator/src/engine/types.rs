//! What goes into the engine and what comes out: settings, batches after
//! checking and peppering, applicants, results and errors.

use vigil_proto::tlog::Hash;
use vigil_proto::v1::{BatchReceipt, CheckMatch};

use crate::policy::Policy;
use crate::store::{Commit, Ref, StoreError, StoredToken};

/// Settings the engine needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Epoch accepted.
    pub epoch: u32,
    /// The epoch also accepted while parties move to `epoch` (none: only
    /// `epoch`; tokens of any other are dropped at start).
    pub previous_epoch: Option<u32>,
    /// Token scheme accepted (2 or 3).
    pub scheme: u32,
    /// The policy in force.
    pub policy: Policy,
    /// SHA-256 (hex) of the policy text.
    pub policy_sha256: String,
    /// The log's origin.
    pub origin: String,
    /// Most subjects per force, unless `headcount` names the force.
    pub max_roster_size: u64,
    /// Most subjects of each named force (its declared headcount).
    pub headcount: std::collections::HashMap<String, u64>,
    /// National and roster tokens to size the indexes for at start.
    pub index_capacity: (usize, usize),
    /// The fewest national records the policy's prior is spread over.
    pub national_records: u32,
}

impl Settings {
    /// The most subjects `force` may have enrolled.
    pub fn roster_cap(&self, force: &str) -> u64 {
        self.headcount.get(force).copied().unwrap_or(self.max_roster_size)
    }
}

/// Why the engine refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed; the engine must be reloaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bound was exceeded (nothing was changed).
    #[error("{0}")]
    Limit(String),
    /// The request is inconsistent (nothing was changed).
    #[error("{0}")]
    Invalid(String),
    /// The store does not match the configuration or its own checkpoint.
    #[error("{0}")]
    Integrity(String),
    /// The batch's sequence number is not the sender's next one, nor a
    /// retry of its last (nothing was changed).
    #[error("{0}")]
    Sequence(String),
}

/// One subject of a roster batch, tokens already peppered.
#[derive(Debug, Clone)]
pub struct SubjectIn {
    /// Pseudonym.
    pub pseudonym: Ref,
    /// Stored tokens.
    pub tokens: Vec<StoredToken>,
}

/// One record of a national batch, tokens already peppered.
#[derive(Debug, Clone)]
pub struct RecordIn {
    /// Reference.
    pub record_ref: Ref,
    /// Stored tokens.
    pub tokens: Vec<StoredToken>,
    /// Encoded `SealedDetails`.
    pub sealed: Vec<u8>,
}

/// A batch (roster or national) after checking and peppering.
#[derive(Debug, Clone)]
pub struct BatchIn<T> {
    /// The sender's batch sequence number.
    pub sequence: u64,
    /// The epoch of its tokens (the accepted one, or while parties move to
    /// it, the previous one): an upsert replaces the item's tokens of this
    /// epoch and keeps those of the other.
    pub epoch: u32,
    /// Upserts.
    pub upserts: Vec<T>,
    /// Removes.
    pub removes: Vec<Ref>,
    /// Commitment to the batch as received.
    pub commitment: String,
}

/// One applicant of a check.
#[derive(Debug, Clone)]
pub struct ApplicantIn {
    /// The force's opaque applicant reference, echoed back.
    pub applicant: Vec<u8>,
    /// Stored tokens (never stored).
    pub tokens: Vec<StoredToken>,
}

/// The result of applying a batch.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per batch, moved once
pub enum Applied {
    /// The batch changed state: commit `commit`, then publish.
    Fresh {
        /// The receipt to return once committed.
        receipt: BatchReceipt,
        /// What to commit.
        commit: Commit,
        /// Log leaves appended (to publish after the commit).
        leaves: Vec<Hash>,
        /// Forces that have new disclosures.
        forces: Vec<String>,
    },
    /// A retry of the sender's last batch; nothing changed.
    Replayed(BatchReceipt),
}

/// What a check's log entry says besides counts.
#[derive(Debug, Clone)]
pub struct CheckMeta {
    /// The force's request id (hex).
    pub request_id: String,
    /// The force's reference for why it checks.
    pub purpose: String,
    /// Commitment to the request as received (`audit::check_commitment`).
    pub commitment: String,
}

/// What a check returns.
#[derive(Debug)]
pub struct Checked {
    /// Confirmed matches (only these are returned).
    pub matches: Vec<CheckMatch>,
    /// The log entry's index.
    pub log_index: u64,
    /// The log entry's bytes.
    pub entry: Vec<u8>,
    /// The entry with its inclusion proof and a checkpoint, once published.
    pub audit: Option<vigil_proto::v1::AuditProof>,
    /// What to commit (the log entry and checkpoint only).
    pub commit: Commit,
    /// Log leaves appended.
    pub leaves: Vec<Hash>,
}

/// What a batch's receipt counts.
pub(super) struct Counts {
    pub upserts: u64,
    pub removes: u64,
    pub removes_unknown: u64,
    pub total: u64,
}
