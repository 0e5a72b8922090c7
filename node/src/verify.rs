//! Verifying what the coordinator says against its transparency log.
//!
//! A node keeps the latest checkpoint it has verified. Every new checkpoint
//! must be signed by the log's key and be consistent with that one (an
//! RFC 9162 consistency proof fetched from the coordinator). If it is not,
//! the coordinator has shown two different histories (a *split view*). The
//! node records the alarm and stops accepting disclosures until an operator
//! has looked. Every disclosure must be included in the checkpoint it comes
//! with, and its log entry must name exactly this disclosure for this force.

use tonic::transport::Channel;
use vigil_proto::audit::Entry;
use vigil_proto::hex;
use vigil_proto::tlog::{Checkpoint, Hash, Verifier, leaf_hash, verify_consistency, verify_inclusion};
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::{ConsistencyProofRequest, Disclosure, DisclosureType};

use crate::config::NodeConfig;
use crate::exit::{self, Exit};
use crate::local::LocalStore;

const CHECKPOINT: &str = "checkpoint";
const ALARM: &str = "split_view";
const HISTORY: &str = "checkpoint-history:";

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The checkpoint is not signed by the log key, or not for this log.
    #[error("checkpoint refused: {0}")]
    Checkpoint(String),
    /// The new checkpoint is not consistent with the one held: a split view.
    #[error(
        "SPLIT VIEW: the coordinator's log at size {new} is not consistent with the checkpoint at size {old} this node verified earlier ({why})"
    )]
    SplitView {
        /// Size held.
        old: u64,
        /// Size offered.
        new: u64,
        /// Detail.
        why: String,
    },
    /// The disclosure is not included in the log.
    #[error("disclosure {id} is not proven to be in the log: {why}")]
    Inclusion {
        /// Disclosure id.
        id: String,
        /// Detail.
        why: String,
    },
    /// The log entry does not describe the disclosure.
    #[error("disclosure {id} does not match its log entry: {why}")]
    Entry {
        /// Disclosure id.
        id: String,
        /// Detail.
        why: String,
    },
    /// A call to the coordinator failed.
    #[error("audit call failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
}

impl VerifyError {
    /// Whether this failure means the log cannot be trusted (as opposed to a
    /// failed call that may be retried).
    pub fn is_alarm(&self) -> bool {
        !matches!(self, VerifyError::Rpc(_) | VerifyError::Local(_))
    }
}

/// The log's identity: origin line and verifier key.
#[derive(Debug, Clone)]
pub struct LogKey {
    /// Origin line.
    pub origin: String,
    /// Verifier key.
    pub verifier: Verifier,
}

impl LogKey {
    /// Reads the log key named in the config.
    pub fn load(cfg: &NodeConfig) -> Result<LogKey, Exit> {
        let text = std::fs::read_to_string(&cfg.audit.vkey)
            .map_err(|e| Exit::new(exit::CONFIG, format!("cannot read {}: {e}", cfg.audit.vkey.display())))?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
        let verifier = Verifier::from_vkey(line)
            .map_err(|e| Exit::new(exit::CONFIG, format!("{}: not a verifier key ({e})", cfg.audit.vkey.display())))?;
        Ok(LogKey { origin: cfg.audit.origin.clone(), verifier })
    }

    /// Opens a signed checkpoint of this log.
    pub fn open(&self, note: &str) -> Result<Checkpoint, VerifyError> {
        Checkpoint::open(note, &self.origin, &self.verifier).map_err(|e| VerifyError::Checkpoint(e.to_string()))
    }
}

/// The checkpoint this node verified last, if any.
pub fn held_checkpoint(store: &LocalStore, key: &LogKey) -> Result<Option<(Checkpoint, String)>, VerifyError> {
    match store.meta(CHECKPOINT)? {
        Some(b) => {
            let note = String::from_utf8_lossy(&b).into_owned();
            Ok(Some((key.open(&note)?, note)))
        }
        None => Ok(None),
    }
}

/// Clears a split-view alarm after an operator's investigation: the alarm
/// and every checkpoint held are written to `archive` (for the record) and
/// forgotten, so the next checkpoint seen is trusted afresh.
pub fn clear_alarm(store: &LocalStore, archive: &std::path::Path) -> Result<usize, VerifyError> {
    let mut text = String::new();
    if let Some(a) = alarm(store)? {
        text.push_str(&format!("alarm: {a}\n\n"));
    }
    let held = store.meta_prefix(HISTORY)?;
    for (_, v) in &held {
        text.push_str(&String::from_utf8_lossy(v));
        text.push('\n');
    }
    std::fs::write(archive, text)
        .map_err(|e| VerifyError::Local(crate::local::LocalError(format!("writing {}: {e}", archive.display()))))?;
    for (k, _) in &held {
        store.clear_meta(k)?;
    }
    store.clear_meta(CHECKPOINT)?;
    store.clear_meta(ALARM)?;
    Ok(held.len())
}

/// The split-view alarm, if one was raised.
pub fn alarm(store: &LocalStore) -> Result<Option<String>, VerifyError> {
    Ok(store.meta(ALARM)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn hashes(v: &[prost::bytes::Bytes]) -> Result<Vec<Hash>, String> {
    v.iter().map(|h| h.as_ref().try_into().map_err(|_| "a proof hash is not 32 bytes".to_string())).collect()
}

/// Verifies a checkpoint and its consistency with the one held; stores it
/// if it is newer. A split view raises the alarm durably.
pub async fn accept_checkpoint(
    store: &LocalStore,
    key: &LogKey,
    client: &mut AuditServiceClient<Channel>,
    note: &str,
) -> Result<Checkpoint, VerifyError> {
    let cp = key.open(note)?;
    let Some((held, _)) = held_checkpoint(store, key)? else {
        keep(store, &cp, note)?;
        return Ok(cp);
    };
    let (small, large) = (&held, &cp);
    let result = if cp.size < held.size {
        // A log never shrinks: an older or different history is presented.
        Err(format!("the log shrank from {} to {} entries", held.size, cp.size))
    } else if small.size == 0 {
        Ok(())
    } else if small.size == large.size {
        if small.root == large.root { Ok(()) } else { Err("two different roots for the same size".to_string()) }
    } else {
        let proof = client
            .consistency_proof(ConsistencyProofRequest { size1: small.size, size2: large.size })
            .await?
            .into_inner()
            .proof;
        hashes(&proof).and_then(|p| {
            verify_consistency(small.size, large.size, &p, &small.root, &large.root).map_err(|e| e.to_string())
        })
    };
    if let Err(why) = result {
        let e = VerifyError::SplitView { old: held.size, new: cp.size, why };
        tracing::error!(alarm = %e, "audit log split view: disclosures are no longer accepted");
        store.set_meta(ALARM, e.to_string().as_bytes())?;
        return Err(e);
    }
    if cp.size > held.size {
        keep(store, &cp, note)?;
    }
    Ok(cp)
}

/// Remembers a verified checkpoint: as the latest, and in the history of
/// every checkpoint this node has seen.
fn keep(store: &LocalStore, cp: &Checkpoint, note: &str) -> Result<(), VerifyError> {
    store.set_metas(&[
        (format!("{HISTORY}{:020}", cp.size), note.as_bytes().to_vec()),
        (CHECKPOINT.to_string(), note.as_bytes().to_vec()),
    ])?;
    Ok(())
}

/// The last checkpoint a long-running process verified, so that a note it
/// has already checked is not checked again for every disclosure.
#[derive(Debug, Default)]
pub struct Seen {
    last: Option<(String, Checkpoint)>,
}

impl Seen {
    /// Verifies `note` unless it is the one verified last.
    pub async fn accept(
        &mut self,
        store: &LocalStore,
        key: &LogKey,
        client: &mut AuditServiceClient<Channel>,
        note: &str,
    ) -> Result<Checkpoint, VerifyError> {
        if let Some((n, cp)) = &self.last
            && n == note
        {
            return Ok(cp.clone());
        }
        let cp = accept_checkpoint(store, key, client, note).await?;
        self.last = Some((note.to_string(), cp.clone()));
        Ok(cp)
    }
}

/// Every checkpoint this node has verified, oldest first.
pub fn history(store: &LocalStore, key: &LogKey) -> Result<Vec<(Checkpoint, String)>, VerifyError> {
    let mut out = Vec::new();
    for (_, v) in store.meta_prefix(HISTORY)? {
        let note = String::from_utf8_lossy(&v).into_owned();
        out.push((key.open(&note)?, note));
    }
    Ok(out)
}

/// Checks that a log entry describes disclosure `d` sent to `force`.
pub fn entry_matches(d: &Disclosure, force: &str, entry: &Entry) -> Result<(), String> {
    let subject = hex::encode(&d.subject);
    let record_ref = hex::encode(&d.record_ref);
    let agreeing: Vec<String> = d
        .agreeing
        .iter()
        .filter_map(|k| vigil_proto::KeyKind::from_wire(*k))
        .map(|k| k.short_name().to_string())
        .collect();
    let same = |what: &str, a: &str, b: &str| if a == b { Ok(()) } else { Err(format!("{what} differs")) };
    match (DisclosureType::try_from(d.r#type), entry) {
        (
            Ok(DisclosureType::Disclosure),
            Entry::Disclosure { id, force: f, subject: s, source, record_ref: r, agreeing: a, policy_version, .. },
        ) => {
            same("id", id, &d.id)?;
            same("force", f, force)?;
            same("subject", s, &subject)?;
            same("source", source, &d.source)?;
            same("record reference", r, &record_ref)?;
            same("policy version", policy_version, &d.policy_version)?;
            if a != &agreeing {
                return Err("agreeing kinds differ".into());
            }
            Ok(())
        }
        (
            Ok(DisclosureType::Retraction),
            Entry::Retraction { id, retracts, force: f, subject: s, source, record_ref: r, .. },
        ) => {
            same("id", id, &d.id)?;
            same("retracted id", retracts, &d.retracts)?;
            same("force", f, force)?;
            same("subject", s, &subject)?;
            same("source", source, &d.source)?;
            same("record reference", r, &record_ref)
        }
        _ => Err("the entry is of another type".into()),
    }
}

/// Verifies a delivered disclosure: its checkpoint, the checkpoint's
/// consistency with the one held, its inclusion, and its entry.
pub async fn verify_disclosure(
    store: &LocalStore,
    key: &LogKey,
    client: &mut AuditServiceClient<Channel>,
    seen: &mut Seen,
    force: &str,
    d: &Disclosure,
) -> Result<(), VerifyError> {
    let id = d.id.clone();
    let a = d.audit.as_ref().ok_or_else(|| VerifyError::Inclusion { id: id.clone(), why: "no audit proof".into() })?;
    let cp = seen.accept(store, key, client, &a.checkpoint).await?;
    let proof = hashes(&a.inclusion).map_err(|why| VerifyError::Inclusion { id: id.clone(), why })?;
    verify_inclusion(&leaf_hash(&a.entry), a.leaf_index, cp.size, &proof, &cp.root)
        .map_err(|e| VerifyError::Inclusion { id: id.clone(), why: e.to_string() })?;
    let entry = Entry::parse(&a.entry)
        .map_err(|e| VerifyError::Entry { id: id.clone(), why: format!("unreadable entry: {e}") })?;
    entry_matches(d, force, &entry).map_err(|why| VerifyError::Entry { id, why })
}

/// An alarm or verification failure as an exit.
pub fn exit_of(e: VerifyError) -> Exit {
    match e {
        VerifyError::Rpc(s) => crate::client::status_exit(&s, "audit"),
        other if other.is_alarm() => Exit::new(exit::AUDIT, other.to_string()),
        other => Exit::new(exit::FAILURE, other.to_string()),
    }
}
