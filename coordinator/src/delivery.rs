//! Delivery to a force's subscription: every disclosure, amendment and
//! retraction the force has not acknowledged, oldest first, then new ones
//! as publications bring them (a publication for other forces only wakes
//! the task, it does not read the store). Reads run off the async
//! executor; the stream ends on shutdown, when the subscriber goes away, on
//! the first error, or when another subscription for the same force starts:
//! one live subscription per force ([`Subscriptions`]), so that a copied
//! certificate cannot quietly take a share of the force's disclosures.

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
    let mut active = core.active();
    let mut after = 0u64;
    // The sender is gone without a word only if the registry could not
    // hold it (a poisoned lock): deliver on, unguarded.
    let mut unguarded = false;
    loop {
        if !unguarded && superseded.try_recv().is_ok() {
            let _ = tx.send(Err(CoreError::Superseded)).await;
            return;
        }
        // Where this force stood before the read: a publication for it
        // after this point moves the mark, and the wait below sees it.
        let mark = changed.borrow_and_update().mark(force);
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
                ok = moved(&mut changed, force, mark) => if !ok { return },
                _ = shutdown.changed() => return,
                _ = async { let _ = active.wait_for(|a| !*a).await; } => {
                    let _ = tx.send(Err(CoreError::Standby)).await;
                    return;
                }
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
                ok = moved(&mut changed, force, mark) => if !ok { return },
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

/// Waits until `force`'s mark moves from `mark`; `false` if the core is
/// gone.
async fn moved(
    changed: &mut tokio::sync::watch::Receiver<crate::core::Changes>,
    force: &str,
    mark: (u64, u64),
) -> bool {
    changed.wait_for(|c| c.mark(force) != mark).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BatchIn, RecordIn, SubjectIn};
    use crate::store::memory::MemoryStore;
    use crate::store::*;
    use tokio_stream::StreamExt;
    use vigil_proto::KeyKind;

    fn tokens() -> Vec<StoredToken> {
        vec![(KeyKind::Nino, [1; 16]), (KeyKind::NameDob, [2; 16]), (KeyKind::NameMd, [3; 16])]
    }

    /// A core over an in-memory store, with one subject of force `gmp`
    /// enrolled and published.
    fn core_with_subject() -> (Arc<Core>, tokio::sync::watch::Sender<bool>) {
        let (_, skey) = vigil_proto::tlog::Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let core =
            Core::open(Arc::new(MemoryStore::new()), crate::engine::tests::settings(), skey, stop_rx, "test").unwrap();
        let roster = BatchIn {
            epoch: 1,
            sequence: 1,
            commitment: "r".into(),
            upserts: vec![SubjectIn { pseudonym: [9; 16], tokens: tokens() }],
            removes: vec![],
        };
        core.apply(|e, s| e.apply_roster(s, "gmp", roster, 1)).unwrap();
        core.publish_staged().unwrap();
        (core, stop)
    }

    fn national(sequence: u64, record: u8) -> BatchIn<RecordIn> {
        BatchIn {
            epoch: 1,
            sequence,
            commitment: format!("n{sequence}"),
            upserts: vec![RecordIn { record_ref: [record; 16], tokens: tokens(), sealed: vec![] }],
            removes: vec![],
        }
    }

    /// A subscriber that reads a disclosure committed but not yet published
    /// waits for the publication instead of ending with an error.
    #[test]
    fn a_disclosure_not_yet_published_is_delivered_once_it_is() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (core, _stop) = core_with_subject();
        core.apply(|e, s| e.apply_national(s, "pnc", national(1, 7), 2)).unwrap();
        rt.block_on(async {
            let mut stream = subscribe(core.clone(), Arc::new(Subscriptions::default()), "gmp".into());
            // Committed, not published: nothing yet, and no error.
            let early = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
            assert!(early.is_err(), "the stream must wait, not answer: {:?}", early.map(|m| m.map(|r| r.is_ok())));
            core.publish_staged().unwrap();
            let d = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
                .await
                .expect("delivered once published")
                .expect("a message")
                .expect("not an error");
            assert!(d.audit.is_some_and(|a| !a.checkpoint.is_empty()), "delivered with its proof");
        });
    }

    /// A publication moves the mark of the forces it brings something to,
    /// and only theirs: other forces' subscriptions do not read the store.
    #[test]
    fn a_publication_moves_only_its_forces_marks() {
        let (core, _stop) = core_with_subject();
        let changes = core.changes();
        let (gmp, wmp) = (changes.borrow().mark("gmp"), changes.borrow().mark("wmp"));
        core.apply(|e, s| e.apply_national(s, "pnc", national(1, 7), 2)).unwrap();
        assert_eq!(changes.borrow().mark("gmp"), gmp, "nothing moves before the publication");
        core.publish_staged().unwrap();
        assert_ne!(changes.borrow().mark("gmp"), gmp, "gmp has a disclosure");
        assert_eq!(changes.borrow().mark("wmp"), wmp, "wmp has nothing new");
    }

    /// Checkpoints go out on the publisher's schedule, not per batch: two
    /// batches committed between two publications appear together, under
    /// one checkpoint, so a reader cannot tell which entries each caused.
    #[test]
    fn batches_between_publications_appear_under_one_checkpoint() {
        let (core, _stop) = core_with_subject();
        let (size0, cp0) = core.view(|v| (v.tree.size(), v.checkpoint.clone())).unwrap();
        core.apply(|e, s| e.apply_national(s, "pnc", national(1, 7), 2)).unwrap();
        core.apply(|e, s| e.apply_national(s, "pnc", national(2, 8), 3)).unwrap();
        let (size1, cp1) = core.view(|v| (v.tree.size(), v.checkpoint.clone())).unwrap();
        assert_eq!((size1, &cp1), (size0, &cp0), "nothing is published between ticks");
        core.publish_staged().unwrap();
        let (size2, cp2) = core.view(|v| (v.tree.size(), v.checkpoint.clone())).unwrap();
        let v = vigil_proto::tlog::Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap().0.verifier();
        let cp = vigil_proto::tlog::Checkpoint::open(&cp2, "vigil.test/audit", &v).unwrap();
        // Two batch entries, two disclosures (one per record).
        assert_eq!(size2, size0 + 4, "both batches' entries appear at once");
        assert_eq!(cp.size, size2, "under one checkpoint covering both");
        assert_eq!(core.view(|v| v.tree.root(size2)).unwrap(), Some(cp.root));
    }
}
