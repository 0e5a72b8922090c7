//! `vigil-node watch`: the force's long-running subscription.
//!
//! It connects, receives every disclosure the force has not acknowledged,
//! verifies each against the transparency log, stores it durably in the
//! inbox (a redelivered id is stored once), and only then acknowledges it.
//! When the stream breaks it reconnects with exponential backoff and jitter.
//! Delivery is at least once, deduplicated here, and nothing is lost while
//! the node is offline. A split view in the audit log stops it (exit 70).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::disclosure_service_client::DisclosureServiceClient;
use vigil_proto::v1::{AcknowledgeRequest, Disclosure, SubscribeRequest};

use vigil_common::clock::now_ms;

use crate::client::{self, MAX_MESSAGE};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::local::LocalStore;
use crate::verify::{self, LogKey};

/// Disclosures stored in one transaction at most.
const MAX_BURST: usize = 256;

/// Why a stream ended.
enum Ended {
    /// Retry after a pause.
    Transient(String),
    /// Stop watching.
    Fatal(NodeError),
}

async fn stream_once(cfg: &NodeConfig, key: &LogKey, store: &LocalStore, delivered: &mut u64) -> Ended {
    let channel: Channel = match client::connect(cfg).await {
        Ok(c) => c,
        Err(e) => return Ended::Transient(e.message().to_string()),
    };
    let mut disclosures = DisclosureServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut audit = AuditServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut stream = match disclosures.subscribe(SubscribeRequest {}).await {
        Ok(s) => s.into_inner(),
        Err(s) if client::transient(&s) => return Ended::Transient(s.message().to_string()),
        Err(s) => return Ended::Fatal(client::status_error(&s, "subscribe")),
    };
    tracing::info!(force = %cfg.code, "subscribed to disclosures");
    let mut seen = verify::Seen::default();
    // Acknowledgements go out from their own task, batching whatever is
    // queued, so the next disclosure is verified and stored meanwhile. Only
    // stored ids are ever queued, so delivery stays at least once.
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut acker = {
        let mut client = disclosures.clone();
        tokio::spawn(async move {
            let mut acked = 0u64;
            while let Some(first) = ack_rx.recv().await {
                let mut ids = vec![first];
                while let Ok(more) = ack_rx.try_recv() {
                    ids.push(more);
                }
                match client.acknowledge(AcknowledgeRequest { ids }).await {
                    Ok(_) => acked += 1,
                    Err(s) => return Err(s),
                }
            }
            Ok(acked)
        })
    };
    // A burst (a national batch's disclosures for this force) is verified
    // one by one and stored in one transaction with its sequence mark, so
    // the node syncs its disk once for the burst, not twice a disclosure.
    let mut burst: Vec<Disclosure> = Vec::new();
    loop {
        let next = tokio::select! {
            m = stream.message() => m,
            r = &mut acker => {
                return match r {
                    Ok(Err(s)) if !client::transient(&s) => Ended::Fatal(client::status_error(&s, "acknowledge")),
                    Ok(Err(s)) => Ended::Transient(s.message().to_string()),
                    _ => Ended::Transient("acknowledgements stopped".into()),
                };
            }
        };
        burst.clear();
        let mut next = Some(next);
        while let Some(m) = next.take() {
            let d = match m {
                Ok(Some(d)) => d,
                Ok(None) => return Ended::Transient("the coordinator closed the stream".into()),
                Err(s) if client::transient(&s) => {
                    return Ended::Transient(s.message().to_string());
                }
                Err(s) if s.code() == tonic::Code::Aborted => {
                    // Another subscription for this force replaced this one: one
                    // watch per force. Loud, counted, and retried: if a copied
                    // certificate is in use, the sequence check stops whichever
                    // side misses disclosures.
                    metrics::counter!("vigil_node_subscription_replaced_total").increment(1);
                    tracing::error!(reason = %s.message(), "subscription replaced by another for this force");
                    return Ended::Transient(s.message().to_string());
                }
                Err(s) => return Ended::Fatal(client::status_error(&s, "disclosure stream")),
            };
            let pending = burst.iter().map(|b| b.sequence).max();
            if let Err(e) = verify_one(cfg, key, store, &mut audit, &mut seen, &d, pending).await {
                return e;
            }
            burst.push(d);
            if burst.len() < MAX_BURST {
                // Another disclosure already received joins the burst;
                // nothing waits for one that has not arrived.
                next = tokio::time::timeout(Duration::ZERO, stream.message()).await.ok();
            }
        }
        let encoded: Vec<Vec<u8>> = burst.iter().map(prost::Message::encode_to_vec).collect();
        let items: Vec<(&str, &[u8])> =
            burst.iter().zip(&encoded).map(|(d, b)| (d.id.as_str(), b.as_slice())).collect();
        let top = burst.iter().map(|d| d.sequence).max().unwrap_or(0);
        // The burst is stored with the checkpoints it was verified against,
        // on condition that no other process on this node (`audit verify`)
        // kept one meanwhile; if one did, the burst is verified again
        // against it.
        let mut tries = 0;
        let (now, fresh) = loop {
            let now = now_ms();
            let keep = seen.keep();
            match store.store_disclosures(&items, now, Some(verify::sequence_mark(top)), keep.as_ref()) {
                Ok(Some(f)) => {
                    seen.written(true);
                    break (now, f);
                }
                Ok(None) if tries < verify::GUARD_RETRIES => {
                    tries += 1;
                    seen.written(false);
                    tracing::info!("another process kept a newer checkpoint; verifying the burst against it");
                    for (i, d) in burst.iter().enumerate() {
                        let pending = burst[..i].iter().map(|b| b.sequence).max();
                        if let Err(e) = verify_one(cfg, key, store, &mut audit, &mut seen, d, pending).await {
                            return e;
                        }
                    }
                }
                Ok(None) => return Ended::Transient(verify::VerifyError::Busy.to_string()),
                Err(e) => return Ended::Fatal(NodeError::failed(e.to_string())),
            }
        };
        for (d, fresh) in burst.iter().zip(fresh) {
            if fresh {
                let ms = (now - d.created_unix_ms).max(0) as f64;
                metrics::histogram!("vigil_node_delivery_latency_seconds").record(ms / 1000.0);
            }
            metrics::counter!("vigil_node_disclosures_received_total", "new" => if fresh { "yes" } else { "no" })
                .increment(1);
            tracing::info!(id = %d.id, new = fresh, "disclosure stored");
            if ack_tx.send(d.id.clone()).is_err() {
                return Ended::Transient("acknowledgements stopped".into());
            }
            *delivered += 1;
        }
    }
}

/// Verifies one disclosure against the log and the force's delivery
/// sequence; `pending` is the highest sequence verified before it in its
/// burst.
async fn verify_one(
    cfg: &NodeConfig,
    key: &LogKey,
    store: &LocalStore,
    audit: &mut AuditServiceClient<Channel>,
    seen: &mut verify::Seen,
    d: &Disclosure,
    pending: Option<u64>,
) -> Result<(), Ended> {
    if let Err(e) = verify::verify_disclosure(store, key, audit, seen, &cfg.code, d).await {
        if e.is_alarm() {
            tracing::error!(id = %d.id, error = %e, "disclosure refused");
            return Err(Ended::Fatal(e.into()));
        }
        return Err(Ended::Transient(e.to_string()));
    }
    verify::check_sequence(store, &cfg.code, d.sequence, pending).map_err(|e| Ended::Fatal(e.into()))
}

/// Watches until `shutdown` completes or a fatal error.
pub async fn watch(
    cfg: &NodeConfig,
    store: Arc<LocalStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let key = LogKey::load(cfg)?;
    if let Some(a) = verify::alarm(&store).map_err(NodeError::from)? {
        return Err(NodeError::audit(format!(
            "refusing to accept disclosures: an alarm (split view or sequence gap) was recorded earlier ({a}). See docs/operations.md"
        )));
    }
    tokio::pin!(shutdown);
    let initial = Duration::from_millis(cfg.watch.backoff_initial_ms.max(10));
    let max = Duration::from_millis(cfg.watch.backoff_max_ms.max(cfg.watch.backoff_initial_ms));
    let mut delay = initial;
    let mut jitter_seed = now_ms() as u64;
    loop {
        let mut delivered = 0u64;
        let ended = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            e = stream_once(cfg, &key, &store, &mut delivered) => e,
        };
        match ended {
            Ended::Fatal(e) => return Err(e),
            Ended::Transient(why) => {
                if delivered > 0 {
                    delay = initial;
                }
                // xorshift jitter: up to a quarter of the delay
                jitter_seed ^= jitter_seed << 13;
                jitter_seed ^= jitter_seed >> 7;
                jitter_seed ^= jitter_seed << 17;
                let jitter = Duration::from_millis(jitter_seed % (delay.as_millis() as u64 / 4 + 1));
                tracing::warn!(reason = %why, retry_in_ms = (delay + jitter).as_millis() as u64, "disconnected; reconnecting");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(delay + jitter) => {}
                }
                delay = (delay * 2).min(max);
            }
        }
    }
}
