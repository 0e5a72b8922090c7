//! The core's commits in flight, end to end over an in-memory store whose
//! national commits wait at a gate the test opens.

use super::*;
use crate::engine::{BatchIn, RecordIn, SubjectIn};
use crate::store::memory::MemoryStore;
use crate::store::{ActiveRow, Commit, RecordRow, Ref, SenderState, StoredToken, SubjectRow};
use std::sync::mpsc;
use vigil_proto::KeyKind;

/// A memory store whose commits of national batches each wait for the
/// test's word: `true` writes it, `false` fails it; and whose next
/// `failing_loads` reads of the subjects fail, as a database whose
/// connection is cut while a coordinator loads it.
struct Gated {
    inner: MemoryStore,
    gate: Mutex<mpsc::Receiver<bool>>,
    failing_loads: std::sync::atomic::AtomicUsize,
}

impl Gated {
    fn new(gate: mpsc::Receiver<bool>) -> Gated {
        Gated { inner: MemoryStore::new(), gate: Mutex::new(gate), failing_loads: Default::default() }
    }
}

impl StoreRead for Gated {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        let fail = |n: usize| n.checked_sub(1);
        if self.failing_loads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, fail).is_ok() {
            return Err(StoreError("terminating connection due to administrator command".into()));
        }
        self.inner.for_each_subject(f)
    }
    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        self.inner.for_each_record(f)
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
        self.inner.subject(force, pseudonym)
    }
    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        self.inner.record(source, record_ref)
    }
    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.last_sequences()
    }
}

impl Store for Gated {
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        if c.batches.iter().any(|b| b.caller.starts_with("source/")) {
            let open = self.gate.lock().unwrap().recv().unwrap_or(false);
            if !open {
                return Err(StoreError("disk full".into()));
            }
        }
        self.inner.commit(c)
    }
    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.log_entries(start, end)
    }
    fn pending(&self, force: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.pending(force, after, limit)
    }
    fn acknowledge(&self, force: &str, seqs: &[u64]) -> Result<u64, StoreError> {
        self.inner.acknowledge(force, seqs)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn pending_count(&self, force: &str) -> Result<u64, StoreError> {
        self.inner.pending_count(force)
    }
}

fn tokens(n: u8) -> Vec<StoredToken> {
    vec![(KeyKind::Nino, [n; 16]), (KeyKind::NameDob, [n + 100; 16])]
}

/// Roster batch 1: subjects 1 to 4 of force `gmp`.
fn roster() -> BatchIn<SubjectIn> {
    BatchIn {
        epoch: 1,
        sequence: 1,
        commitment: "r".into(),
        upserts: (1..=4u8).map(|i| SubjectIn { pseudonym: [i; 16], tokens: tokens(i) }).collect(),
        removes: vec![],
    }
}

/// National batch `sequence` with one record, `record`, agreeing with
/// subject `record` of force `gmp`.
fn national(sequence: u64, record: u8) -> BatchIn<RecordIn> {
    BatchIn {
        epoch: 1,
        sequence,
        commitment: format!("n{sequence}"),
        upserts: vec![RecordIn { record_ref: [record; 16], tokens: tokens(record), sealed: vec![] }],
        removes: vec![],
    }
}

/// Applies national batch `sequence` on a thread of its own; the returned
/// channel fires once it is applied in memory with its commit in order.
fn send(
    core: &Arc<Core>,
    sequence: u64,
) -> (std::thread::JoinHandle<Result<BatchReceipt, CoreError>>, mpsc::Receiver<()>) {
    let (applied_tx, applied) = mpsc::channel();
    let core = core.clone();
    let h = std::thread::spawn(move || {
        core.apply_then(
            |e, s| e.apply_national(s, "pnc", national(sequence, sequence as u8), 2),
            move || {
                let _ = applied_tx.send(());
            },
        )
    });
    (h, applied)
}

fn national_tokens(core: &Core) -> (usize, u64) {
    core.status("source/pnc", |e| e.token_counts().0 as u64).map(|(t, seq)| (t as usize, seq)).unwrap()
}

/// A batch applies while the commit of the one before is written; when
/// that commit fails, the batch applied on top of it is refused unwritten,
/// the engine goes back to the store, and both sent again apply.
#[test]
fn the_next_batch_applies_while_a_commit_is_written_and_a_failed_commit_takes_its_successor_with_it() {
    let (gate, rx) = mpsc::channel();
    let store = Arc::new(Gated::new(rx));
    let (_, skey) = vigil_proto::tlog::Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let core = Core::open(store, crate::engine::tests::settings(), skey, stop_rx, "test").unwrap();
    let roster = roster();
    core.apply(|e, s| e.apply_roster(s, "gmp", roster, 1)).unwrap();

    // Batch 1's commit waits at the gate while batch 2 applies on top of it
    // (it reads batch 1 as its predecessor from the commit in flight).
    let (one, one_applied) = send(&core, 1);
    one_applied.recv().unwrap();
    let (two, two_applied) = send(&core, 2);
    two_applied.recv().unwrap();
    assert_eq!(core.staged.lock().unwrap().disclosures, 0, "nothing is staged before its commit");
    gate.send(true).unwrap();
    gate.send(true).unwrap();
    let (r1, r2) = (one.join().unwrap().unwrap(), two.join().unwrap().unwrap());
    assert_eq!((r1.sequence, r2.sequence, r2.total), (1, 2, 2));
    assert_eq!(core.staged.lock().unwrap().disclosures, 2, "both disclosures staged, after their commits");
    assert_eq!(national_tokens(&core), (4, 2));

    // Batch 3's commit fails while batch 4 is applied on top of it.
    let (three, three_applied) = send(&core, 3);
    three_applied.recv().unwrap();
    let (four, four_applied) = send(&core, 4);
    four_applied.recv().unwrap();
    gate.send(false).unwrap();
    assert!(three.join().unwrap().is_err());
    let refused = four.join().unwrap().unwrap_err().to_string();
    assert!(refused.contains("earlier batch's commit failed"), "{refused}");
    assert_eq!(national_tokens(&core), (4, 2), "the engine holds what the store holds");

    // Sent again, both apply (batch 4's gate word was never taken).
    gate.send(true).unwrap();
    gate.send(true).unwrap();
    let (three, _) = send(&core, 3);
    assert_eq!(three.join().unwrap().unwrap().sequence, 3);
    let (four, _) = send(&core, 4);
    assert_eq!(four.join().unwrap().unwrap().total, 4);
    assert_eq!(national_tokens(&core), (8, 4));
    // The rebuild took what was staged into its view; these two follow.
    assert_eq!(core.staged.lock().unwrap().disclosures, 2);
}

/// A store that fails while the coordinator loads it at start (the
/// database connection cut mid-load) leaves the core broken, refusing
/// requests, instead of ending the start; the next turn of the lease loads
/// it, and everything enrolled before is there.
#[test]
fn a_store_that_fails_while_loaded_at_start_is_loaded_again_on_the_next_turn() {
    let (_gate, rx) = mpsc::channel();
    let store = Arc::new(Gated::new(rx));
    let (_, skey) = vigil_proto::tlog::Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let open =
        |skey: &str| Core::open(store.clone(), crate::engine::tests::settings(), skey.into(), stop_rx.clone(), "test");
    let first = open(&skey).unwrap();
    let roster = roster();
    first.apply(|e, s| e.apply_roster(s, "gmp", roster, 1)).unwrap();
    first.release();
    drop(first);

    store.failing_loads.store(1, Ordering::SeqCst);
    let core = open(&skey).unwrap();
    assert!(core.is_broken());
    assert!(matches!(core.status("force/gmp", |e| e.token_counts().1 as u64), Err(CoreError::Broken)));
    assert_eq!(core.lease_turn(), Turn::Serving);
    assert!(!core.is_broken());
    assert_eq!(core.status("force/gmp", |e| e.token_counts().1 as u64).unwrap(), (8, 1));
}
