//! The coordinator's engine: continuous matching, disclosures, amendments,
//! retractions and the audit log, as one state machine. No network, and
//! the store is only read, through [`StoreRead`]. Each `apply_*` call
//! changes the in-memory state and returns the [`Commit`] that makes the
//! change durable. The caller commits it, then publishes the new log state.
//! If the commit fails, the caller rebuilds the engine from the store
//! ([`Engine::load`]), so memory never runs ahead of disk.
//!
//! The in-memory state is derived: the matcher's two indexes, the id
//! registry, the cases in force, per-force delivery sequences, and the
//! Merkle tree of the log. All of it is rebuilt from the store at start-up,
//! and the tree is checked against the latest signed checkpoint.
//!
//! # Layout
//! - [`types`]: settings, batches in, results out, errors.
//! - `registry`: dense ids for subjects and records, interned codes.
//! - `outbox`: cases in force; queuing disclosures, amendments and
//!   retractions with their log entries.
//! - `log`: the Merkle tree and signer; closing a batch into a commit.
//! - `load`: rebuilding the engine from the store at start-up and after a
//!   failed commit.
//! - this module: applying roster batches, national batches and
//!   checks (probe, classify, re-decide).

mod load;
mod log;
mod outbox;
mod registry;
pub mod types;

use prost::Message;
use std::collections::HashMap;
use vigil_proto::KeyKind;
use vigil_proto::audit::Entry;
use vigil_proto::kinds::KindSet;
use vigil_proto::v1::{BatchReceipt, CheckMatch, SealedDetails};

use crate::index::IndexKey;
use crate::matcher::{Hit, Matcher, Scratch};
use crate::pepper::index_key;
use crate::policy::{Assessment, Decision, Evidence, features};
use crate::store::{RecordRow, Ref, SenderState, StoreError, StoreRead, StoredToken, SubjectRow};

pub use log::LogView;
pub use types::{ApplicantIn, Applied, BatchIn, CheckMeta, Checked, EngineError, RecordIn, Settings, SubjectIn};

use log::AuditLog;
use outbox::{Batch, Outbox};
use registry::Registry;
use types::Counts;

/// The engine.
pub struct Engine {
    settings: Settings,
    matcher: Matcher,
    registry: Registry,
    outbox: Outbox,
    log: AuditLog,
    hits: Vec<Hit>,
    space: Scratch,
    /// The population the cases in force were last all decided against
    /// (see [`GROWTH`]).
    decided_at: u32,
}

/// When the national records the prior is spread over grow by this factor
/// since the cases in force were last all decided, every case in force is
/// decided again: a pair confirmed while few records were held is judged as
/// the grown national data would judge it. (Setting `[matching]
/// national_records` to the full size avoids the drift altogether.)
const GROWTH: f64 = 1.1;

/// A subject hit by a new or changed record is decided again only if that
/// pair, judged alone, reaches this probability (or the subject has a case
/// in force). Weighing the subject's other candidates can raise a pair's
/// odds at most about `1 / ((1 − further_record) · unseen_share)` times
/// (about 60 with the shipped values): from 0.001, not to a candidate.
/// Where the policy weighs the record's side too (which can raise odds up
/// to `1 / unseen_share` times more), the floor is 40 times lower.
const SUBJECT_FLOOR: f64 = 0.001;

/// While parties move between two epochs, an item holds its tokens of
/// both: an upsert of `epoch` replaces the item's tokens of that epoch and
/// keeps those of the other (tokens of different epochs never agree, so
/// each pair is judged on what its two sides share in either). Otherwise
/// an upsert replaces everything.
fn merged(old: &[StoredToken], new: Vec<StoredToken>, epoch: u32, moving: bool) -> Vec<StoredToken> {
    let mut out = new;
    if moving {
        out.extend(old.iter().filter(|(_, t)| crate::pepper::parity(t) != epoch & 1).copied());
    }
    out
}

fn keys(tokens: &[StoredToken]) -> Vec<(vigil_proto::KeyKind, IndexKey)> {
    tokens.iter().map(|(k, t)| (*k, index_key(t))).collect()
}

fn decode_sealed(b: &[u8]) -> Option<SealedDetails> {
    SealedDetails::decode(b).ok()
}

/// What a force receives of a record's sealed details: in token scheme 3,
/// only the record-key wraps of the kinds that agree, so that the force can
/// open the details only through an identity it evaluated itself.
fn forwarded(sealed: Option<SealedDetails>, agreeing: KindSet) -> Option<SealedDetails> {
    sealed.map(|mut s| {
        vigil_proto::tokens::retain_wraps(&mut s, |k| KeyKind::try_from(k).is_ok_and(|k| agreeing.contains(k)));
        s
    })
}

/// A counterpart that confirms: its id, the evidence and the policy's reading.
type Confirmed = (u32, Evidence, Assessment);

/// A subject's national candidates (into `hits`) and the policy's reading
/// of each, those in one source decided together; reads the engine's
/// state only, so that subjects can be assessed on several threads.
fn candidates_of(
    matcher: &Matcher,
    registry: &Registry,
    policy: &crate::policy::Policy,
    keys: &[(vigil_proto::KeyKind, IndexKey)],
    hits: &mut Vec<Hit>,
    space: &mut Scratch,
) -> Vec<Assessment> {
    matcher.probe_national_with(keys, hits, space);
    let candidates: Vec<(u16, Evidence)> =
        hits.iter().map(|h| (registry.record_source(h.id).unwrap_or(u16::MAX), h.evidence)).collect();
    policy.assess_subject(&candidates)
}

/// The keys of subjects to re-decide, by id.
type Work = [(u32, Vec<(vigil_proto::KeyKind, IndexKey)>)];

/// [`candidates_of`] for each subject of `work`, in order: on up to
/// `threads` threads when there are at least [`PARALLEL_FROM`] of them.
/// The result does not depend on the number of threads.
fn assess_subjects(
    matcher: &Matcher,
    registry: &Registry,
    policy: &crate::policy::Policy,
    work: &Work,
    threads: usize,
) -> Vec<(Vec<Hit>, Vec<Assessment>)> {
    let assess = |items: &Work| {
        let mut space = Scratch::default();
        items
            .iter()
            .map(|(_, k)| {
                let mut hits = Vec::new();
                let a = candidates_of(matcher, registry, policy, k, &mut hits, &mut space);
                (hits, a)
            })
            .collect::<Vec<_>>()
    };
    if threads < 2 || work.len() < PARALLEL_FROM {
        return assess(work);
    }
    let per = work.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let running: Vec<_> = work.chunks(per).map(|c| scope.spawn(move || assess(c))).collect();
        running.into_iter().flat_map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// Subjects re-decided together are assessed on several threads from this
/// many (fewer, as for a small delta, are not worth the threads).
const PARALLEL_FROM: usize = 64;

/// Subjects assessed at a time (bounds the candidates held at once).
const RESCORE_CHUNK: usize = 1024;

/// Threads for re-decisions: the cores this process may use, at most four
/// (read once: on Linux it reads the cgroup's quota).
fn rescore_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4))
}

/// What a batch's sequence number says (`Engine::sequence`).
enum Sequenced {
    /// The next batch: apply it. Holds the sender's last batch, which is
    /// kept as the one before for retries.
    Next(Option<SenderState>),
    /// A retry of an applied batch: its first receipt, marked replayed.
    Replay(BatchReceipt),
}

impl Engine {
    /// Subjects a force has enrolled.
    pub fn enrolled(&self, force: &str) -> u64 {
        self.registry.enrolled(force)
    }

    /// Records a source holds.
    pub fn held(&self, source: &str) -> u64 {
        self.registry.held(source)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A fresh checkpoint of the log as it stands, dated `now_ms`: the
    /// commit holds only that checkpoint.
    pub fn refresh_checkpoint(&self, now_ms: i64) -> Result<crate::store::Commit, EngineError> {
        let checkpoint = self.log.refresh(&vigil_proto::time::rfc3339(now_ms))?;
        Ok(crate::store::Commit { checkpoint: Some(checkpoint), ..Default::default() })
    }

    /// National and roster tokens indexed.
    pub fn token_counts(&self) -> (usize, usize) {
        (self.matcher.national_tokens(), self.matcher.roster_tokens())
    }

    /// A record's sealed details, read from the store (decoded only when
    /// something is disclosed: most records match no one).
    fn sealed_of(&self, store: &dyn StoreRead, rid: u32) -> Result<Option<SealedDetails>, EngineError> {
        let Some((source, rref)) = self.registry.record_info(rid) else { return Ok(None) };
        Ok(store.record(source, &rref)?.and_then(|r| decode_sealed(&r.sealed)))
    }

    /// Tells a retry of one of the sender's last two batches from its next
    /// batch: `Next(last)` for the next batch (apply it; `last` is the batch
    /// before, kept for retries), `Replay(receipt)` for a retry (the first
    /// receipt again, marked replayed), and an error for anything else
    /// (another process sent in between, or the content of a retry differs).
    fn sequence(
        store: &dyn StoreRead,
        caller: &str,
        sequence: u64,
        commitment: &str,
    ) -> Result<Sequenced, EngineError> {
        let last = store.sender(caller)?;
        let last_seq = last.as_ref().map_or(0, |l| l.sequence);
        if sequence == last_seq + 1 {
            return Ok(Sequenced::Next(last));
        }
        // The batch before the last: the two were in flight together and
        // both replies were lost.
        let last = match last {
            Some(l) if sequence + 1 == l.sequence => store.sender(&Self::previous_of(caller))?.or(Some(l)),
            other => other,
        };
        match last {
            Some(l) if l.sequence == sequence && l.commitment == commitment => {
                let mut r = BatchReceipt::decode(l.receipt.as_slice())
                    .map_err(|_| StoreError("corrupt batch receipt".into()))?;
                r.replayed = true;
                Ok(Sequenced::Replay(r))
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

    /// Where the batch before a sender's last is kept (`force/<code>` and
    /// `source/<code>` never hold a second `/`).
    pub fn previous_of(caller: &str) -> String {
        format!("{caller}/previous")
    }

    /// The last batch sequence applied for `caller`.
    pub fn last_sequence(store: &dyn StoreRead, caller: &str) -> Result<u64, EngineError> {
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

    /// Probes the national index with a subject's (or applicant's) keys and
    /// decides every candidate, those in one source together
    /// ([`crate::policy::subject`]); keeps the confirmed ones. For an
    /// enrolled subject (`enrolled`: its id and the store) each candidate is
    /// also weighed against its record's other subjects when the policy
    /// asks for it ([`crate::policy::record`]). Candidates are counted into
    /// the batch when `count(record)` says so.
    fn confirmed_subject(
        &mut self,
        b: &mut Batch,
        keys: &[(vigil_proto::KeyKind, IndexKey)],
        count: impl Fn(u32) -> bool,
        enrolled: Option<(u32, &dyn StoreRead)>,
    ) -> Result<Vec<Confirmed>, EngineError> {
        let mut hits = std::mem::take(&mut self.hits);
        let mut space = std::mem::take(&mut self.space);
        let assessed = candidates_of(&self.matcher, &self.registry, &self.settings.policy, keys, &mut hits, &mut space);
        self.space = space;
        let confirmed = self.confirmed_of(b, &hits, assessed, count, enrolled);
        self.hits = hits;
        confirmed
    }

    /// The rest of [`Engine::confirmed_subject`] once the candidates are
    /// assessed ([`candidates_of`]): the record's side, the confirmed ones,
    /// the count.
    fn confirmed_of(
        &mut self,
        b: &mut Batch,
        hits: &[Hit],
        mut assessed: Vec<Assessment>,
        count: impl Fn(u32) -> bool,
        enrolled: Option<(u32, &dyn StoreRead)>,
    ) -> Result<Vec<Confirmed>, EngineError> {
        if let Some((sid, store)) = enrolled
            && self.settings.policy.record_side()
        {
            for (h, a) in hits.iter().zip(assessed.iter_mut()) {
                let claim = self.claim_of_others(store, b, h.id, sid)?;
                let ln_c = self.settings.policy.ln_unclaimed(claim, h.evidence.records);
                self.settings.policy.claim(a, ln_c);
            }
        }
        let mut confirmed = Vec::new();
        for (h, a) in hits.iter().zip(assessed) {
            match a.decision {
                Decision::Confirmed => confirmed.push((h.id, h.evidence, a)),
                Decision::Candidate if count(h.id) => b.candidates += 1,
                _ => {}
            }
        }
        Ok(confirmed)
    }

    /// The keys of a national record: this batch's, if it came in it, else
    /// the store's.
    fn record_keys(
        &self,
        store: &dyn StoreRead,
        b: &Batch,
        rid: u32,
    ) -> Result<Vec<(vigil_proto::KeyKind, IndexKey)>, EngineError> {
        let Some((source, rref)) = self.registry.record_info(rid) else { return Ok(Vec::new()) };
        if let Some(r) = b.commit.records_put.iter().rev().find(|r| r.source == source && r.record_ref == rref) {
            return Ok(keys(&r.tokens));
        }
        Ok(keys(&store.record(source, &rref)?.map(|x| x.tokens).unwrap_or_default()))
    }

    /// How strongly the enrolled subjects other than `sid` claim record
    /// `rid`: `ln Σ w` of their pairs with it ([`crate::policy::record`]).
    fn claim_of_others(&mut self, store: &dyn StoreRead, b: &Batch, rid: u32, sid: u32) -> Result<f64, EngineError> {
        let k = self.record_keys(store, b, rid)?;
        let mut hits = Vec::new();
        self.matcher.probe_roster(&k, &mut hits);
        let policy = &self.settings.policy;
        let w: Vec<f64> =
            hits.iter().filter(|h| h.id != sid).map(|h| policy.log_weight(&features(&h.evidence).1)).collect();
        Ok(crate::policy::record::others(&w, usize::MAX))
    }

    /// Subjects whose decisions weigh a claim of one of these subjects on a
    /// record (the record's other subjects), when the policy weighs the
    /// record's side: a subject that comes, changes or goes changes how
    /// much the others' records are claimed.
    fn claimed_alongside(
        &mut self,
        store: &dyn StoreRead,
        b: &Batch,
        subject_keys: &[Vec<(vigil_proto::KeyKind, IndexKey)>],
    ) -> Result<Vec<u32>, EngineError> {
        let mut out = Vec::new();
        if !self.settings.policy.record_side() {
            return Ok(out);
        }
        let mut records = Vec::new();
        let mut hits = std::mem::take(&mut self.hits);
        for k in subject_keys {
            self.matcher.probe_national(k, &mut hits);
            records.extend(hits.iter().map(|h| h.id));
        }
        records.sort_unstable();
        records.dedup();
        for rid in records {
            let k = match self.record_keys(store, b, rid) {
                Ok(k) => k,
                Err(e) => {
                    self.hits = hits;
                    return Err(e);
                }
            };
            self.matcher.probe_roster(&k, &mut hits);
            out.extend(self.hit_subjects_in(&hits));
        }
        self.hits = hits;
        Ok(out)
    }

    /// Re-decides the cases of one subject. `before` are the records with a
    /// case in force, `confirmed` those that confirm now. A case that still
    /// confirms is amended when its evidence, or its record's details
    /// (`changed[rid]` is true), changed; one that no longer confirms is
    /// retracted; a new confirmed pair is disclosed. A record in `changed`
    /// gives the reason `record_changed`, any other `reason`. `sealed(rid)`
    /// gives the record's current details.
    #[allow(clippy::too_many_arguments)]
    fn redecide(
        &mut self,
        b: &mut Batch,
        sid: u32,
        before: &[u32],
        confirmed: Vec<Confirmed>,
        changed: &HashMap<u32, bool>,
        reason: &str,
        mut sealed: impl FnMut(&Self, u32) -> Result<Option<SealedDetails>, EngineError>,
    ) -> Result<(), EngineError> {
        let version = self.settings.policy.version.clone();
        let why = |rid: u32| if changed.contains_key(&rid) { "record_changed" } else { reason };
        for rid in before {
            if !confirmed.iter().any(|c| c.0 == *rid)
                && let Some(p) = self.registry.pair(sid, *rid)
            {
                self.outbox.retract(b, &p, &version, why(*rid));
            }
        }
        for (rid, ev, a) in confirmed {
            let details_changed = changed.get(&rid).copied().unwrap_or(false);
            let amend = match self.outbox.case(sid, rid) {
                Some(c) if !c.differs(ev.agreeing, a.probability) && !details_changed => continue,
                Some(_) => true,
                None => false,
            };
            let details = forwarded(sealed(self, rid)?, ev.agreeing);
            let Some(p) = self.registry.pair(sid, rid) else { continue };
            if amend {
                self.outbox.amend(b, &p, &ev, &a, details, &version, why(rid));
            } else {
                self.outbox.disclose(b, &p, &ev, &a, details, &version);
            }
        }
        Ok(())
    }

    /// Re-decides every pair of the given subjects: their pairs may score
    /// differently now (a policy change, national records that share their
    /// tokens came or went, or a record of theirs came or changed, which
    /// changes how their other candidates in that source are judged).
    /// `changed` holds the records this batch added or changed (true: with
    /// new details); candidates are counted only for those, so that pairs
    /// found again are not counted twice.
    fn rescore(
        &mut self,
        store: &dyn StoreRead,
        b: &mut Batch,
        mut sids: Vec<u32>,
        reason: &str,
        changed: &HashMap<u32, bool>,
    ) -> Result<(), EngineError> {
        sids.sort_unstable();
        sids.dedup();
        if sids.is_empty() {
            return Ok(());
        }
        // Records of this batch are not in the store yet.
        let pending: HashMap<(String, Ref), Vec<u8>> =
            b.commit.records_put.iter().map(|r| ((r.source.clone(), r.record_ref), r.sealed.clone())).collect();
        let sealed = |e: &Self, rid: u32| -> Result<Option<SealedDetails>, EngineError> {
            let Some((source, rref)) = e.registry.record_info(rid) else { return Ok(None) };
            match pending.get(&(source.to_string(), rref)) {
                Some(bytes) => Ok(decode_sealed(bytes)),
                None => e.sealed_of(store, rid),
            }
        };
        let threads = rescore_threads();
        for part in sids.chunks(RESCORE_CHUNK) {
            let mut work = Vec::with_capacity(part.len());
            for &sid in part {
                let Some((force, pseudonym)) = self.registry.subject_info(sid) else { continue };
                work.push((sid, keys(&store.subject(force, &pseudonym)?.unwrap_or_default())));
            }
            // Probing and assessing read the engine only: on several
            // threads; deciding and disclosing follow, in subject order.
            let assessed = assess_subjects(&self.matcher, &self.registry, &self.settings.policy, &work, threads);
            for ((sid, _), (hits, a)) in work.iter().zip(assessed) {
                let confirmed =
                    self.confirmed_of(b, &hits, a, |rid| changed.contains_key(&rid), Some((*sid, store)))?;
                let before = self.outbox.records_of(*sid);
                self.redecide(b, *sid, &before, confirmed, changed, reason, &sealed)?;
            }
        }
        Ok(())
    }

    /// Subjects the last roster probe found that must be decided again: those
    /// with a case in force, and those whose pair with the probed record
    /// could confirm once the subject's other candidates are weighed
    /// (pair by pair at least [`SUBJECT_FLOOR`]).
    fn hit_subjects(&self) -> Vec<u32> {
        self.hit_subjects_in(&self.hits)
    }

    fn hit_subjects_in(&self, hits: &[Hit]) -> Vec<u32> {
        // The record's side can raise odds up to 1 / unseen_share times more.
        let floor = if self.settings.policy.record_side() { SUBJECT_FLOOR / 40.0 } else { SUBJECT_FLOOR };
        hits.iter()
            .filter(|h| {
                !self.outbox.records_of(h.id).is_empty()
                    || self.settings.policy.assess(&h.evidence).probability >= floor
            })
            .map(|h| h.id)
            .collect()
    }

    /// What training needs, from every enrolled subject: its pairs with
    /// national records, and its pairs with other subjects (chance rates).
    pub fn training_pairs(
        &mut self,
        store: &dyn StoreRead,
    ) -> Result<(crate::policy::train::SubjectChance, crate::policy::train::SubjectPairs), EngineError> {
        let sids = self.registry.subject_ids();
        let mut all: Vec<(u32, Vec<(vigil_proto::KeyKind, IndexKey)>)> = Vec::with_capacity(sids.len());
        for sid in sids {
            let Some((force, pseudonym)) = self.registry.subject_info(sid) else { continue };
            all.push((sid, keys(&store.subject(force, &pseudonym)?.unwrap_or_default())));
        }
        let mut chance = crate::policy::train::SubjectChance::new(
            all.iter().map(|(_, k)| k.iter().map(|(kind, _)| *kind).collect()),
        );
        let mut pairs = crate::policy::train::SubjectPairs::default();
        pairs.set_sources(self.registry.sources());
        let mut hits = std::mem::take(&mut self.hits);
        for (sid, k) in &all {
            pairs.probed();
            self.matcher.probe_national(k, &mut hits);
            let mut by_source: std::collections::BTreeMap<u16, Vec<(u32, Evidence)>> = Default::default();
            for h in &hits {
                by_source
                    .entry(self.registry.record_source(h.id).unwrap_or(u16::MAX))
                    .or_default()
                    .push((h.id, h.evidence));
            }
            for group in by_source.values() {
                pairs.add_group(group.iter().map(|(id, e)| (*id, e)));
            }
            self.matcher.probe_roster(k, &mut hits);
            for h in hits.iter().filter(|h| h.id > *sid) {
                chance.add(&h.evidence);
            }
        }
        self.hits = hits;
        Ok((chance, pairs))
    }

    /// Of `removes`, how many name a subject `force` has enrolled, and how
    /// many it has enrolled.
    pub fn removals(&self, force: &str, removes: &[Ref]) -> (u64, u64) {
        let removing = removes.iter().filter(|r| self.registry.subject(force, r).is_some()).count();
        (removing as u64, self.registry.enrolled(force))
    }

    /// How many of `upserts` are not yet enrolled for `force`.
    pub fn additions(&self, force: &str, upserts: &[SubjectIn]) -> u64 {
        upserts.iter().filter(|u| self.registry.subject(force, &u.pseudonym).is_none()).count() as u64
    }

    /// National records the policy's prior is spread over now.
    pub fn population(&self) -> u32 {
        self.matcher.population()
    }

    /// Applies a force's roster batch.
    pub fn apply_roster(
        &mut self,
        store: &dyn StoreRead,
        force: &str,
        batch: BatchIn<SubjectIn>,
        now_ms: i64,
    ) -> Result<Applied, EngineError> {
        let caller = format!("force/{force}");
        let before = match Self::sequence(store, &caller, batch.sequence, &batch.commitment)? {
            Sequenced::Replay(r) => return Ok(Applied::Replayed(r)),
            Sequenced::Next(before) => before,
        };
        Self::check_unique(batch.upserts.iter().map(|u| u.pseudonym), &batch.removes)?;
        let mut after = self.registry.enrolled(force) as i64;
        for u in &batch.upserts {
            if self.registry.subject(force, &u.pseudonym).is_none() {
                after += 1;
            }
        }
        for r in &batch.removes {
            if self.registry.subject(force, r).is_some() {
                after -= 1;
            }
        }
        let cap = self.settings.roster_cap(force);
        if after as u64 > cap {
            return Err(EngineError::Limit(format!(
                "this batch would enrol {after} subjects, more than the limit of {cap} for force {force}"
            )));
        }
        let version = self.settings.policy.version.clone();
        let mut b = Batch::new(now_ms);
        let mut removes_unknown = 0;
        // Keys of every subject that goes, comes or changes (old and new):
        // where the policy weighs a record's side, the other subjects of
        // their records are decided again at the end.
        let mut moved: Vec<Vec<(vigil_proto::KeyKind, IndexKey)>> = Vec::new();
        let record_side = self.settings.policy.record_side();
        for r in &batch.removes {
            let Some(sid) = self.registry.subject(force, r) else {
                removes_unknown += 1;
                continue;
            };
            for rid in self.outbox.records_of(sid) {
                if let Some(p) = self.registry.pair(sid, rid) {
                    self.outbox.retract(&mut b, &p, &version, "subject_left");
                }
            }
            let old = keys(&store.subject(force, r)?.unwrap_or_default());
            self.matcher.remove_subject(sid, &old);
            self.registry.remove_subject(force, r);
            b.commit.subjects_del.push((force.to_string(), *r));
            if record_side {
                moved.push(old);
            }
        }
        let moving = self.settings.previous_epoch.is_some();
        // Every upsert is in the index before any is decided, so that each
        // is weighed against the others' claims on its records.
        let mut decide: Vec<(u32, Vec<(vigil_proto::KeyKind, IndexKey)>)> = Vec::new();
        for mut u in batch.upserts {
            let sid = match self.registry.subject(force, &u.pseudonym) {
                Some(sid) => {
                    let old = store.subject(force, &u.pseudonym)?.unwrap_or_default();
                    let old_keys = keys(&old);
                    self.matcher.remove_subject(sid, &old_keys);
                    if record_side {
                        moved.push(old_keys);
                    }
                    u.tokens = merged(&old, u.tokens, batch.epoch, moving);
                    sid
                }
                None => self.registry.add_subject(force, u.pseudonym),
            };
            let k = keys(&u.tokens);
            self.matcher.add_subject(sid, &k);
            if record_side {
                moved.push(k.clone());
            }
            decide.push((sid, k));
            b.commit.subjects_put.push(SubjectRow {
                force: force.to_string(),
                pseudonym: u.pseudonym,
                tokens: u.tokens,
            });
        }
        for (sid, k) in &decide {
            let confirmed = self.confirmed_subject(&mut b, k, |_| true, Some((*sid, store)))?;
            let before = self.outbox.records_of(*sid);
            self.redecide(&mut b, *sid, &before, confirmed, &HashMap::new(), "subject_changed", |e, rid| {
                e.sealed_of(store, rid)
            })?;
        }
        let mut others = self.claimed_alongside(store, &b, &moved)?;
        let decided: std::collections::HashSet<u32> = decide.iter().map(|(sid, _)| *sid).collect();
        others.retain(|sid| !decided.contains(sid));
        self.rescore(store, &mut b, others, "scores_changed", &HashMap::new())?;
        let enrolled = self.registry.enrolled(force);
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
        self.complete(b, head, (caller, before), batch.sequence, batch.commitment, counts)
    }

    /// Applies a source's national batch.
    pub fn apply_national(
        &mut self,
        store: &dyn StoreRead,
        source: &str,
        batch: BatchIn<RecordIn>,
        now_ms: i64,
    ) -> Result<Applied, EngineError> {
        let caller = format!("source/{source}");
        let before = match Self::sequence(store, &caller, batch.sequence, &batch.commitment)? {
            Sequenced::Replay(r) => return Ok(Applied::Replayed(r)),
            Sequenced::Next(before) => before,
        };
        Self::check_unique(batch.upserts.iter().map(|u| u.record_ref), &batch.removes)?;
        let version = self.settings.policy.version.clone();
        let mut b = Batch::new(now_ms);
        let mut removes_unknown = 0;
        let mut unchanged = 0u64;
        // Subjects whose other pairs may score differently once this batch's
        // records are in: a record that comes makes the tokens it shares more
        // common (cases in force may weaken); one that goes or changes makes
        // them rarer (any pair may strengthen).
        let mut touched: Vec<u32> = Vec::new();
        let mut changed: HashMap<u32, bool> = HashMap::new();
        for r in &batch.removes {
            let Some(rid) = self.registry.record(source, r) else {
                removes_unknown += 1;
                continue;
            };
            for sid in self.outbox.subjects_of(rid) {
                if let Some(p) = self.registry.pair(sid, rid) {
                    self.outbox.retract(&mut b, &p, &version, "record_withdrawn");
                }
            }
            let old = keys(&store.record(source, r)?.map(|x| x.tokens).unwrap_or_default());
            let mut hits = std::mem::take(&mut self.hits);
            self.matcher.probe_roster(&old, &mut hits);
            touched.extend(hits.iter().map(|h| h.id));
            self.hits = hits;
            self.matcher.remove_record(rid, &old);
            self.registry.remove_record(source, r);
            b.commit.records_del.push((source.to_string(), *r));
        }
        let removes = batch.removes.len() as u64 - removes_unknown;
        let moving = self.settings.previous_epoch.is_some();
        for mut u in batch.upserts {
            let (rid, details_changed) = match self.registry.record(source, &u.record_ref) {
                Some(rid) => {
                    let old = store.record(source, &u.record_ref)?;
                    if let Some(o) = &old {
                        u.tokens = merged(&o.tokens, u.tokens, batch.epoch, moving);
                    }
                    // The same tokens and the same sealed box (sealing is
                    // deterministic): a re-sent, unchanged record. Nothing to do.
                    if old.as_ref().is_some_and(|o| o.tokens == u.tokens && o.sealed == u.sealed) {
                        unchanged += 1;
                        continue;
                    }
                    let details_changed = old.as_ref().is_none_or(|o| o.sealed != u.sealed);
                    let old = keys(&old.map(|x| x.tokens).unwrap_or_default());
                    let mut hits = std::mem::take(&mut self.hits);
                    self.matcher.probe_roster(&old, &mut hits);
                    touched.extend(hits.iter().map(|h| h.id));
                    self.hits = hits;
                    self.matcher.remove_record(rid, &old);
                    (rid, details_changed)
                }
                None => (self.registry.add_record(source, u.record_ref), false),
            };
            let k = keys(&u.tokens);
            self.matcher.add_record(rid, &k);
            // Every subject this record could matter to is decided again at
            // the end of the batch, with all its candidates together: those
            // it hits, and those with a case on it that it may no longer hit.
            let mut hits = std::mem::take(&mut self.hits);
            self.matcher.probe_roster(&k, &mut hits);
            self.hits = hits;
            touched.extend(self.hit_subjects());
            touched.extend(self.outbox.subjects_of(rid));
            changed.insert(rid, details_changed);
            b.commit.records_put.push(RecordRow {
                source: source.to_string(),
                record_ref: u.record_ref,
                tokens: u.tokens,
                sealed: u.sealed,
            });
        }
        let population = self.matcher.population();
        if f64::from(population) > f64::from(self.decided_at) * GROWTH {
            touched.extend(self.outbox.subjects_with_cases());
            self.decided_at = population;
        }
        self.rescore(store, &mut b, touched, "scores_changed", &changed)?;
        let held = self.registry.held(source);
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
        self.complete(b, head, (caller, before), batch.sequence, batch.commitment, counts)
    }

    fn complete(
        &mut self,
        b: Batch,
        head: Entry,
        (caller, before): (String, Option<SenderState>),
        sequence: u64,
        commitment: String,
        counts: Counts,
    ) -> Result<Applied, EngineError> {
        // A force may learn where its roster batch sits in the log; a source
        // may not: the gap to its next batch's index would count the
        // disclosures its batch caused.
        let log_index = if matches!(head, Entry::RosterBatch { .. }) { self.log.size() } else { 0 };
        let forces = b.forces();
        let (mut commit, leaves) = self.log.close(b, vec![head])?;
        let receipt = BatchReceipt {
            sequence,
            replayed: false,
            upserts: counts.upserts,
            removes: counts.removes,
            removes_unknown: counts.removes_unknown,
            total: counts.total,
            log_index,
        };
        // The batch before this one stays answerable to a retry.
        if let Some(mut before) = before {
            before.caller = Self::previous_of(&caller);
            commit.batches.push(before);
        }
        commit.batches.push(SenderState { caller, sequence, commitment, receipt: receipt.encode_to_vec() });
        commit.meta.push((load::INDEX_TOKENS.into(), load::index_tokens_value(&self.matcher)));
        Ok(Applied::Fresh { receipt, commit, leaves, forces })
    }

    /// A pre-employment check: applicants are matched against national
    /// tokens and forgotten. Only the log entry (counts) is committed.
    pub fn check(
        &mut self,
        store: &dyn StoreRead,
        force: &str,
        meta: CheckMeta,
        applicants: Vec<ApplicantIn>,
        now_ms: i64,
    ) -> Result<Checked, EngineError> {
        let mut b = Batch::new(now_ms);
        let mut matches = Vec::new();
        for a in &applicants {
            let k = keys(&a.tokens);
            for (rid, ev, found) in self.confirmed_subject(&mut b, &k, |_| false, None)? {
                let Some((source, rref)) = self.registry.record_info(rid) else { continue };
                matches.push(CheckMatch {
                    applicant: a.applicant.clone().into(),
                    source: source.to_string(),
                    record_ref: rref.to_vec().into(),
                    agreeing: ev.agreeing.iter().map(|k| k as i32).collect(),
                    sealed: forwarded(self.sealed_of(store, rid)?, ev.agreeing),
                    probability: found.probability,
                    fields: found.fields(),
                });
            }
        }
        // Candidates are not counted for a check, neither in the answer nor
        // in the log entry (which goes back to the force with the answer):
        // that count would answer "does national data hold someone like
        // this applicant".
        b.candidates = 0;
        let head = Entry::Check {
            time: b.time.clone(),
            force: force.to_string(),
            request_id: meta.request_id,
            purpose: meta.purpose,
            applicants: applicants.len() as u64,
            confirmed: matches.len() as u64,
            candidates: None,
            commitment: meta.commitment,
            policy_version: self.settings.policy.version.clone(),
        };
        let entry = head.to_bytes();
        let log_index = self.log.size();
        let (commit, leaves) = self.log.close(b, vec![head])?;
        Ok(Checked { matches, log_index, entry, audit: None, commit, leaves })
    }
}

#[cfg(test)]
pub(crate) mod tests;
