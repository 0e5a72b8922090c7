//! The engine's side of the transparency log: the Merkle tree over every
//! committed entry, the signer, and closing a batch (its entries appended,
//! each message given its entry and leaf index, a checkpoint signed).
//! Readers see a [`LogView`] published only after the commit.

use prost::Message;
use vigil_proto::audit::Entry;
use vigil_proto::tlog::{Checkpoint, Hash, Signer, Tree, leaf_hash};
use vigil_proto::v1::AuditProof;

use super::outbox::Batch;
use super::types::EngineError;
use crate::store::{Commit, DisclosureRow};

/// The published state of the log, read by delivery and audit queries.
#[derive(Debug, Clone, Default)]
pub struct LogView {
    /// Tree over every committed entry.
    pub tree: Tree,
    /// The latest signed checkpoint (covers `tree.size()` leaves).
    pub checkpoint: String,
}

/// The tree and the key that signs its checkpoints.
pub(super) struct AuditLog {
    tree: Tree,
    signer: Signer,
    origin: String,
}

impl AuditLog {
    pub fn new(signer: Signer, origin: String) -> AuditLog {
        AuditLog { tree: Tree::new(), signer, origin }
    }

    /// The log's size (the next entry's leaf index).
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The signing key's verifier key, as published.
    pub fn vkey(&self) -> String {
        self.signer.verifier().vkey()
    }

    /// Adds a stored entry (at start-up).
    pub fn push_stored(&mut self, entry: &[u8]) {
        self.tree.push(leaf_hash(entry));
    }

    /// Checks the rebuilt tree against the latest stored checkpoint and
    /// returns the view to publish.
    pub fn verify(&self, latest: Option<(u64, String)>) -> Result<LogView, EngineError> {
        let mut view = LogView { tree: self.tree.clone(), checkpoint: String::new() };
        if let Some((size, note)) = latest {
            let cp = Checkpoint::open(&note, &self.origin, &self.signer.verifier())
                .map_err(|x| EngineError::Integrity(format!("latest checkpoint does not verify: {x}")))?;
            if cp.size != size || cp.size != self.tree.size() || Some(cp.root) != self.tree.root(cp.size) {
                return Err(EngineError::Integrity(
                    "the stored log does not match its latest signed checkpoint".into(),
                ));
            }
            view.checkpoint = note;
        }
        Ok(view)
    }

    /// Appends `head` then the batch's entries to the log, fills in each
    /// message's audit proof, and signs a checkpoint. Returns what to commit
    /// and the leaves to publish once committed.
    pub fn close(&mut self, mut b: Batch, head: Vec<Entry>) -> Result<(Commit, Vec<Hash>), EngineError> {
        let mut leaves = Vec::new();
        let mut push = |tree: &mut Tree, commit: &mut Commit, bytes: Vec<u8>| -> u64 {
            let h = leaf_hash(&bytes);
            let i = tree.push(h);
            leaves.push(h);
            commit.log.push((i, bytes));
            i
        };
        for e in head {
            push(&mut self.tree, &mut b.commit, e.to_bytes());
        }
        let entries = std::mem::take(&mut b.entries);
        for ((force, mut msg), entry) in std::mem::take(&mut b.messages).into_iter().zip(entries) {
            let bytes = entry.to_bytes();
            let index = push(&mut self.tree, &mut b.commit, bytes.clone());
            msg.audit = Some(AuditProof {
                entry: bytes.into(),
                leaf_index: index,
                inclusion: Vec::new(),
                checkpoint: String::new(),
            });
            b.commit.disclosures.push(DisclosureRow { force, seq: msg.sequence, message: msg.encode_to_vec() });
        }
        let size = self.tree.size();
        let root = self.tree.root(size).ok_or_else(|| EngineError::Integrity("log tree is inconsistent".into()))?;
        b.commit.checkpoint = Some(self.sign(size, root, &b.time)?);
        Ok((b.commit, leaves))
    }

    /// A checkpoint of the tree as it stands, dated `time` (RFC 3339): a
    /// quiet log is signed again now and then, so that a party can tell a
    /// current view from an old one.
    pub fn refresh(&self, time: &str) -> Result<(u64, String), EngineError> {
        let size = self.tree.size();
        let root = self.tree.root(size).ok_or_else(|| EngineError::Integrity("log tree is inconsistent".into()))?;
        self.sign(size, root, time)
    }

    fn sign(&self, size: u64, root: Hash, time: &str) -> Result<(u64, String), EngineError> {
        let extensions = vec![format!("{} {time}", vigil_proto::tlog::checkpoint::TIME_EXTENSION)];
        let cp = Checkpoint { origin: self.origin.clone(), size, root, extensions };
        let note = cp.sign(&self.signer).map_err(|x| EngineError::Integrity(format!("cannot sign checkpoint: {x}")))?;
        Ok((size, note))
    }
}
