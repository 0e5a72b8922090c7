//! Delivery to a force's subscription: every disclosure, amendment and
//! retraction the force has not acknowledged, oldest first, then new ones
//! as batches commit. Reads run off the async executor; the stream ends on
//! shutdown, when the subscriber goes away, or on the first error.

use prost::Message;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use vigil_proto::v1::Disclosure;

use crate::core::{Core, CoreError};
use crate::metrics;

/// How many messages are read from the store at a time.
const PAGE: usize = 256;

/// Starts delivering to `force`; the returned stream ends as described in
/// the module docs.
pub fn subscribe(core: Arc<Core>, force: String) -> ReceiverStream<Result<Disclosure, CoreError>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut changed = core.changes();
        let mut shutdown = core.shutdown();
        let mut after = 0u64;
        loop {
            changed.borrow_and_update();
            let (store, f) = (core.store().clone(), force.clone());
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
    });
    ReceiverStream::new(rx)
}
