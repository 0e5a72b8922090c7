//! A store held in memory, for tests and tools: the same contract as the
//! embedded store ([`super::redb::RedbStore`]) except durability, which it
//! does not have. A commit is applied whole or not at all (it is checked
//! before anything changes).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{ActiveRow, Commit, RecordRow, Ref, SenderState, Store, StoreError, StoreRead, StoredToken, SubjectRow};

#[derive(Default)]
struct State {
    subjects: BTreeMap<(String, Ref), Vec<StoredToken>>,
    records: BTreeMap<(String, Ref), (Vec<StoredToken>, Vec<u8>)>,
    senders: BTreeMap<String, SenderState>,
    disclosures: BTreeMap<(String, u64), Vec<u8>>,
    pending: BTreeMap<(String, u64), ()>,
    active: BTreeMap<(String, Ref, String, Ref), ActiveRow>,
    log: Vec<Vec<u8>>,
    checkpoints: BTreeMap<u64, String>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore(Mutex<State>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.0.lock().map_err(|_| StoreError("memory store lock poisoned".into()))
    }
}

impl StoreRead for MemoryStore {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        let rows: Vec<SubjectRow> = self
            .state()?
            .subjects
            .iter()
            .map(|((force, pseudonym), tokens)| SubjectRow {
                force: force.clone(),
                pseudonym: *pseudonym,
                tokens: tokens.clone(),
            })
            .collect();
        rows.into_iter().for_each(f);
        Ok(())
    }

    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        let rows: Vec<RecordRow> = self
            .state()?
            .records
            .iter()
            .map(|((source, record_ref), (tokens, _))| RecordRow {
                source: source.clone(),
                record_ref: *record_ref,
                tokens: tokens.clone(),
                sealed: Vec::new(),
            })
            .collect();
        rows.into_iter().for_each(f);
        Ok(())
    }

    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError> {
        let rows: Vec<ActiveRow> = self.state()?.active.values().cloned().collect();
        rows.into_iter().for_each(f);
        Ok(())
    }

    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        let log = self.state()?.log.clone();
        for (i, e) in log.iter().enumerate() {
            f(i as u64, e);
        }
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.state()?.checkpoints.iter().next_back().map(|(k, v)| (*k, v.clone())))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state()?.meta.get(key).cloned())
    }

    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError> {
        Ok(self.state()?.senders.get(caller).cloned())
    }

    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError> {
        Ok(self.state()?.subjects.get(&(force.to_string(), *pseudonym)).cloned())
    }

    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        Ok(self.state()?.records.get(&(source.to_string(), *record_ref)).map(|(tokens, sealed)| RecordRow {
            source: source.to_string(),
            record_ref: *record_ref,
            tokens: tokens.clone(),
            sealed: sealed.clone(),
        }))
    }

    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for (force, seq) in self.state()?.disclosures.keys() {
            let e = out.entry(force.clone()).or_default();
            *e = (*e).max(*seq);
        }
        Ok(out.into_iter().collect())
    }
}

impl Store for MemoryStore {
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut s = self.state()?;
        let size = s.log.len() as u64;
        for (i, (index, _)) in c.log.iter().enumerate() {
            if *index != size + i as u64 {
                return Err(StoreError(format!("log entry {index} does not follow the log's size {size}")));
            }
        }
        if c.shred_parity.is_some() {
            s.subjects.retain(|_, t| {
                *t = super::surviving(t, c.shred_parity);
                !t.is_empty()
            });
            s.records.retain(|_, (t, _)| {
                *t = super::surviving(t, c.shred_parity);
                !t.is_empty()
            });
        }
        for (force, p) in &c.subjects_del {
            s.subjects.remove(&(force.clone(), *p));
        }
        for row in &c.subjects_put {
            s.subjects.insert((row.force.clone(), row.pseudonym), row.tokens.clone());
        }
        for (source, r) in &c.records_del {
            s.records.remove(&(source.clone(), *r));
        }
        for row in &c.records_put {
            s.records.insert((row.source.clone(), row.record_ref), (row.tokens.clone(), row.sealed.clone()));
        }
        for b in &c.batches {
            s.senders.insert(b.caller.clone(), b.clone());
        }
        for row in &c.disclosures {
            s.disclosures.insert((row.force.clone(), row.seq), row.message.clone());
            s.pending.insert((row.force.clone(), row.seq), ());
        }
        for (f, p, src, r) in &c.active_del {
            s.active.remove(&(f.clone(), *p, src.clone(), *r));
        }
        for row in &c.active_put {
            s.active.insert((row.force.clone(), row.pseudonym, row.source.clone(), row.record_ref), row.clone());
        }
        for (_, entry) in &c.log {
            s.log.push(entry.clone());
        }
        if let Some((size, note)) = &c.checkpoint {
            s.checkpoints.insert(*size, note.clone());
        }
        for (k, v) in &c.meta {
            s.meta.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let s = self.state()?;
        let end = (end as usize).min(s.log.len());
        Ok(s.log.get(start as usize..end).map(<[Vec<u8>]>::to_vec).unwrap_or_default())
    }

    fn pending(&self, force: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let s = self.state()?;
        let from = (force.to_string(), after.saturating_add(1));
        let to = (force.to_string(), u64::MAX);
        Ok(s.pending
            .range(from..=to)
            .take(limit)
            .filter_map(|((f, q), ())| s.disclosures.get(&(f.clone(), *q)).map(|m| (*q, m.clone())))
            .collect())
    }

    fn acknowledge(&self, force: &str, seqs: &[u64]) -> Result<u64, StoreError> {
        let mut s = self.state()?;
        Ok(seqs.iter().filter(|q| s.pending.remove(&(force.to_string(), **q)).is_some()).count() as u64)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn pending_count(&self, force: &str) -> Result<u64, StoreError> {
        let s = self.state()?;
        Ok(s.pending.range((force.to_string(), 0)..=(force.to_string(), u64::MAX)).count() as u64)
    }
}
