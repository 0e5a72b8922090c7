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
    {
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
            for (seq, msg) in page {
                let d = Disclosure::decode(msg.as_slice())
                    .map_err(|_| {
                        CoreError::Engine(crate::engine::EngineError::Integrity("corrupt stored disclosure".into()))
                    })
                    .and_then(|d| core.with_proof(d));
                let failed = d.is_err();
                if tx.send(d).await.is_err() || failed {
                    return;
                }
                metrics::delivered();
                after = seq;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
