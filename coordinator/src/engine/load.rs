//! Rebuilding the engine from the store: at start-up, and after a failed
//! commit. The tree is checked against the latest signed checkpoint, and a
//! policy or epoch change is logged.
//!
//! Epochs: while `previous_epoch` is configured, items hold tokens of two
//! epochs (told apart by their parity, `crate::pepper::parity`). Once it is
//! no longer configured, the first start drops every token of the other
//! parity (crypto-shredding, in the same commit as the log entry that says
//! so), deletes the subjects and records left with none (their party never
//! re-sent them), and decides every pair again.

use vigil_proto::audit::Entry;
use vigil_proto::tlog::Signer;

use super::log::{AuditLog, LogView};
use super::outbox::{Batch, Case, Outbox};
use super::registry::Registry;
use super::types::{EngineError, Settings};
use super::{Engine, keys};
use crate::matcher::Matcher;
use crate::store::{
    ActiveRow, Commit, RecordRow, Ref, SenderState, StoreError, StoreRead, StoredToken, SubjectRow, surviving,
};

/// The store as it will be once the tokens of parity `drop` are shredded:
/// what re-deciding every pair at an epoch's end reads.
struct Shredded<'a> {
    inner: &'a dyn StoreRead,
    drop: Option<u32>,
}

impl StoreRead for Shredded<'_> {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        self.inner.for_each_subject(&mut |r| f(SubjectRow { tokens: surviving(&r.tokens, self.drop), ..r }))
    }
    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        self.inner.for_each_record(&mut |r| f(RecordRow { tokens: surviving(&r.tokens, self.drop), ..r }))
    }
    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError> {
        self.inner.for_each_active(f)
    }
    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        self.inner.for_each_log_entry(f)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(key)
    }
    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError> {
        self.inner.sender(caller)
    }
    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError> {
        Ok(self.inner.subject(force, pseudonym)?.map(|t| surviving(&t, self.drop)))
    }
    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        Ok(self.inner.record(source, record_ref)?.map(|r| RecordRow { tokens: surviving(&r.tokens, self.drop), ..r }))
    }
    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.last_sequences()
    }
}

/// A national record as loaded: its id and index keys.
type LoadedRecord = (u32, Vec<(vigil_proto::KeyKind, crate::index::IndexKey)>);

/// Records handed from the reading thread to the indexing one at a time.
const LOAD_CHUNK: usize = 4096;

/// The store's record of how many tokens the indexes held after the last
/// batch: national, then roster (two big-endian u64).
pub(super) const INDEX_TOKENS: &str = "index_tokens";

pub(super) fn index_tokens_value(m: &Matcher) -> Vec<u8> {
    let mut v = (m.national_tokens() as u64).to_be_bytes().to_vec();
    v.extend_from_slice(&(m.roster_tokens() as u64).to_be_bytes());
    v
}

/// What to size the indexes for at start: `[capacity]` when configured,
/// else what the store held after its last batch, with a tenth more for
/// growth (so the first load after a restart does not grow them), capped
/// at 2^31 each.
fn capacity(configured: (usize, usize), stored: Option<Vec<u8>>) -> (usize, usize) {
    if configured != (0, 0) {
        return configured;
    }
    let Some(b) = stored.filter(|b| b.len() == 16) else { return configured };
    let read = |r: &[u8]| u64::from_be_bytes(r.try_into().unwrap_or([0; 8]));
    let grow = |n: u64| (n + n / 10).min(1 << 31) as usize;
    (grow(read(&b[..8])), grow(read(&b[8..])))
}

fn epoch_of(v: Option<Vec<u8>>) -> Option<u32> {
    v.and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok()).map(u32::from_be_bytes)
}

impl Engine {
    /// An engine holding nothing, with small indexes: what a standby
    /// coordinator keeps until it takes over (and then loads the store).
    pub fn idle(settings: Settings, signer: Signer) -> Engine {
        Engine {
            matcher: Matcher::with_capacity(0, 0),
            registry: Registry::default(),
            outbox: Outbox::default(),
            log: AuditLog::new(signer, settings.origin.clone()),
            hits: Vec::new(),
            space: Default::default(),
            decided_at: 0,
            settings,
        }
    }

    /// Rebuilds the engine from the store, checks the log against its latest
    /// checkpoint, and appends policy and epoch entries if they changed.
    /// Returns the engine, the published log view, and a commit to apply
    /// before serving (empty when nothing changed).
    pub fn load(
        store: &dyn StoreRead,
        settings: Settings,
        signer: Signer,
        now_ms: i64,
    ) -> Result<(Engine, LogView, Commit), EngineError> {
        let started = std::time::Instant::now();
        let (national_tokens, roster_tokens) = capacity(settings.index_capacity, store.meta(INDEX_TOKENS)?);
        let log = AuditLog::new(signer, settings.origin.clone());
        let mut matcher = Matcher::with_capacity(national_tokens, roster_tokens);
        matcher.set_records_floor(settings.national_records);
        let mut e = Engine {
            matcher,
            registry: Registry::default(),
            outbox: Outbox::default(),
            log,
            hits: Vec::new(),
            space: Default::default(),
            decided_at: 0,
            settings,
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
            && vkey != e.log.vkey().as_bytes()
        {
            return Err(EngineError::Integrity("the audit signing key is not the one this log was signed with".into()));
        }
        // Epochs advance one at a time; with no previous epoch configured,
        // tokens of the other parity are shredded if the store may hold any.
        let stored_epoch = epoch_of(store.meta("epoch")?);
        let stored_previous = epoch_of(store.meta("previous_epoch")?);
        let (epoch, previous) = (e.settings.epoch, e.settings.previous_epoch);
        if let Some(s) = stored_epoch
            && s != epoch
            && s + 1 != epoch
        {
            return Err(EngineError::Integrity(format!(
                "this store holds tokens of epoch {s}; epochs advance one at a time (configure epoch {} next, \
                 with previous_epoch = {s} while parties move)",
                s + 1
            )));
        }
        let shred = match previous {
            None if stored_previous.is_some() || stored_epoch.is_some_and(|s| s != epoch) => Some((epoch & 1) ^ 1),
            _ => None,
        };
        let shredded = Shredded { inner: store, drop: shred };
        let mut emptied_subjects: Vec<(String, Ref)> = Vec::new();
        let mut emptied_records: Vec<(String, Ref)> = Vec::new();
        tracing::info!(
            national_tokens,
            roster_tokens,
            secs = started.elapsed().as_secs_f64(),
            "indexes allocated; loading the store: subjects, national records, disclosures in force, the log"
        );
        let started = std::time::Instant::now();
        shredded.for_each_subject(&mut |row: SubjectRow| {
            let id = e.registry.add_subject(&row.force, row.pseudonym);
            if row.tokens.is_empty() {
                emptied_subjects.push((row.force, row.pseudonym));
            } else {
                e.matcher.add_subject(id, &keys(&row.tokens));
            }
        })?;
        tracing::info!(secs = started.elapsed().as_secs_f64(), "subjects loaded and indexed");
        let started = std::time::Instant::now();
        // National records, the bulk of a restart or a takeover: read,
        // unpacked and given ids on this thread while another indexes them.
        let (registry, matcher) = (&mut e.registry, &mut e.matcher);
        std::thread::scope(|sc| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<LoadedRecord>>(4);
            let indexer = sc.spawn(move || {
                for chunk in rx {
                    for (id, keys) in chunk {
                        matcher.add_record(id, &keys);
                    }
                }
            });
            let mut chunk: Vec<LoadedRecord> = Vec::with_capacity(LOAD_CHUNK);
            let mut open = true;
            let read = shredded.for_each_record(&mut |row: RecordRow| {
                if !open {
                    return;
                }
                let id = registry.add_record(&row.source, row.record_ref);
                if row.tokens.is_empty() {
                    emptied_records.push((row.source, row.record_ref));
                    return;
                }
                chunk.push((id, keys(&row.tokens)));
                if chunk.len() == LOAD_CHUNK {
                    open = tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK))).is_ok();
                }
            });
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            drop(tx);
            match indexer.join() {
                Ok(()) if open => read,
                _ => Err(StoreError("the thread indexing national records stopped".into())),
            }
        })?;
        tracing::info!(
            records = e.matcher.records(),
            secs = started.elapsed().as_secs_f64(),
            "national records loaded and indexed"
        );
        let mut err: Option<StoreError> = None;
        store.for_each_active(&mut |row: ActiveRow| match (
            e.registry.subject(&row.force, &row.pseudonym),
            e.registry.record(&row.source, &row.record_ref),
        ) {
            (Some(sid), Some(rid)) => e.outbox.restore(
                sid,
                rid,
                Case {
                    id: row.disclosure_id,
                    version: row.version,
                    agreeing: row.agreeing,
                    probability: row.probability,
                },
            ),
            _ => err = Some(StoreError("a disclosure in force names a missing subject or record".into())),
        })?;
        if let Some(x) = err {
            return Err(x.into());
        }
        for (force, seq) in store.last_sequences()? {
            e.outbox.restore_sequence(&force, seq);
        }
        let started = std::time::Instant::now();
        store.for_each_log_entry(&mut |_, entry| e.log.push_stored(entry))?;
        e.decided_at = e.matcher.population();
        let mut view = e.log.verify(store.latest_checkpoint()?)?;
        tracing::info!(
            entries = view.tree.size(),
            secs = started.elapsed().as_secs_f64(),
            "disclosures in force loaded; the log rebuilt and checked against its checkpoint"
        );
        // Epoch and policy entries when they changed (or on first start). A
        // new policy decides every pair afresh: what it confirms that the
        // last did not is disclosed, what it no longer confirms is retracted
        // and a case whose probability moved is amended, all announced by
        // the policy entry and logged right after it.
        let mut b = Batch::new(now_ms);
        let mut head = Vec::new();
        if shred.is_some() {
            // Every pair decided again on the current epoch's tokens alone;
            // items no party re-sent lose their cases and are deleted.
            let sids = e.registry.subject_ids();
            e.rescore(&shredded, &mut b, sids, "epoch_changed", &Default::default())?;
            for (force, p) in &emptied_subjects {
                e.registry.remove_subject(force, p);
            }
            for (source, r) in &emptied_records {
                e.registry.remove_record(source, r);
            }
            b.commit.shred_parity = shred;
            e.decided_at = e.matcher.population();
        }
        if stored_epoch != Some(epoch) || stored_previous != previous || shred.is_some() {
            head.push(Entry::Epoch {
                time: b.time.clone(),
                epoch,
                previous,
                shredded: shred,
                dropped_subjects: emptied_subjects.len() as u64,
                dropped_records: emptied_records.len() as u64,
                retractions: b.retracted,
            });
            b.commit.meta.push(("epoch".into(), epoch.to_be_bytes().to_vec()));
            b.commit
                .meta
                .push(("previous_epoch".into(), previous.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default()));
        }
        let stored_policy = store.meta("policy_sha256")?;
        if stored_policy.as_deref() != Some(e.settings.policy_sha256.as_bytes()) {
            if stored_policy.is_some() {
                let sids = e.registry.subject_ids();
                e.rescore(&shredded, &mut b, sids, "policy_changed", &Default::default())?;
            }
            head.push(Entry::Policy {
                time: b.time.clone(),
                version: e.settings.policy.version.clone(),
                sha256: e.settings.policy_sha256.clone(),
                disclosures: b.disclosed,
                amendments: b.amended,
                retractions: b.retracted,
            });
            b.commit.meta.push(("policy_sha256".into(), e.settings.policy_sha256.clone().into_bytes()));
        }
        let mut commit = Commit::default();
        if !head.is_empty() || view.checkpoint.is_empty() {
            b.commit.meta.push(("origin".into(), e.settings.origin.clone().into_bytes()));
            b.commit.meta.push(("vkey".into(), e.log.vkey().into_bytes()));
            let (c, leaves) = e.log.close(b, head)?;
            for l in leaves {
                view.tree.push(l);
            }
            view.checkpoint = c.checkpoint.as_ref().map(|(_, n)| n.clone()).unwrap_or_default();
            commit = c;
        }
        Ok((e, view, commit))
    }
}

#[cfg(test)]
mod tests {
    use super::capacity;

    #[test]
    fn indexes_are_sized_from_the_store_unless_configured() {
        let stored = |n: u64, r: u64| Some([n.to_be_bytes(), r.to_be_bytes()].concat());
        assert_eq!(capacity((5, 6), stored(1000, 100)), (5, 6), "[capacity] wins");
        assert_eq!(capacity((0, 0), stored(1000, 100)), (1100, 110));
        assert_eq!(capacity((0, 0), None), (0, 0), "an empty store");
        assert_eq!(capacity((0, 0), Some(vec![1, 2])), (0, 0), "a malformed value is ignored");
        assert_eq!(capacity((0, 0), stored(u64::MAX / 2, 0)).0, 1 << 31);
    }
}
