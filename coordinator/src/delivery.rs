//! Delivery to a force's subscription: every disclosure, amendment and
//! retraction the force has not acknowledged, oldest first, then new ones
//! as batches commit. Reads run off the async executor; the stream ends on
//! shutdown, when the subscriber goes away, on the first error, or when
//! another subscription for the same force starts: one live subscription
//! per force ([`Subscriptions`]), so that a copied certificate cannot
//! quietly take a share of the force's disclosures.

use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use vigil_proto::v1::Disclosure;

use crate::core::{Core, CoreError};
use crate::metrics;

/// How many messages are read from the store at a time.
const PAGE: usize = 256;

/// The live subscription of each force: the newest one wins, and the one
/// it replaces ends with [`CoreError::Superseded`].
#[derive(Default)]
pub struct Subscriptions {
    live: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Subscriptions {
    /// Registers a subscription for `force`, ending the one before it.
    /// Returns its number, a receiver that fires when a newer one starts,
    /// and whether one was replaced.
    fn start(&self, force: &str) -> (u64, oneshot::Receiver<()>, bool) {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let old = self.live.lock().map(|mut m| m.insert(force.to_string(), (n, tx))).unwrap_or(None);
        let replaced = old.map(|(_, end)| end.send(())).is_some();
        (n, rx, replaced)
    }

    /// Forgets subscription `n` of `force` if it is still the live one.
    fn end(&self, force: &str, n: u64) {
        if let Ok(mut m) = self.live.lock()
            && m.get(force).is_some_and(|(live, _)| *live == n)
        {
            m.remove(force);
        }
    }
}

/// Starts delivering to `force`; the returned stream ends as described in
/// the module docs.
pub fn subscribe(
    core: Arc<Core>,
    subscriptions: Arc<Subscriptions>,
    force: String,
) -> ReceiverStream<Result<Disclosure, CoreError>> {
    let (tx, rx) = mpsc::channel(64);
    let (n, mut superseded, replaced) = subscriptions.start(&force);
    if replaced {
        metrics::subscription_replaced();
        tracing::warn!(
            force = %force,
            "a second subscription for this force started; the earlier one is ended (one watch per force: \
             if the force runs only one, its certificate may be in other hands)"
        );
    }
    tokio::spawn(async move {
        deliver(&core, &force, &tx, &mut superseded).await;
        subscriptions.end(&force, n);
    });
    ReceiverStream::new(rx)
}

async fn deliver(
    core: &Arc<Core>,
    force: &str,
    tx: &mpsc::Sender<Result<Disclosure, CoreError>>,
    superseded: &mut oneshot::Receiver<()>,
) {
    let mut changed = core.changes();
    let mut shutdown = core.shutdown();
    let mut after = 0u64;
    // The sender is gone without a word only if the registry could not
    // hold it (a poisoned lock): deliver on, unguarded.
    let mut unguarded = false;
    loop {
        if !unguarded && superseded.try_recv().is_ok() {
            let _ = tx.send(Err(CoreError::Superseded)).await;
            return;
        }
        changed.borrow_and_update();
        let (store, f) = (core.store().clone(), force.to_string());
        let page = match tokio::task::spawn_blocking(move || store.pending(&f, after, PAGE)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
            Err(_) => return,
        };
        if page.is_empty() {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                r = &mut *superseded, if !unguarded => {
                    if r.is_ok() {
                        let _ = tx.send(Err(CoreError::Superseded)).await;
                        return;
                    }
                    unguarded = true;
                }
            }
            continue;
        }
        // A disclosure committed a moment before its batch's log entries
        // are published has no proof yet: wait for the publication
        // (which notifies `changed`) rather than fail the stream.
        let mut unpublished = false;
        for (seq, msg) in page {
            let d = Disclosure::decode(msg.as_slice())
                .map_err(|_| {
                    CoreError::Engine(crate::engine::EngineError::Integrity("corrupt stored disclosure".into()))
                })
                .and_then(|d| core.with_proof(d));
            if matches!(d, Err(CoreError::NotPublished)) {
                unpublished = true;
                break;
            }
            let failed = d.is_err();
            if tx.send(d).await.is_err() || failed {
                return;
            }
            metrics::delivered();
            after = seq;
        }
        if unpublished {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
            continue;
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BatchIn, RecordIn, Settings, SubjectIn};
    use crate::store::memory::MemoryStore;
    use crate::store::*;
    use std::sync::mpsc as std_mpsc;
    use tokio_stream::StreamExt;
    use vigil_proto::KeyKind;

    /// A real in-memory store whose commits can be held just after they
    /// are applied: the moment between a batch's commit and its
    /// publication, made long.
    struct Held {
        inner: MemoryStore,
        hold: Mutex<Option<(std_mpsc::Sender<()>, std_mpsc::Receiver<()>)>>,
    }

    impl StoreRead for Held {
        fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
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

    impl Store for Held {
        fn commit(&self, c: &Commit) -> Result<(), StoreError> {
            self.inner.commit(c)?;
            if let Some((committed, release)) = self.hold.lock().unwrap().take() {
                committed.send(()).unwrap();
                release.recv().unwrap();
            }
            Ok(())
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

    fn tokens() -> Vec<StoredToken> {
        vec![(KeyKind::Nino, [1; 16]), (KeyKind::NameDob, [2; 16]), (KeyKind::NameMd, [3; 16])]
    }

    /// A subscriber that reads a disclosure committed but not yet published
    /// waits for the publication instead of ending with an error.
    #[test]
    fn a_disclosure_not_yet_published_is_delivered_once_it_is() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = Arc::new(Held { inner: MemoryStore::new(), hold: Mutex::new(None) });
        let settings = Settings {
            epoch: 1,
            policy: crate::policy::Policy::default_policy(),
            policy_sha256: "p".into(),
            origin: "vigil.test/audit".into(),
            max_roster_size: 10,
            headcount: Default::default(),
            index_capacity: (0, 0),
            national_records: 0,
        };
        let (_, skey) = vigil_proto::tlog::Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap();
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let core = Core::open(store.clone(), settings, skey, stop_rx).unwrap();
        let roster = BatchIn {
            sequence: 1,
            commitment: "r".into(),
            upserts: vec![SubjectIn { pseudonym: [9; 16], tokens: tokens() }],
            removes: vec![],
        };
        core.apply(|e, s| e.apply_roster(s, "gmp", roster, 1)).unwrap();
        // Hold the national batch's commit before its publication.
        let (committed_tx, committed) = std_mpsc::channel();
        let (release, release_rx) = std_mpsc::channel();
        *store.hold.lock().unwrap() = Some((committed_tx, release_rx));
        let feeder = std::thread::spawn({
            let core = core.clone();
            move || {
                let national = BatchIn {
                    sequence: 1,
                    commitment: "n".into(),
                    upserts: vec![RecordIn { record_ref: [7; 16], tokens: tokens(), sealed: vec![] }],
                    removes: vec![],
                };
                core.apply(|e, s| e.apply_national(s, "pnc", national, 2)).unwrap();
            }
        });
        committed.recv().unwrap();
        rt.block_on(async {
            let mut stream = subscribe(core.clone(), Arc::new(Subscriptions::default()), "gmp".into());
            // Committed, not published: nothing yet, and no error.
            let early = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
            assert!(early.is_err(), "the stream must wait, not answer: {:?}", early.map(|m| m.map(|r| r.is_ok())));
            release.send(()).unwrap();
            let d = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
                .await
                .expect("delivered once published")
                .expect("a message")
                .expect("not an error");
            assert!(d.audit.is_some_and(|a| !a.checkpoint.is_empty()), "delivered with its proof");
        });
        feeder.join().unwrap();
    }
}
