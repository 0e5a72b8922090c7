//! The key service's own transparency log: one entry per evaluated batch
//! (caller, epoch, kind, count, purpose, the caller's running total; never
//! an element), RFC 6962 hashing and C2SP checkpoints, the same formats as
//! the coordinator's log, so `vigil-node audit verify` checks it (an
//! auditor node with `server_role = "keyserver"`). Entries and checkpoints
//! are committed with the allowance they spend ([`crate::quota`]).

use vigil_proto::tlog::checkpoint::TIME_EXTENSION;
use vigil_proto::tlog::{Checkpoint, Signer, Tree, leaf_hash};

use crate::quota::QuotaStore;

/// The tree and the key that signs its checkpoints.
pub struct EvalLog {
    tree: Tree,
    signer: Signer,
    origin: String,
    checkpoint: String,
}

impl EvalLog {
    /// Rebuilds the log from the store, checks it against its latest
    /// signed checkpoint, and signs a fresh one dated `now_ms`.
    pub fn load(store: &QuotaStore, signer: Signer, origin: &str, now_ms: i64) -> Result<EvalLog, String> {
        let (entries, latest) = store.log().map_err(|e| e.to_string())?;
        let mut tree = Tree::new();
        for e in &entries {
            tree.push(leaf_hash(e));
        }
        if let Some(note) = latest {
            let cp = Checkpoint::open(&note, origin, &signer.verifier())
                .map_err(|e| format!("the log's latest checkpoint does not verify: {e}"))?;
            if cp.size != tree.size() || tree.root(cp.size) != Some(cp.root) {
                return Err("the stored log does not match its latest signed checkpoint".into());
            }
        }
        let mut log = EvalLog { tree, signer, origin: origin.to_string(), checkpoint: String::new() };
        log.checkpoint = log.sign(now_ms)?;
        store.put_checkpoint(&log.checkpoint).map_err(|e| e.to_string())?;
        Ok(log)
    }

    fn sign(&self, now_ms: i64) -> Result<String, String> {
        let size = self.tree.size();
        let root = self.tree.root(size).ok_or("no root")?;
        let extensions = vec![format!("{TIME_EXTENSION} {}", vigil_proto::time::rfc3339(now_ms))];
        Checkpoint { origin: self.origin.clone(), size, root, extensions }.sign(&self.signer).map_err(|e| e.to_string())
    }

    /// Appends `entry` and returns the checkpoint that covers it.
    pub fn append(&mut self, entry: &[u8], now_ms: i64) -> Result<String, String> {
        self.tree.push(leaf_hash(entry));
        self.checkpoint = self.sign(now_ms)?;
        Ok(self.checkpoint.clone())
    }

    /// Signs a fresh checkpoint of the log as it stands and stores it.
    pub fn refresh(&mut self, store: &QuotaStore, now_ms: i64) -> Result<(), String> {
        let note = self.sign(now_ms)?;
        store.put_checkpoint(&note).map_err(|e| e.to_string())?;
        self.checkpoint = note;
        Ok(())
    }

    /// The latest checkpoint.
    pub fn checkpoint(&self) -> &str {
        &self.checkpoint
    }

    /// The tree, for proofs.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }
}
