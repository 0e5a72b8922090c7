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
use vigil_proto::tlog::cosignature::{WitnessKey, open_cosigned};
use vigil_proto::tlog::{Checkpoint, Hash, Verifier, leaf_hash, verify_consistency, verify_inclusion};
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::{CheckRequest, ConsistencyProofRequest, Disclosure, DisclosureType};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::local::{Guarded, LocalStore, Mark};

const ALARM: &str = "split_view";
const HISTORY: &str = "checkpoint-history:";
/// A gap in the force's delivery sequence (an alarm, like a split view).
const GAP: &str = "sequence_gap";
/// The highest delivery sequence stored with none missing below it.
const THROUGH: &str = "delivered_through";
/// Set when an alarm is cleared: the next sequence is taken as it comes.
const RESYNC: &str = "sequence_resync";

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
    /// A check's log entry does not record the check as this node made it.
    #[error("check {request_id} is not on the record as it was sent: {why}")]
    CheckRecord {
        /// The check's request id.
        request_id: String,
        /// Detail.
        why: String,
    },
    /// Disclosures in the force's sequence went to someone else.
    #[error(
        "SEQUENCE GAP: disclosures {from} to {to} of force {force} were delivered to and acknowledged by another \
         subscriber: a copy of this force's certificate and keys is in use elsewhere, or this node's store was \
         restored from an old backup (docs/operations.md)"
    )]
    SequenceGap {
        /// Force.
        force: String,
        /// First missing sequence.
        from: u64,
        /// Last missing sequence.
        to: u64,
    },
    /// The checkpoint is older than this node accepts, or undated.
    #[error(
        "the coordinator's checkpoint (size {size}) is {age}: it may be holding this node on an old view of the log \
         (max_checkpoint_age_seconds)"
    )]
    Stale {
        /// Size of the checkpoint.
        size: u64,
        /// Its age, in words.
        age: String,
    },
    /// Other processes on this node kept checkpoints faster than this one
    /// could compare its own with them.
    #[error("the checkpoint held changed {GUARD_RETRIES} times while this one was being verified; try again")]
    Busy,
    /// The checkpoint lacks the witnesses' cosignatures this node requires.
    #[error("checkpoint not witnessed as required (audit.witness_quorum): {0}")]
    Unwitnessed(String),
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
        !matches!(
            self,
            VerifyError::Rpc(_)
                | VerifyError::Local(_)
                | VerifyError::Stale { .. }
                | VerifyError::Unwitnessed(_)
                | VerifyError::Busy
        )
    }
}

/// The log's identity: origin line and verifier key.
#[derive(Debug, Clone)]
pub struct LogKey {
    /// Origin line.
    pub origin: String,
    /// Verifier key.
    pub verifier: Verifier,
    /// The oldest checkpoint accepted, milliseconds (0: any age).
    pub max_age_ms: i64,
    /// Witnesses whose cosignatures count.
    pub witnesses: Vec<WitnessKey>,
    /// How many of them must cosign a checkpoint for `audit` to use it
    /// (0: audits use the latest checkpoint, witnessed or not).
    pub quorum: usize,
}

impl LogKey {
    /// Reads the log key named in the config.
    pub fn load(cfg: &NodeConfig) -> Result<LogKey, NodeError> {
        let text = std::fs::read_to_string(&cfg.audit.vkey)
            .map_err(|e| NodeError::config(format!("cannot read {}: {e}", cfg.audit.vkey.display())))?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
        let verifier = Verifier::from_vkey(line)
            .map_err(|e| NodeError::config(format!("{}: not a verifier key ({e})", cfg.audit.vkey.display())))?;
        let max_age_ms = i64::try_from(cfg.audit.max_checkpoint_age_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let witnesses = cfg
            .audit
            .witnesses
            .iter()
            .map(|v| WitnessKey::from_vkey(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NodeError::config(format!("audit.witnesses: {e}")))?;
        Ok(LogKey {
            origin: cfg.audit.origin.clone(),
            verifier,
            max_age_ms,
            witnesses,
            quorum: cfg.audit.witness_quorum,
        })
    }

    /// The witnesses who cosigned a checkpoint note, if at least the
    /// quorum did.
    pub fn cosigners(&self, note: &str) -> Result<Vec<String>, VerifyError> {
        open_cosigned(note, &self.verifier, &self.witnesses, self.quorum)
            .map(|(_, names)| names)
            .map_err(|e| VerifyError::Unwitnessed(e.to_string()))
    }

    /// Opens a signed checkpoint of this log.
    pub fn open(&self, note: &str) -> Result<Checkpoint, VerifyError> {
        Checkpoint::open(note, &self.origin, &self.verifier).map_err(|e| VerifyError::Checkpoint(e.to_string()))
    }

    /// Checks that a checkpoint is recent enough at `now_ms`.
    pub fn fresh(&self, cp: &Checkpoint, now_ms: i64) -> Result<(), VerifyError> {
        if self.max_age_ms == 0 {
            return Ok(());
        }
        let age = match cp.time_ms() {
            None => "undated".to_string(),
            Some(t) if now_ms - t > self.max_age_ms => format!("{} s old", (now_ms - t) / 1000),
            Some(_) => return Ok(()),
        };
        Err(VerifyError::Stale { size: cp.size, age })
    }
}

/// The largest checkpoint this node has verified, if any.
///
/// It is the last of the history (keyed by zero-padded size), not a value
/// overwritten by each process: `watch` and `audit verify` run side by side,
/// and the held checkpoint must never go back to a smaller one.
pub fn held_checkpoint(store: &LocalStore, key: &LogKey) -> Result<Option<(Checkpoint, String)>, VerifyError> {
    Ok(held_entry(store, key)?.map(|(_, cp, note)| (cp, note)))
}

/// The held checkpoint with its history key (what a guarded write of the
/// next one compares against).
fn held_entry(store: &LocalStore, key: &LogKey) -> Result<Option<(String, Checkpoint, String)>, VerifyError> {
    match store.meta_last(HISTORY)? {
        Some((k, b)) => {
            let note = String::from_utf8_lossy(&b).into_owned();
            Ok(Some((k, key.open(&note)?, note)))
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
    store.clear_meta(ALARM)?;
    if store.meta(GAP)?.is_some() {
        store.clear_meta(GAP)?;
        store.clear_meta(THROUGH)?;
        store.set_meta(RESYNC, b"1")?;
    }
    Ok(held.len())
}

/// The alarm (a split view or a sequence gap), if one was raised.
pub fn alarm(store: &LocalStore) -> Result<Option<String>, VerifyError> {
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(store.meta(ALARM)?.map(text).or(store.meta(GAP)?.map(text)))
}

fn through(store: &LocalStore) -> Result<Option<u64>, VerifyError> {
    Ok(store.meta(THROUGH)?.and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes)))
}

/// Checks that a disclosure's delivery sequence follows the ones this node
/// stored: the coordinator delivers every sequence number to the force
/// until it is acknowledged, so a number that jumps ahead means the ones
/// between were acknowledged by another subscriber with this force's
/// certificate. Raises the alarm durably (`vigil_node_sequence_gaps_total`).
/// A redelivered number, or the next one, is fine. Before the first check
/// the highest sequence in the inbox is taken as the start; after an alarm
/// is cleared, the next number is taken as it comes.
///
/// `pending` is the highest sequence among disclosures already verified but
/// not yet stored (a burst stored in one transaction), which this one may
/// follow.
pub fn check_sequence(store: &LocalStore, force: &str, sequence: u64, pending: Option<u64>) -> Result<(), VerifyError> {
    let stored = match through(store)? {
        Some(t) => t,
        None if store.meta(RESYNC)?.is_some() => sequence.saturating_sub(1),
        None => store
            .inbox()?
            .iter()
            .filter_map(|(_, m, _)| <Disclosure as prost::Message>::decode(m.as_slice()).ok())
            .map(|d| d.sequence)
            .max()
            .unwrap_or(0),
    };
    let held = stored.max(pending.unwrap_or(0));
    if sequence <= held.saturating_add(1) {
        return Ok(());
    }
    let e = VerifyError::SequenceGap { force: force.to_string(), from: held + 1, to: sequence - 1 };
    metrics::counter!("vigil_node_sequence_gaps_total").increment(1);
    tracing::error!(alarm = %e, "disclosures are no longer accepted");
    store.set_meta(GAP, e.to_string().as_bytes())?;
    Err(e)
}

/// The mark that notes disclosures up to `sequence` as stored, to move
/// with them in one transaction ([`LocalStore::store_disclosures`]).
pub fn sequence_mark(sequence: u64) -> Mark<'static> {
    Mark { key: THROUGH, value: sequence, clears: RESYNC }
}

fn hashes(v: &[prost::bytes::Bytes]) -> Result<Vec<Hash>, String> {
    v.iter().map(|h| h.as_ref().try_into().map_err(|_| "a proof hash is not 32 bytes".to_string())).collect()
}

/// Times a process verifies a checkpoint again because another process
/// kept one in between, before it gives up (transiently).
pub const GUARD_RETRIES: usize = 8;

/// Verifies a checkpoint and its consistency with the one held; stores it
/// if it is newer. A split view raises the alarm durably.
///
/// A checkpoint smaller than the one held is not in itself a split view:
/// another process on this node (`watch` beside `audit verify`) may have
/// verified a newer one in the meantime. It is accepted only if the
/// coordinator proves it is a prefix of the held one; a coordinator that
/// cannot (a log rolled back to a backup) or whose proof fails raises the
/// alarm.
///
/// The write is guarded: if another process kept a checkpoint after this
/// one read the held one, this one is compared with that too before it is
/// kept, so no two checkpoints of this node's history were each compared
/// only with an older one.
pub async fn accept_checkpoint(
    store: &LocalStore,
    key: &LogKey,
    client: &mut AuditServiceClient<Channel>,
    note: &str,
) -> Result<Checkpoint, VerifyError> {
    let cp = key.open(note)?;
    key.fresh(&cp, vigil_common::clock::now_ms())?;
    for _ in 0..GUARD_RETRIES {
        let held = held_entry(store, key)?;
        let base = held.as_ref().map(|(k, _, _)| k.clone());
        if let Some((_, held, _)) = held {
            check_against(store, client, &held, &cp).await?;
            if cp.size <= held.size {
                return Ok(cp);
            }
        }
        let g = Guarded { prefix: HISTORY, base, put: vec![(history_key(&cp), note.as_bytes())] };
        if store.put_meta_guarded(&g)? {
            return Ok(cp);
        }
    }
    Err(VerifyError::Busy)
}

/// Compares `cp` with `held`, a checkpoint already verified, with a
/// consistency proof from the coordinator where the sizes differ. A split
/// view raises the alarm durably.
async fn check_against(
    store: &LocalStore,
    client: &mut AuditServiceClient<Channel>,
    held: &Checkpoint,
    cp: &Checkpoint,
) -> Result<(), VerifyError> {
    let result = match compare(held, cp) {
        Comparison::Agree => Ok(()),
        Comparison::Split(why) => Err(why),
        Comparison::Prove { size1, size2 } => {
            match client.consistency_proof(ConsistencyProofRequest { size1, size2 }).await {
                Ok(r) => judge(held, cp, Some(&r.into_inner().proof)),
                Err(s) if s.code() == tonic::Code::OutOfRange => judge(held, cp, None),
                Err(s) => return Err(s.into()),
            }
        }
    };
    if let Err(why) = result {
        let e = VerifyError::SplitView { old: held.size, new: cp.size, why };
        tracing::error!(alarm = %e, "audit log split view: disclosures are no longer accepted");
        store.set_meta(ALARM, e.to_string().as_bytes())?;
        return Err(e);
    }
    Ok(())
}

fn history_key(cp: &Checkpoint) -> String {
    format!("{HISTORY}{:020}", cp.size)
}

/// What it takes to accept a checkpoint beside the one held.
#[derive(Debug, PartialEq, Eq)]
enum Comparison {
    /// Nothing to prove.
    Agree,
    /// A consistency proof between the two sizes, smaller first.
    Prove { size1: u64, size2: u64 },
    /// A split view, whatever the coordinator says.
    Split(String),
}

fn compare(held: &Checkpoint, cp: &Checkpoint) -> Comparison {
    let (small, large) = if cp.size < held.size { (cp, held) } else { (held, cp) };
    if small.size == large.size {
        if small.root == large.root {
            Comparison::Agree
        } else {
            Comparison::Split("two different roots for the same size".into())
        }
    } else if cp.size == 0 {
        Comparison::Split(format!("the log shrank from {} entries to none", held.size))
    } else if small.size == 0 {
        Comparison::Agree
    } else {
        Comparison::Prove { size1: small.size, size2: large.size }
    }
}

/// Checks the coordinator's consistency proof between `held` and `cp`
/// (`None`: it said it has no such proof).
fn judge(held: &Checkpoint, cp: &Checkpoint, proof: Option<&[prost::bytes::Bytes]>) -> Result<(), String> {
    let (small, large) = if cp.size < held.size { (cp, held) } else { (held, cp) };
    match proof {
        Some(p) => hashes(p).and_then(|p| {
            verify_consistency(small.size, large.size, &p, &small.root, &large.root).map_err(|e| e.to_string())
        }),
        None if cp.size < held.size => Err(format!(
            "the log shrank: the coordinator cannot prove its {} entries are a prefix of the {} verified before",
            cp.size, held.size
        )),
        None => Err(format!(
            "the coordinator cannot prove its {} entries extend the {} verified before",
            cp.size, held.size
        )),
    }
}

/// What a long-running process (`watch`) has verified: the last note, so
/// that it is not checked again for every disclosure, and the checkpoints
/// newer than the one held that are not yet written. Those are kept with
/// the disclosures that rest on them, in the same transaction
/// ([`Seen::keep`]), not one sync each.
///
/// Each new checkpoint is compared with the newest verified, written or not,
/// so a fork between two checkpoints of one burst is a split view like any
/// other.
#[derive(Debug, Default)]
pub struct Seen {
    last: Option<(String, Checkpoint)>,
    /// The history's greatest key when the first unwritten checkpoint was
    /// compared with the one held.
    base: Option<String>,
    /// Verified, each newer than the one before and than the one held;
    /// not yet written.
    unwritten: Vec<(Checkpoint, String)>,
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
        let cp = key.open(note)?;
        key.fresh(&cp, vigil_common::clock::now_ms())?;
        let newest = match self.unwritten.last() {
            Some((c, _)) => Some(c.clone()),
            None => {
                let held = held_entry(store, key)?;
                self.base = held.as_ref().map(|(k, _, _)| k.clone());
                held.map(|(_, cp, _)| cp)
            }
        };
        if let Some(newest) = &newest {
            check_against(store, client, newest, &cp).await?;
        }
        if newest.as_ref().is_none_or(|n| cp.size > n.size) {
            self.unwritten.push((cp.clone(), note.to_string()));
        }
        self.last = Some((note.to_string(), cp.clone()));
        Ok(cp)
    }

    /// The checkpoints to keep with what rests on them, guarded by the
    /// history as it was read; `None` if there are none.
    pub fn keep(&self) -> Option<Guarded<'_>> {
        if self.unwritten.is_empty() {
            return None;
        }
        let put = self.unwritten.iter().map(|(cp, note)| (history_key(cp), note.as_bytes())).collect();
        Some(Guarded { prefix: HISTORY, base: self.base.clone(), put })
    }

    /// After [`Seen::keep`]'s write: written if `kept`; if its guard
    /// failed (another process kept a checkpoint meanwhile), everything
    /// is forgotten, to be verified again against the newest.
    pub fn written(&mut self, kept: bool) {
        if kept {
            self.unwritten.clear();
        } else {
            *self = Seen::default();
        }
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
    let agreeing = vigil_proto::KeyKind::names_of_wire(&d.agreeing);
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
            Ok(DisclosureType::Amendment),
            Entry::Amendment {
                id,
                amends,
                version,
                force: f,
                subject: s,
                source,
                record_ref: r,
                agreeing: a,
                policy_version,
                ..
            },
        ) => {
            same("id", id, &d.id)?;
            same("amended id", amends, &d.amends)?;
            same("force", f, force)?;
            same("subject", s, &subject)?;
            same("source", source, &d.source)?;
            same("record reference", r, &record_ref)?;
            same("policy version", policy_version, &d.policy_version)?;
            if *version != d.version {
                return Err("version differs".into());
            }
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

/// Whether a log entry records the check `req` by `force` as it was sent:
/// same force, request id, purpose, number of applicants and commitment.
pub fn check_entry_matches(entry: &Entry, force: &str, req: &CheckRequest) -> Result<(), String> {
    let Entry::Check { force: f, request_id, purpose, applicants, commitment, .. } = entry else {
        return Err(format!("the entry is a {} entry, not a check", entry.kind()));
    };
    let want = vigil_proto::audit::check_commitment(req);
    let mismatch = [
        (f.as_str() != force, "force"),
        (request_id != &req.request_id, "request id"),
        (purpose != &req.purpose, "purpose"),
        (*applicants != req.applicants.len() as u64, "number of applicants"),
        (commitment != &want, "commitment to the applicants"),
    ];
    match mismatch.iter().find(|(bad, _)| *bad) {
        Some((_, what)) => Err(format!("the log entry records another {what}")),
        None => Ok(()),
    }
}

/// Verifies that the check `req` is in the log as this node made it: the
/// checkpoint is accepted (consistent with the one held), the entry is
/// included in it, and it records this force, request, purpose and
/// applicants ([`check_entry_matches`]).
pub async fn verify_check(
    store: &LocalStore,
    key: &LogKey,
    client: &mut AuditServiceClient<Channel>,
    force: &str,
    req: &CheckRequest,
    proof: Option<&vigil_proto::v1::AuditProof>,
) -> Result<(), VerifyError> {
    let bad = |why: String| VerifyError::CheckRecord { request_id: req.request_id.clone(), why };
    let a = proof.ok_or_else(|| bad("the coordinator sent no log entry".into()))?;
    let cp = Seen::default().accept(store, key, client, &a.checkpoint).await?;
    let path = hashes(&a.inclusion).map_err(bad)?;
    verify_inclusion(&leaf_hash(&a.entry), a.leaf_index, cp.size, &path, &cp.root)
        .map_err(|e| bad(format!("not in the log: {e}")))?;
    let entry = Entry::parse(&a.entry).map_err(|e| bad(format!("unreadable entry: {e}")))?;
    check_entry_matches(&entry, force, req).map_err(bad)
}

impl From<VerifyError> for NodeError {
    /// An alarm is an audit failure; a failed call keeps its kind.
    fn from(e: VerifyError) -> NodeError {
        match e {
            VerifyError::Rpc(s) => crate::client::status_error(&s, "audit"),
            e @ VerifyError::Unwitnessed(_) => NodeError::audit(e.to_string()),
            other if other.is_alarm() => NodeError::audit(other.to_string()),
            other => NodeError::failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tlog::merkle::{Tree, leaf_hash};

    /// The signer of a test log and its key, accepting checkpoints up to
    /// `max_age_ms` old (0: any).
    fn test_log(max_age_ms: i64) -> (vigil_proto::tlog::Signer, LogKey) {
        let (signer, _) = vigil_proto::tlog::Signer::from_seed("test/log", &[4; 32]).unwrap();
        let key =
            LogKey { origin: "test/log".into(), verifier: signer.verifier(), max_age_ms, witnesses: vec![], quorum: 0 };
        (signer, key)
    }

    #[test]
    fn an_old_or_undated_checkpoint_is_refused() {
        let (_, key) = test_log(3_600_000);
        let now = 1_796_000_000_000;
        let dated = |ms: i64| Checkpoint {
            origin: "test/log".into(),
            size: 3,
            root: [0; 32],
            extensions: vec![format!("vigil-time {}", vigil_proto::time::rfc3339(ms))],
        };
        assert!(key.fresh(&dated(now - 60_000), now).is_ok());
        let e = key.fresh(&dated(now - 7_200_000), now).unwrap_err();
        assert!(!e.is_alarm() && e.to_string().contains("7200 s old"), "{e}");
        let undated = Checkpoint { extensions: vec![], ..dated(now) };
        assert!(key.fresh(&undated, now).unwrap_err().to_string().contains("undated"));
        let any = LogKey { max_age_ms: 0, ..key };
        assert!(any.fresh(&undated, now).is_ok());
    }

    #[test]
    fn a_check_entry_must_record_the_check_as_sent() {
        let req = CheckRequest {
            request_id: "00ff".into(),
            epoch: 1,
            scheme: 2,
            applicants: vec![vigil_proto::v1::Applicant { applicant: vec![1].into(), tokens: None }],
            purpose: "vetting 1".into(),
        };
        let entry = |purpose: &str, commitment: String| Entry::Check {
            time: "t".into(),
            force: "gmp".into(),
            request_id: "00ff".into(),
            purpose: purpose.into(),
            applicants: 1,
            confirmed: 0,
            candidates: None,
            commitment,
            policy_version: "p".into(),
        };
        let c = vigil_proto::audit::check_commitment(&req);
        assert_eq!(check_entry_matches(&entry("vetting 1", c.clone()), "gmp", &req), Ok(()));
        assert!(check_entry_matches(&entry("vetting 1", c.clone()), "met", &req).unwrap_err().contains("force"));
        assert!(check_entry_matches(&entry("other", c), "gmp", &req).unwrap_err().contains("purpose"));
        let e = check_entry_matches(&entry("vetting 1", "0".repeat(64)), "gmp", &req).unwrap_err();
        assert!(e.contains("commitment to the applicants"), "{e}");
    }

    #[test]
    fn a_jump_in_the_delivery_sequence_raises_the_alarm_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for s in [1, 2, 2, 1, 3] {
            check_sequence(&store, "gmp", s, None).unwrap();
            store.store_disclosures(&[], 0, Some(sequence_mark(s)), None).unwrap();
        }
        let e = check_sequence(&store, "gmp", 6, None).unwrap_err();
        assert!(e.is_alarm());
        assert!(e.to_string().contains("disclosures 4 to 5 of force gmp"), "{e}");
        assert!(alarm(&store).unwrap().unwrap().starts_with("SEQUENCE GAP"));
        // Cleared after an investigation: the next number is taken as it comes.
        clear_alarm(&store, &dir.path().join("cleared.txt")).unwrap();
        assert_eq!(alarm(&store).unwrap(), None);
        check_sequence(&store, "gmp", 6, None).unwrap();
        store.store_disclosures(&[], 0, Some(sequence_mark(6)), None).unwrap();
        check_sequence(&store, "gmp", 7, None).unwrap();
        assert!(check_sequence(&store, "gmp", 9, None).is_err());
    }

    #[test]
    fn a_burst_is_checked_against_what_it_holds_and_stored_with_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.store_disclosures(&[], 0, Some(sequence_mark(3)), None).unwrap();
        // 4, 5 and 6 arrive together: each follows the ones before it in the
        // burst, though none is stored yet.
        check_sequence(&store, "gmp", 4, None).unwrap();
        check_sequence(&store, "gmp", 5, Some(4)).unwrap();
        check_sequence(&store, "gmp", 6, Some(5)).unwrap();
        let items: Vec<(&str, &[u8])> = vec![("gmp-4", b"a"), ("gmp-5", b"b"), ("gmp-6", b"c")];
        let fresh = store.store_disclosures(&items, 10, Some(sequence_mark(6)), None).unwrap();
        assert_eq!(fresh, Some(vec![true, true, true]));
        assert_eq!(through(&store).unwrap(), Some(6));
        // Redelivered with a lower mark: nothing new, the mark stays.
        let fresh = store.store_disclosures(&items[..1], 11, Some(sequence_mark(4)), None).unwrap();
        assert_eq!((fresh, through(&store).unwrap()), (Some(vec![false]), Some(6)));
        // A gap inside a burst is still a gap.
        let e = check_sequence(&store, "gmp", 9, Some(7)).unwrap_err();
        assert!(e.to_string().contains("disclosures 8 to 8 of force gmp"), "{e}");
    }

    /// Checkpoints verified in a burst are written with it, not one sync
    /// each; until then the next is compared with them, not only with the
    /// one held, and the write fails if another process kept one meanwhile.
    #[tokio::test]
    async fn a_burst_keeps_its_checkpoints_with_it_and_compares_them_among_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let (signer, key) = test_log(0);
        // No call reaches the coordinator in this test: every comparison
        // below needs no proof.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let mut client = AuditServiceClient::new(channel);
        let t = log(10);
        let note = |c: &Checkpoint| c.sign(&signer).unwrap();
        let (first, same) = (note(&cp(&t, 10)), note(&cp(&t, 10)));
        let mut seen = Seen::default();
        seen.accept(&store, &key, &mut client, &first).await.unwrap();
        seen.accept(&store, &key, &mut client, &same).await.unwrap();
        assert_eq!(held_checkpoint(&store, &key).unwrap(), None, "nothing written before the burst is");
        // Another history of the same size, in the same burst: a split view,
        // though the first is not written yet.
        let mut forked = cp(&t, 10);
        forked.root[0] ^= 1;
        let e = seen.accept(&store, &key, &mut client, &note(&forked)).await.unwrap_err();
        assert!(matches!(e, VerifyError::SplitView { .. }), "{e}");
        assert!(alarm(&store).unwrap().unwrap().starts_with("SPLIT VIEW"));
        clear_alarm(&store, &dir.path().join("cleared.txt")).unwrap();

        // Written with the burst's disclosures, in one transaction.
        let keep = seen.keep().unwrap();
        let stored = store.store_disclosures(&[("gmp-1", b"m")], 1, None, Some(&keep)).unwrap();
        assert_eq!(stored, Some(vec![true]));
        seen.written(true);
        assert_eq!(held_checkpoint(&store, &key).unwrap().unwrap().0.size, 10);
        assert!(seen.keep().is_none(), "written once");

        // On a node that holds none yet, `audit verify` keeps a checkpoint
        // while a burst is verified: the burst's write is refused whole,
        // and the watcher verifies it again against that checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut seen = Seen::default();
        seen.accept(&store, &key, &mut client, &first).await.unwrap();
        accept_checkpoint(&store, &key, &mut client, &note(&cp(&t, 10))).await.unwrap();
        let keep = seen.keep().unwrap();
        assert_eq!(store.store_disclosures(&[("gmp-1", b"m")], 1, None, Some(&keep)).unwrap(), None);
        assert!(store.inbox().unwrap().is_empty(), "nothing of the burst is written");
        seen.written(false);
        seen.accept(&store, &key, &mut client, &first).await.unwrap();
        assert!(seen.keep().is_none(), "the same checkpoint as the one held: nothing more to keep");
    }

    fn log(n: u64) -> Tree {
        let mut t = Tree::new();
        for i in 0..n {
            t.push(leaf_hash(format!("entry {i}").as_bytes()));
        }
        t
    }

    fn cp(t: &Tree, size: u64) -> Checkpoint {
        Checkpoint { origin: "test/log".into(), size, root: t.root(size).unwrap(), extensions: vec![] }
    }

    fn bytes(p: Vec<Hash>) -> Vec<prost::bytes::Bytes> {
        p.into_iter().map(|h| prost::bytes::Bytes::copy_from_slice(&h)).collect()
    }

    /// `audit verify` fetched checkpoint 100 while `watch` verified and
    /// kept 110: the older one is a prefix of the held one, not a split view.
    #[test]
    fn an_older_checkpoint_is_accepted_when_proved_a_prefix() {
        let t = log(110);
        let (held, older) = (cp(&t, 110), cp(&t, 100));
        assert_eq!(compare(&held, &older), Comparison::Prove { size1: 100, size2: 110 });
        let proof = bytes(t.consistency_proof(100, 110).unwrap());
        assert_eq!(judge(&held, &older, Some(&proof)), Ok(()));
        // ... and the usual direction still works.
        assert_eq!(compare(&older, &held), Comparison::Prove { size1: 100, size2: 110 });
        assert_eq!(judge(&older, &held, Some(&proof)), Ok(()));
    }

    #[test]
    fn a_rolled_back_or_forked_log_is_a_split_view() {
        let t = log(110);
        let held = cp(&t, 110);
        // restored from a backup: it cannot prove a prefix of what was seen
        let why = judge(&held, &cp(&t, 100), None).unwrap_err();
        assert!(why.contains("shrank"), "{why}");
        // a different history of the same size
        let mut forked = cp(&t, 110);
        forked.root[0] ^= 1;
        assert!(matches!(compare(&held, &forked), Comparison::Split(_)));
        // an older checkpoint whose proof does not check out
        let mut bad = bytes(t.consistency_proof(100, 110).unwrap());
        bad[0] = prost::bytes::Bytes::from(vec![0u8; 32]);
        assert!(judge(&held, &cp(&t, 100), Some(&bad)).is_err());
        // an empty log after a non-empty one
        assert!(matches!(compare(&held, &cp(&Tree::new(), 0)), Comparison::Split(_)));
        // the same checkpoint twice needs no proof
        assert_eq!(compare(&held, &held.clone()), Comparison::Agree);
    }
}
