//! Commits in flight: a batch's commit goes to the store while the next
//! batch applies in memory.
//!
//! The engine applies batches one at a time under its lock, and each
//! batch's commit used to be written and synced under that lock too, so
//! the next batch waited for the disk. Now a batch, once applied, takes a
//! *ticket* (under the engine lock, so tickets follow apply order), lets the
//! lock go, and commits when its ticket comes up: commits reach the store
//! in apply order, one at a time, while the next batch applies.
//!
//! What stays as it was:
//! - a batch's answer (its receipt) is sent only once its own commit is
//!   durable, and its log entries are staged for publication right after
//!   it, in commit order, so nothing is delivered or published before it
//!   is on disk;
//! - a batch applying while earlier commits are in flight reads the store
//!   as those commits will leave it ([`InFlight::reads`], [`Overlay`]);
//! - when a commit fails, every later commit in flight is refused without
//!   being written (each was applied on top of the failed one), and the
//!   engine is rebuilt from the store before it is used again
//!   ([`InFlight::failed_and_drained`]), so memory never stays ahead of
//!   disk.
//!
//! At most [`DEPTH`] commits are in flight: a batch that would be one more
//! waits before it applies.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::store::{ActiveRow, Commit, RecordRow, Ref, SenderState, StoreError, StoreRead, StoredToken, SubjectRow};

/// Most commits in flight at once (a node keeps two batches in flight).
pub const DEPTH: usize = 2;

/// A commit waiting for its turn, indexed for the reads of later batches.
pub struct Pending {
    ticket: u64,
    commit: Commit,
    /// Subject → its row in `subjects_put`, or `None` when removed.
    subjects: HashMap<(String, Ref), Option<usize>>,
    /// Record → its row in `records_put`, or `None` when removed.
    records: HashMap<(String, Ref), Option<usize>>,
    /// Sender → its row in `batches`.
    senders: HashMap<String, usize>,
}

impl Pending {
    fn new(ticket: u64, commit: Commit) -> Pending {
        let mut subjects = HashMap::new();
        for (force, p) in &commit.subjects_del {
            subjects.insert((force.clone(), *p), None);
        }
        for (i, s) in commit.subjects_put.iter().enumerate() {
            subjects.insert((s.force.clone(), s.pseudonym), Some(i));
        }
        let mut records = HashMap::new();
        for (source, r) in &commit.records_del {
            records.insert((source.clone(), *r), None);
        }
        for (i, r) in commit.records_put.iter().enumerate() {
            records.insert((r.source.clone(), r.record_ref), Some(i));
        }
        let senders = commit.batches.iter().enumerate().map(|(i, b)| (b.caller.clone(), i)).collect();
        Pending { ticket, commit, subjects, records, senders }
    }
}

/// A batch's place in the commit order.
pub struct Ticket(Arc<Pending>);

#[derive(Default)]
struct State {
    /// Tickets issued so far, and the next one to commit.
    issued: u64,
    next: u64,
    /// Issued and not yet done, oldest first.
    pending: Vec<Arc<Pending>>,
    /// A commit failed, and the engine has not been rebuilt since.
    failed: bool,
}

/// The commits in flight.
#[derive(Default)]
pub struct InFlight {
    state: Mutex<State>,
    moved: Condvar,
}

/// Why a commit in flight was not written.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An earlier commit in flight failed, and this batch was applied on
    /// top of it.
    #[error("an earlier batch's commit failed, so this batch was not committed either; send it again")]
    Earlier,
}

impl From<CommitError> for StoreError {
    fn from(e: CommitError) -> StoreError {
        match e {
            CommitError::Store(e) => e,
            CommitError::Earlier => StoreError(CommitError::Earlier.to_string()),
        }
    }
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while `DEPTH` commits are in flight, then returns the reads a
    /// batch applying now needs: the commits in flight, oldest first. When
    /// one of them shreds an epoch's tokens (rare), waits for all of them
    /// instead, so that the batch reads the store itself. Call it under the
    /// engine lock.
    pub fn reads(&self) -> Vec<Arc<Pending>> {
        let mut s = self.lock();
        while s.pending.len() >= DEPTH || s.pending.iter().any(|p| p.commit.shred_parity.is_some()) {
            s = self.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.pending.clone()
    }

    /// Gives `commit` the next place in the commit order. Call it under the
    /// engine lock, right after the batch applied.
    pub fn issue(&self, commit: Commit) -> Ticket {
        let mut s = self.lock();
        let p = Arc::new(Pending::new(s.issued, commit));
        s.issued += 1;
        s.pending.push(p.clone());
        Ticket(p)
    }

    /// Waits for the ticket's turn and runs `write` (the commit and what
    /// must follow it in commit order), unless an earlier commit failed.
    /// A failure of `write` refuses every later ticket until
    /// [`InFlight::failed_and_drained`] has been called. So does a panic in
    /// `write`, which then goes on unwinding in the caller: the turn passes
    /// on, and later tickets are refused rather than left waiting for ever.
    pub fn commit(
        &self,
        ticket: Ticket,
        write: impl FnOnce(&Commit) -> Result<(), StoreError>,
    ) -> Result<(), CommitError> {
        let mut s = self.lock();
        while s.next != ticket.0.ticket {
            s = self.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        let mut panicked = None;
        let result = if s.failed {
            Err(CommitError::Earlier)
        } else {
            // The lock is not held while writing: reads and new tickets go on.
            drop(s);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&ticket.0.commit)));
            s = self.lock();
            let r = match r {
                Ok(r) => r.map_err(CommitError::from),
                Err(p) => {
                    panicked = Some(p);
                    Err(CommitError::Store(StoreError("the commit panicked".into())))
                }
            };
            if r.is_err() {
                s.failed = true;
            }
            r
        };
        s.next += 1;
        s.pending.retain(|p| !Arc::ptr_eq(p, &ticket.0));
        drop(s);
        self.moved.notify_all();
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        result
    }

    /// Waits until every commit issued is done. Returns whether one failed
    /// since the last call; the caller, holding the engine lock, must then
    /// rebuild the engine from the store.
    pub fn failed_and_drained(&self) -> bool {
        let mut s = self.lock();
        while s.next != s.issued {
            s = self.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut s.failed)
    }

    /// Whether a commit failed and the engine has not been rebuilt since.
    pub fn failed(&self) -> bool {
        self.lock().failed
    }
}

/// The store as the commits in flight will leave it: what a batch applying
/// while they are written reads. Point reads look in the commits in flight
/// first, newest first; the full scans (only loading uses them) read the
/// store.
pub struct Overlay<'a> {
    store: &'a dyn StoreRead,
    pending: &'a [Arc<Pending>],
}

impl<'a> Overlay<'a> {
    /// `store` with `pending` (oldest first) written over it.
    pub fn new(store: &'a dyn StoreRead, pending: &'a [Arc<Pending>]) -> Overlay<'a> {
        Overlay { store, pending }
    }
}

impl StoreRead for Overlay<'_> {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        self.store.for_each_subject(f)
    }
    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        self.store.for_each_record(f)
    }
    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError> {
        self.store.for_each_active(f)
    }
    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        self.store.for_each_log_entry(f)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        for p in self.pending.iter().rev() {
            if let Some(c) = &p.commit.checkpoint {
                return Ok(Some(c.clone()));
            }
        }
        self.store.latest_checkpoint()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        for p in self.pending.iter().rev() {
            if let Some((_, v)) = p.commit.meta.iter().rev().find(|(k, _)| k == key) {
                return Ok(Some(v.clone()));
            }
        }
        self.store.meta(key)
    }
    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError> {
        for p in self.pending.iter().rev() {
            if let Some(i) = p.senders.get(caller) {
                return Ok(Some(p.commit.batches[*i].clone()));
            }
        }
        self.store.sender(caller)
    }
    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError> {
        let k = (force.to_string(), *pseudonym);
        for p in self.pending.iter().rev() {
            if let Some(row) = p.subjects.get(&k) {
                return Ok(row.map(|i| p.commit.subjects_put[i].tokens.clone()));
            }
        }
        self.store.subject(force, pseudonym)
    }
    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        let k = (source.to_string(), *record_ref);
        for p in self.pending.iter().rev() {
            if let Some(row) = p.records.get(&k) {
                return Ok(row.map(|i| p.commit.records_put[i].clone()));
            }
        }
        self.store.record(source, record_ref)
    }
    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: std::collections::BTreeMap<String, u64> = self.store.last_sequences()?.into_iter().collect();
        for p in self.pending {
            for d in &p.commit.disclosures {
                let e = out.entry(d.force.clone()).or_default();
                *e = (*e).max(d.seq);
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Store, SubjectRow};

    fn subject(force: &str, p: u8) -> SubjectRow {
        SubjectRow { force: force.into(), pseudonym: [p; 16], tokens: Vec::new() }
    }

    fn commit_of(put: &[u8], del: &[u8]) -> Commit {
        Commit {
            subjects_put: put.iter().map(|p| subject("gmp", *p)).collect(),
            subjects_del: del.iter().map(|p| ("gmp".to_string(), [*p; 16])).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_see_the_commits_in_flight_newest_first() {
        let store = MemoryStore::default();
        store.commit(&commit_of(&[1, 2], &[])).unwrap();
        let f = InFlight::default();
        let _a = f.issue(commit_of(&[3], &[1]));
        let _b = f.issue(commit_of(&[1], &[3]));
        let pending = {
            let s = f.lock();
            s.pending.clone()
        };
        let o = Overlay::new(&store, &pending);
        assert!(o.subject("gmp", &[1; 16]).unwrap().is_some(), "removed, then put back");
        assert!(o.subject("gmp", &[2; 16]).unwrap().is_some(), "from the store");
        assert!(o.subject("gmp", &[3; 16]).unwrap().is_none(), "put, then removed");
        assert!(o.subject("gmp", &[4; 16]).unwrap().is_none());
    }

    #[test]
    fn a_commit_that_panics_passes_its_turn_on_and_refuses_the_later_ones() {
        let f = Arc::new(InFlight::default());
        let (a, b) = (f.issue(commit_of(&[1], &[])), f.issue(commit_of(&[2], &[])));
        let later = {
            let f = f.clone();
            std::thread::spawn(move || f.commit(b, |_| Ok(())))
        };
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.commit(a, |_| panic!("store bug"))));
        assert!(first.is_err(), "the panic goes on to the caller");
        assert!(matches!(later.join().unwrap(), Err(CommitError::Earlier)), "not left waiting");
        assert!(f.failed_and_drained(), "the engine is rebuilt before it is used again");
    }

    #[test]
    fn commits_go_in_ticket_order_and_a_failure_refuses_the_later_ones() {
        let f = Arc::new(InFlight::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<Ticket> = (0..3).map(|i| f.issue(commit_of(&[i], &[]))).collect();
        // Committed from three threads, the last first.
        let handles: Vec<_> = tickets
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, t)| {
                let (f, order) = (f.clone(), order.clone());
                std::thread::spawn(move || {
                    f.commit(t, |_| {
                        order.lock().unwrap().push(i);
                        if i == 1 { Err(StoreError("disk full".into())) } else { Ok(()) }
                    })
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Results come back last first: ticket 2, 1, 0.
        assert!(results[2].is_ok());
        assert!(matches!(results[1], Err(CommitError::Store(_))));
        assert!(matches!(results[0], Err(CommitError::Earlier)));
        assert_eq!(*order.lock().unwrap(), vec![0, 1], "ticket 2 was never written");
        assert!(f.failed());
        assert!(f.failed_and_drained(), "the failure is reported once");
        assert!(!f.failed_and_drained());
        // After the rebuild, commits go again.
        let t = f.issue(commit_of(&[9], &[]));
        assert!(f.commit(t, |_| Ok(())).is_ok());
    }
}
