//! The coordinator's engine: continuous matching, disclosures, retractions
//! and the audit log, as one state machine. No network; the store is only
//! read. Each `apply_*` call changes the in-memory state and returns the
//! [`Commit`] that makes the change durable. The caller commits it, then
//! publishes the new log state. If the commit fails, the caller rebuilds the
//! engine from the store ([`Engine::load`]), so memory never runs ahead of
//! disk.
//!
//! The in-memory state is derived: the matcher's two indexes, id maps,
//! disclosures in force, per-force sequence counters, and the Merkle tree of
//! the log. All of it is rebuilt from the store at start-up. The tree is
//! checked against the latest signed checkpoint.

use prost::Message;
use std::collections::HashMap;
use vigil_proto::audit::Entry;
use vigil_proto::hex;
use vigil_proto::kinds::KindSet;
use vigil_proto::tlog::{Checkpoint, Hash, Signer, Tree, leaf_hash};
use vigil_proto::v1::{AuditProof, BatchReceipt, CheckMatch, Disclosure, DisclosureType, SealedDetails};

use crate::index::IndexKey;
use crate::matcher::{Hit, Matcher};
use crate::pepper::index_key;
use crate::policy::{Decision, Evidence, Policy};
use crate::store::{
    ActiveRow, Commit, DisclosureRow, RecordRow, Ref, SenderState, Store, StoreError, StoredToken, SubjectRow,
};

/// Settings the engine needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Linkage-key epoch accepted.
    pub epoch: u32,
    /// The policy in force.
    pub policy: Policy,
    /// SHA-256 (hex) of the policy text.
    pub policy_sha256: String,
    /// The log's origin.
    pub origin: String,
    /// Most subjects per force.
    pub max_roster_size: u64,
    /// National and roster tokens to size the indexes for at start.
    pub index_capacity: (usize, usize),
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

/// What a check returns.
#[derive(Debug)]
pub struct Checked {
    /// Confirmed matches (only these are returned).
    pub matches: Vec<CheckMatch>,
    /// Candidates counted.
    pub candidates: u64,
    /// The log entry's index.
    pub log_index: u64,
    /// What to commit (the log entry and checkpoint only).
    pub commit: Commit,
    /// Log leaves appended.
    pub leaves: Vec<Hash>,
}

/// The published state of the log, read by delivery and audit queries.
#[derive(Debug, Clone, Default)]
pub struct LogView {
    /// Tree over every committed entry.
    pub tree: Tree,
    /// The latest signed checkpoint (covers `tree.size()` leaves).
    pub checkpoint: String,
}

/// What a batch's receipt counts.
struct Counts {
    upserts: u64,
    removes: u64,
    removes_unknown: u64,
    total: u64,
}

/// Interned force and source codes.
#[derive(Default)]
struct Names {
    codes: Vec<String>,
    ix: HashMap<String, u16>,
}

impl Names {
    fn intern(&mut self, code: &str) -> u16 {
        if let Some(i) = self.ix.get(code) {
            return *i;
        }
        let i = self.codes.len() as u16;
        self.codes.push(code.to_string());
        self.ix.insert(code.to_string(), i);
        i
    }

    fn get(&self, code: &str) -> Option<u16> {
        self.ix.get(code).copied()
    }

    fn name(&self, i: u16) -> &str {
        &self.codes[i as usize]
    }
}

/// Dense ids for (name, reference) pairs, reused after removal.
#[derive(Default)]
struct Ids {
    map: HashMap<(u16, Ref), u32>,
    info: Vec<Option<(u16, Ref)>>,
    free: Vec<u32>,
    count: HashMap<u16, u64>,
}

impl Ids {
    fn get(&self, name: u16, r: &Ref) -> Option<u32> {
        self.map.get(&(name, *r)).copied()
    }

    fn insert(&mut self, name: u16, r: Ref) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                self.info[id as usize] = Some((name, r));
                id
            }
            None => {
                self.info.push(Some((name, r)));
                (self.info.len() - 1) as u32
            }
        };
        self.map.insert((name, r), id);
        *self.count.entry(name).or_default() += 1;
        id
    }

    fn remove(&mut self, name: u16, r: &Ref) -> Option<u32> {
        let id = self.map.remove(&(name, *r))?;
        self.info[id as usize] = None;
        self.free.push(id);
        if let Some(c) = self.count.get_mut(&name) {
            *c -= 1;
        }
        Some(id)
    }

    fn info(&self, id: u32) -> Option<(u16, Ref)> {
        self.info.get(id as usize).copied().flatten()
    }

    fn count(&self, name: u16) -> u64 {
        self.count.get(&name).copied().unwrap_or(0)
    }
}

/// A disclosure in force: the case its amendments and retraction refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Case {
    /// The disclosure's id.
    id: String,
    /// 1, then one more for each amendment.
    version: u32,
    /// Kinds that agreed in the latest version.
    agreeing: KindSet,
}

/// Work in progress for one batch.
struct Batch {
    now_ms: i64,
    time: String,
    entries: Vec<Entry>,
    messages: Vec<(String, Disclosure)>,
    commit: Commit,
    disclosed: u64,
    amended: u64,
    retracted: u64,
    candidates: u64,
}

impl Batch {
    fn new(now_ms: i64) -> Batch {
        Batch {
            now_ms,
            time: vigil_proto::time::rfc3339(now_ms),
            entries: Vec::new(),
            messages: Vec::new(),
            commit: Commit::default(),
            disclosed: 0,
            amended: 0,
            retracted: 0,
            candidates: 0,
        }
    }
}

/// The engine.
pub struct Engine {
    settings: Settings,
    signer: Signer,
    matcher: Matcher,
    names: Names,
    subjects: Ids,
    records: Ids,
    active: HashMap<(u32, u32), Case>,
    subject_active: HashMap<u32, Vec<u32>>,
    record_active: HashMap<u32, Vec<u32>>,
    next_seq: HashMap<u16, u64>,
    tree: Tree,
    hits: Vec<Hit>,
}

fn keys(tokens: &[StoredToken]) -> Vec<(vigil_proto::KeyKind, IndexKey)> {
    tokens.iter().map(|(k, t)| (*k, index_key(t))).collect()
}

fn kind_names(k: KindSet) -> Vec<String> {
    k.iter().map(|k| k.short_name().to_string()).collect()
}

fn decode_sealed(b: &[u8]) -> Option<SealedDetails> {
    SealedDetails::decode(b).ok()
}

fn active_row(force: &str, pseudonym: Ref, source: &str, record_ref: Ref, case: &Case) -> ActiveRow {
    ActiveRow {
        force: force.to_string(),
        pseudonym,
        source: source.to_string(),
        record_ref,
        disclosure_id: case.id.clone(),
        version: case.version,
        agreeing: case.agreeing,
    }
}

impl Engine {
    /// Rebuilds the engine from the store, checks the log against its latest
    /// checkpoint, and appends policy and epoch entries if they changed.
    /// Returns the engine, the published log view, and a commit to apply
    /// before serving (empty when nothing changed).
    pub fn load(
        store: &dyn Store,
        settings: Settings,
        signer: Signer,
        now_ms: i64,
    ) -> Result<(Engine, LogView, Commit), EngineError> {
        let (national_tokens, roster_tokens) = settings.index_capacity;
        let mut e = Engine {
            settings,
            signer,
            matcher: Matcher::with_capacity(national_tokens, roster_tokens),
            names: Names::default(),
            subjects: Ids::default(),
            records: Ids::default(),
            active: HashMap::new(),
            subject_active: HashMap::new(),
            record_active: HashMap::new(),
            next_seq: HashMap::new(),
            tree: Tree::new(),
            hits: Vec::new(),
        };
        if let Some(origin) = store.meta("origin")?
            && origin != e.settings.origin.as_bytes()
        {
            return Err(EngineError::Integrity(format!(
                "this store's log has origin {:?}, the configuration says {:?}",
                String::from_utf8_lossy(&origin),
                e.settings.origin
            )));
        }
        if let Some(vkey) = store.meta("vkey")?
            && vkey != e.signer.verifier().vkey().as_bytes()
        {
            return Err(EngineError::Integrity("the audit signing key is not the one this log was signed with".into()));
        }
        let mut err: Option<StoreError> = None;
        store.for_each_subject(&mut |row: SubjectRow| {
            let f = e.names.intern(&row.force);
            let id = e.subjects.insert(f, row.pseudonym);
            e.matcher.add_subject(id, &keys(&row.tokens));
        })?;
        store.for_each_record(&mut |row: RecordRow| {
            let s = e.names.intern(&row.source);
            let id = e.records.insert(s, row.record_ref);
            e.matcher.add_record(id, &keys(&row.tokens));
        })?;
        store.for_each_active(&mut |row: ActiveRow| {
            let f = e.names.intern(&row.force);
            let s = e.names.intern(&row.source);
            match (e.subjects.get(f, &row.pseudonym), e.records.get(s, &row.record_ref)) {
                (Some(sid), Some(rid)) => {
                    e.add_active(sid, rid, Case { id: row.disclosure_id, version: row.version, agreeing: row.agreeing })
                }
                _ => err = Some(StoreError("a disclosure in force names a missing subject or record".into())),
            }
        })?;
        if let Some(x) = err {
            return Err(x.into());
        }
        for (force, seq) in store.last_sequences()? {
            let f = e.names.intern(&force);
            e.next_seq.insert(f, seq + 1);
        }
        store.for_each_log_entry(&mut |_, entry| {
            e.tree.push(leaf_hash(entry));
        })?;
        let mut view = LogView { tree: e.tree.clone(), checkpoint: String::new() };
        if let Some((size, note)) = store.latest_checkpoint()? {
            let cp = Checkpoint::open(&note, &e.settings.origin, &e.signer.verifier())
                .map_err(|x| EngineError::Integrity(format!("latest checkpoint does not verify: {x}")))?;
            if cp.size != size || cp.size != e.tree.size() || Some(cp.root) != e.tree.root(cp.size) {
                return Err(EngineError::Integrity(
                    "the stored log does not match its latest signed checkpoint".into(),
                ));
            }
            view.checkpoint = note;
        }
        // Policy and epoch entries when they changed (or on first start).
        let mut b = Batch::new(now_ms);
        let policy_changed = store.meta("policy_sha256")?.as_deref() != Some(e.settings.policy_sha256.as_bytes());
        if policy_changed {
            b.entries.push(Entry::Policy {
                time: b.time.clone(),
                version: e.settings.policy.version.clone(),
                sha256: e.settings.policy_sha256.clone(),
            });
            b.commit.meta.push(("policy_sha256".into(), e.settings.policy_sha256.clone().into_bytes()));
        }
        let epoch_changed = store.meta("epoch")?.as_deref() != Some(&e.settings.epoch.to_be_bytes()[..]);
        if epoch_changed {
            b.entries.push(Entry::Epoch { time: b.time.clone(), epoch: e.settings.epoch });
            b.commit.meta.push(("epoch".into(), e.settings.epoch.to_be_bytes().to_vec()));
        }
        let mut commit = Commit::default();
        if !b.entries.is_empty() || view.checkpoint.is_empty() {
            b.commit.meta.push(("origin".into(), e.settings.origin.clone().into_bytes()));
            b.commit.meta.push(("vkey".into(), e.signer.verifier().vkey().into_bytes()));
            let entries = std::mem::take(&mut b.entries);
            let (c, leaves) = e.finish(b, entries)?;
            for l in leaves {
                view.tree.push(l);
            }
            view.checkpoint = c.checkpoint.as_ref().map(|(_, n)| n.clone()).unwrap_or_default();
            commit = c;
        }
        Ok((e, view, commit))
    }

    /// Subjects a force has enrolled.
    pub fn enrolled(&self, force: &str) -> u64 {
        self.names.get(force).map_or(0, |f| self.subjects.count(f))
    }

    /// Records a source holds.
    pub fn held(&self, source: &str) -> u64 {
        self.names.get(source).map_or(0, |s| self.records.count(s))
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// National and roster tokens indexed.
    pub fn token_counts(&self) -> (usize, usize) {
        (self.matcher.national_tokens(), self.matcher.roster_tokens())
    }

    fn add_active(&mut self, sid: u32, rid: u32, case: Case) {
        if self.active.insert((sid, rid), case).is_none() {
            self.subject_active.entry(sid).or_default().push(rid);
            self.record_active.entry(rid).or_default().push(sid);
        }
    }

    fn remove_active(&mut self, sid: u32, rid: u32) -> Option<Case> {
        let case = self.active.remove(&(sid, rid))?;
        if let Some(v) = self.subject_active.get_mut(&sid) {
            v.retain(|r| *r != rid);
        }
        if let Some(v) = self.record_active.get_mut(&rid) {
            v.retain(|s| *s != sid);
        }
        Some(case)
    }

    fn next_id(&mut self, f: u16) -> (u64, String) {
        let seq = self.next_seq.entry(f).or_insert(1);
        let s = *seq;
        *seq += 1;
        (s, format!("{}-{s:010}", self.names.name(f)))
    }

    /// Queues a disclosure of (subject, record): a new case, version 1.
    fn disclose(
        &mut self,
        b: &mut Batch,
        sid: u32,
        rid: u32,
        evidence: &Evidence,
        score: f64,
        sealed: Option<SealedDetails>,
    ) {
        let (Some((f, pseud)), Some((s, rref))) = (self.subjects.info(sid), self.records.info(rid)) else {
            return;
        };
        let (seq, id) = self.next_id(f);
        let force = self.names.name(f).to_string();
        let source = self.names.name(s).to_string();
        b.entries.push(Entry::Disclosure {
            time: b.time.clone(),
            id: id.clone(),
            force: force.clone(),
            subject: hex::encode(&pseud),
            source: source.clone(),
            record_ref: hex::encode(&rref),
            agreeing: kind_names(evidence.agreeing),
            score,
            policy_version: self.settings.policy.version.clone(),
        });
        let msg = Disclosure {
            id: id.clone(),
            sequence: seq,
            r#type: DisclosureType::Disclosure as i32,
            subject: pseud.to_vec().into(),
            source: source.clone(),
            record_ref: rref.to_vec().into(),
            agreeing: evidence.agreeing.iter().map(|k| k as i32).collect(),
            policy_version: self.settings.policy.version.clone(),
            sealed,
            created_unix_ms: b.now_ms,
            version: 1,
            ..Default::default()
        };
        b.messages.push((force.clone(), msg));
        let case = Case { id, version: 1, agreeing: evidence.agreeing };
        b.commit.active_put.push(active_row(&force, pseud, &source, rref, &case));
        self.add_active(sid, rid, case);
        b.disclosed += 1;
    }

    /// Queues an amendment of the case in force for (subject, record): the
    /// same case, its next version, with the record's current details and
    /// the evidence as it stands now.
    #[allow(clippy::too_many_arguments)]
    fn amend(
        &mut self,
        b: &mut Batch,
        sid: u32,
        rid: u32,
        evidence: &Evidence,
        score: f64,
        sealed: Option<SealedDetails>,
        reason: &str,
    ) {
        let (Some((f, pseud)), Some((s, rref))) = (self.subjects.info(sid), self.records.info(rid)) else {
            return;
        };
        let Some(case) = self.active.get(&(sid, rid)).cloned() else {
            return;
        };
        let (seq, id) = self.next_id(f);
        let force = self.names.name(f).to_string();
        let source = self.names.name(s).to_string();
        let version = case.version + 1;
        b.entries.push(Entry::Amendment {
            time: b.time.clone(),
            id: id.clone(),
            amends: case.id.clone(),
            version,
            force: force.clone(),
            subject: hex::encode(&pseud),
            source: source.clone(),
            record_ref: hex::encode(&rref),
            agreeing: kind_names(evidence.agreeing),
            score,
            policy_version: self.settings.policy.version.clone(),
            reason: reason.to_string(),
        });
        let msg = Disclosure {
            id,
            sequence: seq,
            r#type: DisclosureType::Amendment as i32,
            subject: pseud.to_vec().into(),
            source: source.clone(),
            record_ref: rref.to_vec().into(),
            agreeing: evidence.agreeing.iter().map(|k| k as i32).collect(),
            policy_version: self.settings.policy.version.clone(),
            sealed,
            created_unix_ms: b.now_ms,
            amends: case.id.clone(),
            version,
            ..Default::default()
        };
        b.messages.push((force.clone(), msg));
        let case = Case { id: case.id, version, agreeing: evidence.agreeing };
        b.commit.active_put.push(active_row(&force, pseud, &source, rref, &case));
        self.add_active(sid, rid, case);
        b.amended += 1;
    }

    /// Queues a retraction of the case in force for (subject, record).
    fn retract(&mut self, b: &mut Batch, sid: u32, rid: u32, reason: &str) {
        let (Some((f, pseud)), Some((s, rref))) = (self.subjects.info(sid), self.records.info(rid)) else {
            return;
        };
        let Some(case) = self.remove_active(sid, rid) else {
            return;
        };
        let (seq, id) = self.next_id(f);
        let force = self.names.name(f).to_string();
        let source = self.names.name(s).to_string();
        b.entries.push(Entry::Retraction {
            time: b.time.clone(),
            id: id.clone(),
            retracts: case.id.clone(),
            force: force.clone(),
            subject: hex::encode(&pseud),
            source: source.clone(),
            record_ref: hex::encode(&rref),
            reason: reason.to_string(),
        });
        let msg = Disclosure {
            id,
            sequence: seq,
            r#type: DisclosureType::Retraction as i32,
            subject: pseud.to_vec().into(),
            source: source.clone(),
            record_ref: rref.to_vec().into(),
            policy_version: self.settings.policy.version.clone(),
            created_unix_ms: b.now_ms,
            retracts: case.id,
            ..Default::default()
        };
        b.messages.push((force.clone(), msg));
        b.commit.active_del.push((force, pseud, source, rref));
        b.retracted += 1;
    }

    /// Re-decides the cases of a subject whose tokens were (re)sent:
    /// `before` are the records with a case in force, `confirmed` those that
    /// confirm now. A case that still confirms is amended when its evidence
    /// changed; one that no longer confirms is retracted; a new confirmed
    /// pair is disclosed.
    fn redecide_subject(
        &mut self,
        b: &mut Batch,
        store: &dyn Store,
        sid: u32,
        before: &[u32],
        confirmed: Vec<(u32, Evidence, f64)>,
    ) -> Result<(), EngineError> {
        for rid in before {
            if !confirmed.iter().any(|c| c.0 == *rid) {
                self.retract(b, sid, *rid, "subject_changed");
            }
        }
        for (rid, ev, score) in confirmed {
            match self.active.get(&(sid, rid)) {
                Some(c) if c.agreeing == ev.agreeing => {}
                Some(_) => {
                    let sealed = self.sealed_of(store, rid)?;
                    self.amend(b, sid, rid, &ev, score, sealed, "subject_changed");
                }
                None => {
                    let sealed = self.sealed_of(store, rid)?;
                    self.disclose(b, sid, rid, &ev, score, sealed);
                }
            }
        }
        Ok(())
    }

    /// A record's sealed details, read from the store (decoded only when
    /// something is disclosed: most records match no one).
    fn sealed_of(&self, store: &dyn Store, rid: u32) -> Result<Option<SealedDetails>, EngineError> {
        let Some((s, rref)) = self.records.info(rid) else { return Ok(None) };
        Ok(store.record(self.names.name(s), &rref)?.and_then(|r| decode_sealed(&r.sealed)))
    }

    /// Appends `head` then the batch's disclosure entries to the log, fills
    /// in each message's audit proof, and signs a checkpoint.
    fn finish(&mut self, mut b: Batch, head: Vec<Entry>) -> Result<(Commit, Vec<Hash>), EngineError> {
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
        let cp = Checkpoint { origin: self.settings.origin.clone(), size, root, extensions: Vec::new() };
        let note = cp.sign(&self.signer).map_err(|x| EngineError::Integrity(format!("cannot sign checkpoint: {x}")))?;
        b.commit.checkpoint = Some((size, note));
        Ok((b.commit, leaves))
    }

    /// Tells a retry of the sender's last batch from its next batch:
    /// `Ok(None)` for the next batch (apply it), `Ok(Some(receipt))` for a
    /// retry (the first receipt again, marked replayed), and an error for
    /// anything else (another process sent in between, or the content of a
    /// retry differs).
    fn sequence(
        store: &dyn Store,
        caller: &str,
        sequence: u64,
        commitment: &str,
    ) -> Result<Option<BatchReceipt>, EngineError> {
        let last = store.sender(caller)?;
        let last_seq = last.as_ref().map_or(0, |l| l.sequence);
        if sequence == last_seq + 1 {
            return Ok(None);
        }
        match last {
            Some(l) if l.sequence == sequence && l.commitment == commitment => {
                let mut r = BatchReceipt::decode(l.receipt.as_slice())
                    .map_err(|_| StoreError("corrupt batch receipt".into()))?;
                r.replayed = true;
                Ok(Some(r))
            }
            Some(l) if l.sequence == sequence => Err(EngineError::Sequence(format!(
                "batch {sequence} was already applied with other content; nothing was changed. \
                 Another process is sending for {caller}: let it finish, then run again"
            ))),
            _ => Err(EngineError::Sequence(format!(
                "batch {sequence} is out of order: the last batch applied for {caller} is {last_seq}, so the next \
                 must be {}; nothing was changed. Another process may have sent meanwhile: run again",
                last_seq + 1
            ))),
        }
    }

    /// The last batch sequence applied for `caller`.
    pub fn last_sequence(store: &dyn Store, caller: &str) -> Result<u64, EngineError> {
        Ok(store.sender(caller)?.map_or(0, |s| s.sequence))
    }

    fn check_unique(upserts: impl Iterator<Item = Ref>, removes: &[Ref]) -> Result<(), EngineError> {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in upserts.enumerate() {
            if !seen.insert(r) {
                return Err(EngineError::Invalid(format!("upsert {i} repeats a reference already in this batch")));
            }
        }
        for (i, r) in removes.iter().enumerate() {
            if !seen.insert(*r) {
                return Err(EngineError::Invalid(format!(
                    "remove {i} names a reference that this batch also upserts or removes"
                )));
            }
        }
        Ok(())
    }

    /// Probes the matcher and keeps the confirmed counterparts; counts
    /// candidates into the batch.
    fn confirmed(
        &mut self,
        b: &mut Batch,
        probe: impl FnOnce(&mut Matcher, &mut Vec<Hit>),
    ) -> Vec<(u32, Evidence, f64)> {
        let policy = &self.settings.policy;
        let mut hits = std::mem::take(&mut self.hits);
        probe(&mut self.matcher, &mut hits);
        let mut confirmed = Vec::new();
        for h in &hits {
            let score = policy.score(&h.evidence);
            match policy.decide(score) {
                Decision::Confirmed => confirmed.push((h.id, h.evidence, score)),
                Decision::Candidate => b.candidates += 1,
                Decision::NoMatch => {}
            }
        }
        self.hits = hits;
        confirmed
    }

    /// Applies a force's roster batch.
    pub fn apply_roster(
        &mut self,
        store: &dyn Store,
        force: &str,
        batch: BatchIn<SubjectIn>,
        now_ms: i64,
    ) -> Result<Applied, EngineError> {
        let caller = format!("force/{force}");
        if let Some(r) = Self::sequence(store, &caller, batch.sequence, &batch.commitment)? {
            return Ok(Applied::Replayed(r));
        }
        Self::check_unique(batch.upserts.iter().map(|u| u.pseudonym), &batch.removes)?;
        let f = self.names.intern(force);
        let mut after = self.subjects.count(f) as i64;
        for u in &batch.upserts {
            if self.subjects.get(f, &u.pseudonym).is_none() {
                after += 1;
            }
        }
        for r in &batch.removes {
            if self.subjects.get(f, r).is_some() {
                after -= 1;
            }
        }
        if after as u64 > self.settings.max_roster_size {
            return Err(EngineError::Limit(format!(
                "this batch would enrol {after} subjects, more than the limit of {} per force",
                self.settings.max_roster_size
            )));
        }
        let mut b = Batch::new(now_ms);
        let mut removes_unknown = 0;
        for r in &batch.removes {
            let Some(sid) = self.subjects.get(f, r) else {
                removes_unknown += 1;
                continue;
            };
            for rid in self.subject_active.get(&sid).cloned().unwrap_or_default() {
                self.retract(&mut b, sid, rid, "subject_left");
            }
            let old = store.subject(force, r)?.unwrap_or_default();
            self.matcher.remove_subject(sid, &keys(&old));
            self.subjects.remove(f, r);
            self.subject_active.remove(&sid);
            b.commit.subjects_del.push((force.to_string(), *r));
        }
        for u in batch.upserts {
            let sid = match self.subjects.get(f, &u.pseudonym) {
                Some(sid) => {
                    let old = store.subject(force, &u.pseudonym)?.unwrap_or_default();
                    self.matcher.remove_subject(sid, &keys(&old));
                    sid
                }
                None => self.subjects.insert(f, u.pseudonym),
            };
            let k = keys(&u.tokens);
            self.matcher.add_subject(sid, &k);
            let confirmed = self.confirmed(&mut b, |m, hits| m.probe_national(&k, hits));
            let before = self.subject_active.get(&sid).cloned().unwrap_or_default();
            self.redecide_subject(&mut b, store, sid, &before, confirmed)?;
            b.commit.subjects_put.push(SubjectRow {
                force: force.to_string(),
                pseudonym: u.pseudonym,
                tokens: u.tokens,
            });
        }
        let enrolled = self.subjects.count(f);
        let upserts = b.commit.subjects_put.len() as u64;
        let removes = batch.removes.len() as u64 - removes_unknown;
        let head = Entry::RosterBatch {
            time: b.time.clone(),
            force: force.to_string(),
            sequence: batch.sequence,
            upserts,
            removes,
            removes_unknown,
            enrolled,
            disclosures: b.disclosed,
            amendments: b.amended,
            retractions: b.retracted,
            candidates: b.candidates,
            commitment: batch.commitment.clone(),
        };
        let counts = Counts { upserts, removes, removes_unknown, total: enrolled };
        self.complete(b, head, caller, batch.sequence, batch.commitment, counts)
    }

    /// Applies a source's national batch.
    pub fn apply_national(
        &mut self,
        store: &dyn Store,
        source: &str,
        batch: BatchIn<RecordIn>,
        now_ms: i64,
    ) -> Result<Applied, EngineError> {
        let caller = format!("source/{source}");
        if let Some(r) = Self::sequence(store, &caller, batch.sequence, &batch.commitment)? {
            return Ok(Applied::Replayed(r));
        }
        Self::check_unique(batch.upserts.iter().map(|u| u.record_ref), &batch.removes)?;
        let s = self.names.intern(source);
        let mut b = Batch::new(now_ms);
        let mut removes_unknown = 0;
        let mut unchanged = 0u64;
        for r in &batch.removes {
            let Some(rid) = self.records.get(s, r) else {
                removes_unknown += 1;
                continue;
            };
            for sid in self.record_active.get(&rid).cloned().unwrap_or_default() {
                self.retract(&mut b, sid, rid, "record_withdrawn");
            }
            let old = store.record(source, r)?.map(|x| x.tokens).unwrap_or_default();
            self.matcher.remove_record(rid, &keys(&old));
            self.records.remove(s, r);
            self.record_active.remove(&rid);
            b.commit.records_del.push((source.to_string(), *r));
        }
        let removes = batch.removes.len() as u64 - removes_unknown;
        for u in batch.upserts {
            let (rid, details_changed) = match self.records.get(s, &u.record_ref) {
                Some(rid) => {
                    let old = store.record(source, &u.record_ref)?;
                    // The same tokens and the same sealed box (sealing is
                    // deterministic): a re-sent, unchanged record. Nothing to do.
                    if old.as_ref().is_some_and(|o| o.tokens == u.tokens && o.sealed == u.sealed) {
                        unchanged += 1;
                        continue;
                    }
                    let details_changed = old.as_ref().is_none_or(|o| o.sealed != u.sealed);
                    self.matcher.remove_record(rid, &keys(&old.map(|x| x.tokens).unwrap_or_default()));
                    (rid, details_changed)
                }
                None => (self.records.insert(s, u.record_ref), false),
            };
            let k = keys(&u.tokens);
            self.matcher.add_record(rid, &k);
            let confirmed = self.confirmed(&mut b, |m, hits| m.probe_roster(&k, hits));
            // Decoded only for a disclosure: most records match no one.
            let sealed = if confirmed.is_empty() { None } else { decode_sealed(&u.sealed) };
            let before = self.record_active.get(&rid).cloned().unwrap_or_default();
            self.redecide_record(&mut b, rid, &before, confirmed, sealed, details_changed);
            b.commit.records_put.push(RecordRow {
                source: source.to_string(),
                record_ref: u.record_ref,
                tokens: u.tokens,
                sealed: u.sealed,
            });
        }
        let held = self.records.count(s);
        let upserts = b.commit.records_put.len() as u64 + unchanged;
        let head = Entry::NationalBatch {
            time: b.time.clone(),
            source: source.to_string(),
            sequence: batch.sequence,
            upserts,
            removes,
            removes_unknown,
            records: held,
            disclosures: b.disclosed,
            amendments: b.amended,
            retractions: b.retracted,
            candidates: b.candidates,
            commitment: batch.commitment.clone(),
        };
        let counts = Counts { upserts, removes, removes_unknown, total: held };
        self.complete(b, head, caller, batch.sequence, batch.commitment, counts)
    }

    /// As [`Engine::redecide_subject`] for a record that was added or
    /// changed, whose new details are at hand: a case is also amended when
    /// the details changed.
    fn redecide_record(
        &mut self,
        b: &mut Batch,
        rid: u32,
        before: &[u32],
        confirmed: Vec<(u32, Evidence, f64)>,
        sealed: Option<SealedDetails>,
        details_changed: bool,
    ) {
        for sid in before {
            if !confirmed.iter().any(|c| c.0 == *sid) {
                self.retract(b, *sid, rid, "record_changed");
            }
        }
        for (sid, ev, score) in confirmed {
            match self.active.get(&(sid, rid)) {
                Some(c) if c.agreeing == ev.agreeing && !details_changed => {}
                Some(_) => self.amend(b, sid, rid, &ev, score, sealed.clone(), "record_changed"),
                None => self.disclose(b, sid, rid, &ev, score, sealed.clone()),
            }
        }
    }

    fn complete(
        &mut self,
        b: Batch,
        head: Entry,
        caller: String,
        sequence: u64,
        commitment: String,
        counts: Counts,
    ) -> Result<Applied, EngineError> {
        let log_index = self.tree.size();
        let forces: Vec<String> = {
            let mut f: Vec<String> = b.messages.iter().map(|(f, _)| f.clone()).collect();
            f.sort();
            f.dedup();
            f
        };
        let (mut commit, leaves) = self.finish(b, vec![head])?;
        let receipt = BatchReceipt {
            sequence,
            replayed: false,
            upserts: counts.upserts,
            removes: counts.removes,
            removes_unknown: counts.removes_unknown,
            total: counts.total,
            log_index,
        };
        commit.batch = Some(SenderState { caller, sequence, commitment, receipt: receipt.encode_to_vec() });
        Ok(Applied::Fresh { receipt, commit, leaves, forces })
    }

    /// A pre-employment check: applicants are matched against national
    /// tokens and forgotten. Only the log entry (counts) is committed.
    pub fn check(
        &mut self,
        store: &dyn Store,
        force: &str,
        request_id: &str,
        applicants: Vec<ApplicantIn>,
        now_ms: i64,
    ) -> Result<Checked, EngineError> {
        let policy = self.settings.policy.clone();
        let mut b = Batch::new(now_ms);
        let mut matches = Vec::new();
        for a in &applicants {
            let mut hits = std::mem::take(&mut self.hits);
            self.matcher.probe_national(&keys(&a.tokens), &mut hits);
            for h in &hits {
                match policy.decide(policy.score(&h.evidence)) {
                    Decision::Confirmed => {
                        let Some((s, rref)) = self.records.info(h.id) else { continue };
                        let source = self.names.name(s).to_string();
                        let sealed = self.sealed_of(store, h.id)?;
                        matches.push(CheckMatch {
                            applicant: a.applicant.clone().into(),
                            source,
                            record_ref: rref.to_vec().into(),
                            agreeing: h.evidence.agreeing.iter().map(|k| k as i32).collect(),
                            sealed,
                        });
                    }
                    Decision::Candidate => b.candidates += 1,
                    Decision::NoMatch => {}
                }
            }
            self.hits = hits;
        }
        let candidates = b.candidates;
        let head = Entry::Check {
            time: b.time.clone(),
            force: force.to_string(),
            request_id: request_id.to_string(),
            applicants: applicants.len() as u64,
            confirmed: matches.len() as u64,
            candidates,
            policy_version: policy.version.clone(),
        };
        let log_index = self.tree.size();
        let (commit, leaves) = self.finish(b, vec![head])?;
        Ok(Checked { matches, candidates, log_index, commit, leaves })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;
    use vigil_proto::KeyKind;
    use vigil_proto::tlog::verify_inclusion;

    fn settings() -> Settings {
        Settings {
            epoch: 1,
            policy: Policy::default_policy(),
            policy_sha256: "p1".into(),
            origin: "vigil.test/audit".into(),
            max_roster_size: 100,
            index_capacity: (64, 64),
        }
    }

    fn signer() -> Signer {
        Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap().0
    }

    fn t(n: u8) -> [u8; 16] {
        [n; 16]
    }

    /// Tokens of a person `p`: NINO and name/date kinds all agree.
    fn person(p: u8) -> Vec<StoredToken> {
        vec![
            (KeyKind::Nino, t(p)),
            (KeyKind::NameDob, t(p.wrapping_add(100))),
            (KeyKind::CanonNameDob, t(p.wrapping_add(200))),
        ]
    }

    fn commit(store: &RedbStore, a: Applied) -> BatchReceipt {
        match a {
            Applied::Fresh { receipt, commit, .. } => {
                store.commit(&commit).unwrap();
                receipt
            }
            Applied::Replayed(r) => r,
        }
    }

    /// A commitment that differs whenever the content does.
    fn commitment<T: std::fmt::Debug>(upserts: &T, removes: &[u8]) -> String {
        format!("{upserts:?}{removes:?}")
    }

    fn roster(seq: u64, upserts: Vec<(u8, Vec<StoredToken>)>, removes: Vec<u8>) -> BatchIn<SubjectIn> {
        BatchIn {
            sequence: seq,
            commitment: commitment(&upserts, &removes),
            upserts: upserts.into_iter().map(|(p, tokens)| SubjectIn { pseudonym: [p; 16], tokens }).collect(),
            removes: removes.into_iter().map(|p| [p; 16]).collect(),
        }
    }

    fn national_with(seq: u64, upserts: Vec<(u8, Vec<StoredToken>, Vec<u8>)>, removes: Vec<u8>) -> BatchIn<RecordIn> {
        BatchIn {
            sequence: seq,
            commitment: commitment(&upserts, &removes),
            upserts: upserts
                .into_iter()
                .map(|(r, tokens, sealed)| RecordIn { record_ref: [r; 16], tokens, sealed })
                .collect(),
            removes: removes.into_iter().map(|r| [r; 16]).collect(),
        }
    }

    fn national(seq: u64, upserts: Vec<(u8, Vec<StoredToken>)>, removes: Vec<u8>) -> BatchIn<RecordIn> {
        national_with(seq, upserts.into_iter().map(|(r, t)| (r, t, vec![])).collect(), removes)
    }

    fn pending(store: &RedbStore, force: &str) -> Vec<Disclosure> {
        store
            .pending(force, 0, 1000)
            .unwrap()
            .into_iter()
            .map(|(_, m)| Disclosure::decode(m.as_slice()).unwrap())
            .collect()
    }

    fn fresh() -> (tempfile::TempDir, RedbStore, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let (e, _, c) = Engine::load(&store, settings(), signer(), 0).unwrap();
        store.commit(&c).unwrap();
        (dir, store, e)
    }

    fn sealed(category: u8) -> Vec<u8> {
        SealedDetails { epoch: 1, nonce: vec![category; 12].into(), ciphertext: vec![category; 20].into() }
            .encode_to_vec()
    }

    #[test]
    fn continuous_matching_disclosures_retractions_and_restart() {
        let (_dir, store, mut e) = fresh();

        // Two forces enrol; person 1 works for gmp, person 2 for wmp.
        let r = commit(
            &store,
            e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (3, person(3))], vec![]), 1).unwrap(),
        );
        assert_eq!((r.upserts, r.total, r.replayed, r.sequence), (2, 2, false, 1));
        commit(&store, e.apply_roster(&store, "wmp", roster(1, vec![(2, person(2))], vec![]), 2).unwrap());
        // The national feed names persons 1 and 2, and someone else.
        let first = national(1, vec![(10, person(1)), (20, person(2)), (30, person(9))], vec![]);
        let a = e.apply_national(&store, "pnc", first.clone(), 3).unwrap();
        let Applied::Fresh { ref forces, .. } = a else { panic!() };
        assert_eq!(forces, &vec!["gmp".to_string(), "wmp".to_string()]);
        commit(&store, a);
        let gmp = pending(&store, "gmp");
        assert_eq!(gmp.len(), 1);
        assert_eq!((gmp[0].subject.as_ref(), gmp[0].version), (&[1; 16][..], 1));
        assert_eq!(gmp[0].record_ref.as_ref(), &[10; 16]);
        assert_eq!(pending(&store, "wmp")[0].record_ref.as_ref(), &[20; 16]);

        // A retry of batch 1 (same sequence, same content) changes nothing
        // and gets the first receipt back.
        let r = commit(&store, e.apply_national(&store, "pnc", first, 4).unwrap());
        assert!(r.replayed);
        assert_eq!((r.upserts, r.total), (3, 3));
        assert_eq!(pending(&store, "gmp").len(), 1);
        // The same sequence with other content, or a gap, is refused.
        let other = national(1, vec![(40, person(3))], vec![]);
        assert!(matches!(e.apply_national(&store, "pnc", other, 4), Err(EngineError::Sequence(_))));
        let gap = national(3, vec![(40, person(3))], vec![]);
        assert!(matches!(e.apply_national(&store, "pnc", gap, 4), Err(EngineError::Sequence(_))));

        // Re-sending an unchanged record in a later batch changes nothing:
        // no retraction, no second disclosure.
        let a = e.apply_national(&store, "pnc", national(2, vec![(10, person(1))], vec![]), 4).unwrap();
        let Applied::Fresh { commit: c, .. } = a else { panic!() };
        assert!(c.disclosures.is_empty() && c.records_put.is_empty());
        store.commit(&c).unwrap();

        // A delta naming person 3 reaches gmp only.
        commit(&store, e.apply_national(&store, "pnc", national(3, vec![(40, person(3))], vec![]), 5).unwrap());
        assert_eq!(pending(&store, "gmp").len(), 2);
        assert_eq!(pending(&store, "wmp").len(), 1);

        // A leaver: person 1 leaves gmp, the disclosure is retracted.
        let r = commit(&store, e.apply_roster(&store, "gmp", roster(2, vec![], vec![1, 99]), 6).unwrap());
        assert_eq!((r.removes, r.removes_unknown, r.total), (1, 1, 1));
        let g = pending(&store, "gmp");
        assert_eq!(g.len(), 3);
        assert_eq!(g[2].r#type, DisclosureType::Retraction as i32);
        assert_eq!(g[2].retracts, g[0].id);
        // Withdrawing record 20 retracts wmp's disclosure.
        commit(&store, e.apply_national(&store, "pnc", national(4, vec![], vec![20]), 7).unwrap());
        assert_eq!(pending(&store, "wmp").len(), 2);

        // Every disclosure's entry is in the log, and the log matches its checkpoint.
        let (_, view, c) = Engine::load(&store, settings(), signer(), 8).unwrap();
        assert!(c.is_empty(), "restart with the same policy and epoch appends nothing");
        let root = view.tree.root(view.tree.size()).unwrap();
        for d in pending(&store, "gmp") {
            let a = d.audit.unwrap();
            let proof = view.tree.inclusion_proof(a.leaf_index, view.tree.size()).unwrap();
            verify_inclusion(&leaf_hash(&a.entry), a.leaf_index, view.tree.size(), &proof, &root).unwrap();
            let entry = Entry::parse(&a.entry).unwrap();
            assert!(matches!(entry, Entry::Disclosure { .. } | Entry::Retraction { .. }));
        }
        // After a restart the engine knows what is in force and which
        // sequence comes next: re-sending person 3 unchanged discloses
        // nothing new.
        let (mut e2, _, _) = Engine::load(&store, settings(), signer(), 9).unwrap();
        assert_eq!(Engine::last_sequence(&store, "force/gmp").unwrap(), 2);
        let a = e2.apply_roster(&store, "gmp", roster(3, vec![(3, person(3))], vec![]), 10).unwrap();
        let Applied::Fresh { commit: c, .. } = a else { panic!() };
        assert!(c.disclosures.is_empty());
    }

    /// The cases the integrity issue found: the same content sent again in
    /// a later batch is applied again. A withdrawn record fed again is
    /// disclosed again; a leaver who rejoins and leaves again is gone; a
    /// category changed A → B → A amends the case twice and ends at A.
    #[test]
    fn the_same_content_sent_again_later_is_applied() {
        let (_dir, store, mut e) = fresh();
        commit(&store, e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![]), 1).unwrap());
        let feed = |seq| national_with(seq, vec![(10, person(1), sealed(1))], vec![]);
        commit(&store, e.apply_national(&store, "pnc", feed(1), 2).unwrap());
        commit(&store, e.apply_national(&store, "pnc", national(2, vec![], vec![10]), 3).unwrap());
        let r = commit(&store, e.apply_national(&store, "pnc", feed(3), 4).unwrap());
        assert!(!r.replayed);
        assert_eq!(r.total, 1, "the re-instated record is held again");
        let g = pending(&store, "gmp");
        let types: Vec<i32> = g.iter().map(|d| d.r#type).collect();
        let (d, x) = (DisclosureType::Disclosure as i32, DisclosureType::Retraction as i32);
        assert_eq!(types, vec![d, x, d], "disclosed, retracted, disclosed again");
        assert_ne!(g[0].id, g[2].id);

        // A → B → A: two amendments of the same case, versions 2 and 3.
        let change = |seq, cat| national_with(seq, vec![(10, person(1), sealed(cat))], vec![]);
        commit(&store, e.apply_national(&store, "pnc", change(4, 2), 5).unwrap());
        commit(&store, e.apply_national(&store, "pnc", change(5, 1), 6).unwrap());
        let g = pending(&store, "gmp");
        let amendments: Vec<&Disclosure> = g.iter().filter(|d| d.r#type == DisclosureType::Amendment as i32).collect();
        assert_eq!(amendments.len(), 2);
        assert!(amendments.iter().all(|a| a.amends == g[2].id));
        assert_eq!(amendments.iter().map(|a| a.version).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(amendments[1].sealed.as_ref().unwrap().encode_to_vec(), sealed(1));
        assert_eq!(store.record("pnc", &[10; 16]).unwrap().unwrap().sealed, sealed(1));
        let mut active = Vec::new();
        store.for_each_active(&mut |a| active.push(a)).unwrap();
        assert_eq!((active.len(), active[0].version, active[0].disclosure_id.clone()), (1, 3, g[2].id.clone()));

        // Leave, rejoin, leave: enrolled 0, and the rejoiner's case is
        // retracted again.
        commit(&store, e.apply_roster(&store, "gmp", roster(2, vec![], vec![1]), 7).unwrap());
        commit(&store, e.apply_roster(&store, "gmp", roster(3, vec![(1, person(1))], vec![]), 8).unwrap());
        let r = commit(&store, e.apply_roster(&store, "gmp", roster(4, vec![], vec![1]), 9).unwrap());
        assert_eq!((r.removes, r.total, r.replayed), (1, 0, false));
        assert_eq!(e.enrolled("gmp"), 0);
        let mut active = Vec::new();
        store.for_each_active(&mut |a| active.push(a)).unwrap();
        assert!(active.is_empty());
    }

    #[test]
    fn limits_and_inconsistent_batches_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let mut s = settings();
        s.max_roster_size = 2;
        let (mut e, _, c) = Engine::load(&store, s, signer(), 0).unwrap();
        store.commit(&c).unwrap();
        let err =
            e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (2, person(2)), (3, person(3))], vec![]), 1);
        assert!(matches!(err, Err(EngineError::Limit(_))));
        let err = e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (1, person(1))], vec![]), 1);
        assert!(matches!(err, Err(EngineError::Invalid(_))));
        let err = e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![1]), 1);
        assert!(matches!(err, Err(EngineError::Invalid(_))));
        assert_eq!(e.enrolled("gmp"), 0);
        assert_eq!(Engine::last_sequence(&store, "force/gmp").unwrap(), 0);
    }

    #[test]
    fn refuses_a_store_signed_with_another_key_or_origin() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let (_, _, c) = Engine::load(&store, settings(), signer(), 0).unwrap();
        store.commit(&c).unwrap();
        let other = Signer::from_seed("vigil.test/audit", &[4; 32]).unwrap().0;
        assert!(matches!(Engine::load(&store, settings(), other, 1), Err(EngineError::Integrity(_))));
        let mut s = settings();
        s.origin = "elsewhere/audit".into();
        assert!(matches!(Engine::load(&store, s, signer(), 1), Err(EngineError::Integrity(_))));
    }

    #[test]
    fn checks_return_confirmed_matches_and_keep_no_tokens() {
        let (_dir, store, mut e) = fresh();
        commit(&store, e.apply_national(&store, "pnc", national(1, vec![(10, person(1))], vec![]), 1).unwrap());
        let (nat, ros) = e.token_counts();
        let checked = e
            .check(
                &store,
                "gmp",
                "req-1",
                vec![
                    ApplicantIn { applicant: vec![1], tokens: person(1) },
                    ApplicantIn { applicant: vec![2], tokens: person(2) },
                ],
                2,
            )
            .unwrap();
        assert_eq!(checked.matches.len(), 1);
        assert_eq!(checked.matches[0].applicant.as_ref(), &[1]);
        assert_eq!(e.token_counts(), (nat, ros), "applicant tokens are not kept");
        assert!(checked.commit.subjects_put.is_empty() && checked.commit.disclosures.is_empty());
        let entry = Entry::parse(&checked.commit.log[0].1).unwrap();
        assert!(matches!(entry, Entry::Check { applicants: 2, confirmed: 1, .. }));
    }
}
