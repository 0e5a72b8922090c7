//! The coordinator's durable state, behind a trait so that backends can be
//! swapped: [`redb::RedbStore`] is the embedded, crash-safe store (the
//! default); [`postgres::PgStore`] keeps the same state in PostgreSQL;
//! [`memory::MemoryStore`] holds everything in memory for tests.
//!
//! The contract every backend keeps:
//! - [`Store::commit`] applies a [`Commit`] atomically and durably: when it
//!   returns `Ok`, everything in it survives `kill -9` and power loss, and if
//!   it fails, nothing of it is visible. The engine puts one whole batch (its
//!   token changes, its receipt, the disclosures and retractions it caused,
//!   their log entries and the new signed checkpoint) into one commit.
//! - Reads see only committed state.
//! - Keys are opaque references and codes; values are tokens already
//!   re-keyed with the pepper, sealed boxes the coordinator cannot open,
//!   encoded protobuf messages and log entries. Nothing here is reversible to
//!   personal data.

pub mod memory;
pub mod postgres;
pub mod redb;

use vigil_proto::KeyKind;
use vigil_proto::kinds::KindSet;

use crate::pepper::Stored;

/// A 16-byte opaque reference (subject pseudonym or record reference).
pub type Ref = [u8; 16];

/// A stored token with its kind.
pub type StoredToken = (KeyKind, Stored);

/// Why the store failed. Never carries a token or a key.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// A force's enrolled subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    /// Force code.
    pub force: String,
    /// The force's pseudonym.
    pub pseudonym: Ref,
    /// Its tokens.
    pub tokens: Vec<StoredToken>,
}

/// A source's national record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// Source code.
    pub source: String,
    /// The source's reference.
    pub record_ref: Ref,
    /// Its tokens.
    pub tokens: Vec<StoredToken>,
    /// Its sealed details (an encoded `SealedDetails`).
    pub sealed: Vec<u8>,
}

/// A disclosure that is in force (not retracted).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRow {
    /// Force code.
    pub force: String,
    /// Subject pseudonym.
    pub pseudonym: Ref,
    /// Source code.
    pub source: String,
    /// Record reference.
    pub record_ref: Ref,
    /// Id of the disclosure (the case; amendments keep it).
    pub disclosure_id: String,
    /// The case's version: 1, then one more for each amendment.
    pub version: u32,
    /// The kinds that agreed in its latest version.
    pub agreeing: KindSet,
    /// The match probability of its latest version.
    pub probability: f64,
}

/// The last batch applied for one sender (a force or a source): what
/// tells a retry of that batch from a later send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderState {
    /// `force/<code>` or `source/<code>`.
    pub caller: String,
    /// The batch's sequence number.
    pub sequence: u64,
    /// The batch's content commitment (hex SHA-256).
    pub commitment: String,
    /// The encoded `BatchReceipt` returned for it.
    pub receipt: Vec<u8>,
}

/// A disclosure or retraction queued for a force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRow {
    /// Force code.
    pub force: String,
    /// Position in the force's sequence.
    pub seq: u64,
    /// The encoded `Disclosure` (its audit proof carries the entry and leaf
    /// index; inclusion proof and checkpoint are added at delivery).
    pub message: Vec<u8>,
}

/// Everything one batch changes, applied atomically.
#[derive(Debug, Default, Clone)]
pub struct Commit {
    /// Subjects enrolled or replaced.
    pub subjects_put: Vec<SubjectRow>,
    /// Subjects removed: (force, pseudonym).
    pub subjects_del: Vec<(String, Ref)>,
    /// Records added or replaced.
    pub records_put: Vec<RecordRow>,
    /// Records removed: (source, reference).
    pub records_del: Vec<(String, Ref)>,
    /// The sender's new last batch, and the batch before it under the
    /// sender's `Engine::previous_of` name (two batches can be in flight,
    /// so a retry may be of either).
    pub batches: Vec<SenderState>,
    /// New disclosures and retractions, each pending delivery.
    pub disclosures: Vec<DisclosureRow>,
    /// Disclosures now in force.
    pub active_put: Vec<ActiveRow>,
    /// Disclosures no longer in force: (force, pseudonym, source, reference).
    pub active_del: Vec<(String, Ref, String, Ref)>,
    /// Log entries: (leaf index, bytes), contiguous from the log's size.
    pub log: Vec<(u64, Vec<u8>)>,
    /// The checkpoint signed over the log after this commit: (size, note).
    pub checkpoint: Option<(u64, String)>,
    /// Settings remembered across restarts.
    pub meta: Vec<(String, Vec<u8>)>,
    /// Crypto-shredding of an epoch every party has moved on from: every
    /// stored token of this epoch parity (`crate::pepper::parity`) is
    /// dropped, and subjects and records left with none are deleted.
    /// Applied first, before the rest of the commit.
    pub shred_parity: Option<u32>,
}

impl Commit {
    /// Whether the commit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.subjects_put.is_empty()
            && self.subjects_del.is_empty()
            && self.records_put.is_empty()
            && self.records_del.is_empty()
            && self.batches.is_empty()
            && self.disclosures.is_empty()
            && self.active_put.is_empty()
            && self.active_del.is_empty()
            && self.log.is_empty()
            && self.checkpoint.is_none()
            && self.meta.is_empty()
            && self.shred_parity.is_none()
    }
}

/// What the engine reads: its port onto the store. The engine never
/// writes; it returns a [`Commit`] for the caller to apply. Engine unit
/// tests run against [`memory::MemoryStore`].
pub trait StoreRead {
    /// Visits every enrolled subject.
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError>;
    /// Visits every national record (without its sealed details).
    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError>;
    /// Visits every disclosure in force.
    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError>;
    /// Visits every log entry in order.
    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError>;
    /// The latest checkpoint: (size, signed note).
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;
    /// A remembered setting.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last batch applied for a sender (`force/<code>`, `source/<code>`).
    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError>;
    /// A subject's tokens.
    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError>;
    /// A record, with its sealed details.
    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError>;
    /// The highest sequence number used for each force.
    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// The coordinator's store: the engine's reads, plus committing, delivery
/// and the log's entries.
pub trait Store: StoreRead + Send + Sync + 'static {
    /// Applies a commit atomically and durably.
    fn commit(&self, c: &Commit) -> Result<(), StoreError>;
    /// Log entries `start..end`.
    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Up to `limit` undelivered-or-unacknowledged disclosures of a force
    /// with sequence above `after`, in order: (sequence, encoded message).
    fn pending(&self, force: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Marks disclosures acknowledged; returns how many were pending.
    ///
    /// Unlike [`Store::commit`], this need not be durable at once: it may
    /// reach the disk with the next commit or [`Store::flush`]. A lost
    /// acknowledgement only means the disclosure is delivered again, and
    /// nodes store a disclosure id once.
    fn acknowledge(&self, force: &str, seqs: &[u64]) -> Result<u64, StoreError>;
    /// Makes everything applied so far durable, acknowledgements included.
    fn flush(&self) -> Result<(), StoreError>;
    /// Number of disclosures a force has not acknowledged.
    fn pending_count(&self, force: &str) -> Result<u64, StoreError>;

    /// Tries to become the active coordinator of this store, as `holder`
    /// (a name for logs and operators). A store with one user at a time
    /// (the embedded file, locked when opened) is always held.
    fn take_lease(&self, holder: &str) -> Result<Lease, StoreError> {
        let _ = holder;
        Ok(Lease::Held(0))
    }

    /// Whether this coordinator still holds the lease it took (checked
    /// against the store; a lost lease is let go of, and commits are then
    /// refused).
    fn holds_lease(&self) -> bool {
        true
    }

    /// Lets go of the lease (stepping down, or stopping), so that a
    /// standby takes over at once.
    fn release_lease(&self) {}
}

/// Who is the active coordinator of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This coordinator: it holds the lease, taken for the `n`th time.
    Held(u64),
    /// Another coordinator, by the name it took the lease under.
    Elsewhere(String),
}

/// Packs tokens for storage: one kind byte and 16 token bytes each.
pub fn pack_tokens(tokens: &[StoredToken]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tokens.len() * 17);
    for (k, t) in tokens {
        v.push(*k as u8);
        v.extend_from_slice(t);
    }
    v
}

/// The tokens that survive shredding `parity` (all, when `None`).
pub fn surviving(tokens: &[StoredToken], parity: Option<u32>) -> Vec<StoredToken> {
    match parity {
        Some(p) => tokens.iter().filter(|(_, t)| crate::pepper::parity(t) != p).copied().collect(),
        None => tokens.to_vec(),
    }
}

/// Unpacks stored tokens.
pub fn unpack_tokens(b: &[u8]) -> Result<Vec<StoredToken>, StoreError> {
    if !b.len().is_multiple_of(17) {
        return Err(StoreError("corrupt token list".into()));
    }
    b.chunks(17)
        .map(|c| {
            let k = KeyKind::from_wire(i32::from(c[0])).ok_or_else(|| StoreError("corrupt token kind".into()))?;
            let mut t = [0u8; 16];
            t.copy_from_slice(&c[1..]);
            Ok((k, t))
        })
        .collect()
}
