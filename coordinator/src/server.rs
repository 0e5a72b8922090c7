//! Serving: mutual TLS through the coordinator's own acceptor ([`crate::tls`]:
//! TLS 1.3, rustls with the ring provider, every refused handshake logged;
//! there is no plaintext mode), the Vigil services, gRPC health and
//! reflection, and a graceful shutdown that ends subscription streams so
//! connections close.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Server;
use tonic_health::ServingStatus;
use vigil_proto::v1::{
    audit_service_server::AuditServiceServer, check_service_server::CheckServiceServer,
    disclosure_service_server::DisclosureServiceServer, feed_service_server::FeedServiceServer,
    roster_service_server::RosterServiceServer,
};

use crate::config::Config;
use crate::core::{Core, Turn};
use crate::engine::Settings;
use crate::pepper::Pepper;
use crate::policy::Policy;
use crate::service::{AuditService, CheckService, DisclosureService, FeedService, RosterService, Rpc};
use crate::store::Store;
use crate::store::redb::RedbStore;

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Bad configuration or key material (exit code 64).
    #[error("configuration: {0}")]
    Config(String),
    /// The store or its contents failed (exit code 1).
    #[error("{0}")]
    State(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(String),
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| ServeError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Reads the audit signing key file (a C2SP signer key, `PRIVATE+KEY+...`).
pub fn read_signing_key(path: &Path) -> Result<String, ServeError> {
    let text = String::from_utf8(read(path, "audit signing key")?)
        .map_err(|_| ServeError::Config(format!("{} is not text", path.display())))?;
    let key = text.lines().map(str::trim).find(|l| l.starts_with("PRIVATE+KEY+")).unwrap_or("").to_string();
    vigil_proto::tlog::Signer::from_skey(&key)
        .map_err(|e| ServeError::Config(format!("{}: not a signer key ({e})", path.display())))?;
    Ok(key)
}

/// Everything the server needs, loaded and checked.
pub struct Prepared {
    config: Config,
    core: Arc<Core>,
    rpc: Arc<Rpc>,
    stop: watch::Sender<bool>,
}

/// The engine's settings and the audit signing key, from a configuration.
fn settings_of(config: &Config) -> Result<(Settings, String), ServeError> {
    let signer_key = read_signing_key(&config.keys.audit_signing_key)?;
    let signer = vigil_proto::tlog::Signer::from_skey(&signer_key).map_err(|e| ServeError::Config(e.to_string()))?;
    if signer.name() != config.audit.origin {
        return Err(ServeError::Config(format!(
            "the audit signing key is named {:?} but audit.origin is {:?}; they must be the same",
            signer.name(),
            config.audit.origin
        )));
    }
    let (policy, policy_text) =
        Policy::read(config.matching.policy.as_deref()).map_err(|e| ServeError::Config(e.to_string()))?;
    let sha = ring::digest::digest(&ring::digest::SHA256, policy_text.as_bytes());
    let settings = Settings {
        epoch: config.matching.epoch,
        previous_epoch: config.matching.previous_epoch,
        scheme: config.matching.scheme,
        policy,
        policy_sha256: vigil_proto::hex::encode(sha.as_ref()),
        origin: config.audit.origin.clone(),
        max_roster_size: config.limits.max_roster_size,
        headcount: config.headcount.clone(),
        index_capacity: (config.capacity.national_tokens, config.capacity.roster_tokens),
        national_records: config.matching.national_records,
    };
    Ok((settings, signer_key))
}

/// How often the lease is checked (or, on a standby, tried), and a core
/// that could not be rebuilt from its store tries again.
const LEASE_INTERVAL: Duration = Duration::from_secs(1);

/// The name this coordinator takes the store's lease under: host, listen
/// address and process id (shown to operators; never personal data).
fn holder_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} {} pid {}", config.listen, std::process::id())
}

/// Opens the store `[store]` names: the embedded file in `data_dir`, or the
/// PostgreSQL database (whose schema must be this binary's).
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    match config.store.backend.as_str() {
        "postgres" => Ok(Arc::new(
            crate::store::postgres::PgStore::open(&config.store.postgres())
                .map_err(|e| ServeError::State(e.to_string()))?,
        )),
        _ => Ok(Arc::new(RedbStore::open(&config.data_dir).map_err(|e| ServeError::State(e.to_string()))?)),
    }
}

/// Loads keys, policy and store, and rebuilds the engine.
pub fn prepare(config: Config) -> Result<Prepared, ServeError> {
    let pepper =
        vigil_common::secrets::read_secret(&config.keys.pepper).map_err(|e| ServeError::Config(e.to_string()))?;
    let (settings, signer_key) = settings_of(&config)?;
    let started = std::time::Instant::now();
    let store = open_store(&config)?;
    tracing::info!(backend = %config.store.backend, secs = started.elapsed().as_secs_f64(), "store opened");
    let (stop, stop_rx) = watch::channel(false);
    let core = Core::open(store, settings, signer_key, stop_rx, &holder_name(&config))
        .map_err(|e| ServeError::State(e.to_string()))?;
    let witnesses = config
        .audit
        .witnesses
        .iter()
        .map(|w| {
            vigil_proto::tlog::cosignature::WitnessKey::from_vkey(&w.vkey)
                .map(|k| (w.code.clone(), k))
                .map_err(|e| ServeError::Config(format!("witness {}: {e}", w.code)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let witnessing = crate::witness::Witnessing::new(
        witnesses,
        i64::try_from(config.audit.witness_round_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let rpc =
        Rpc::new(core.clone(), Pepper::new(pepper), config.limits.clone(), config.trust_domain.clone(), witnessing);
    Ok(Prepared { config, core, rpc, stop })
}

/// Trains the policy in force on what the store holds (the coordinator must
/// be stopped: the store has one user at a time) and returns it, named
/// `version`. Nothing is written to the store.
pub fn calibrate(config: &Config, version: &str) -> Result<Policy, ServeError> {
    let (settings, signer_key) = settings_of(config)?;
    let start = settings.policy.clone();
    let signer = vigil_proto::tlog::Signer::from_skey(&signer_key).map_err(|e| ServeError::Config(e.to_string()))?;
    let store = open_store(config)?;
    let (mut engine, _, _) =
        crate::engine::Engine::load(store.as_ref(), settings, signer, vigil_common::clock::now_ms())
            .map_err(|e| ServeError::State(e.to_string()))?;
    let (chance, pairs) = engine.training_pairs(store.as_ref()).map_err(|e| ServeError::State(e.to_string()))?;
    if pairs.subjects() == 0 || pairs.is_empty() {
        return Err(ServeError::State(
            "nothing to train on: no enrolled subject agrees with any national record yet".into(),
        ));
    }
    Ok(crate::policy::train::train(&start, &chance, &pairs, u64::from(engine.population()), version))
}

/// Serves until `shutdown` completes, then ends streams and waits (at most
/// `grace`) for connections to close.
pub async fn serve(
    p: Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    let c = &p.config;
    let core = p.core.clone();
    let tls = vigil_common::tls::server_config(&c.tls.cert, &c.tls.key, &c.tls.client_ca, c.tls.crl.as_deref())
        .map_err(|e| ServeError::Config(e.0))?;
    let (tls_tx, tls_rx) = watch::channel(tls);
    let open = Arc::new(vigil_common::tls::Open::default());
    let crl_reloader = c.tls.crl.clone().map(|crl| {
        vigil_common::tls::reload_crl(
            (c.tls.cert.clone(), c.tls.key.clone(), c.tls.client_ca.clone(), crl),
            Duration::from_secs(c.tls.crl_reload_seconds.max(1)),
            tls_tx,
            open.clone(),
        )
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    let max = c.limits.max_message_bytes;
    let roster = RosterServiceServer::new(RosterService(p.rpc.clone())).max_decoding_message_size(max);
    let feed = FeedServiceServer::new(FeedService(p.rpc.clone())).max_decoding_message_size(max);
    let disclosure = DisclosureServiceServer::new(DisclosureService(p.rpc.clone())).max_decoding_message_size(max);
    let check = CheckServiceServer::new(CheckService(p.rpc.clone())).max_decoding_message_size(max);
    let audit = AuditServiceServer::new(AuditService(p.rpc.clone())).max_decoding_message_size(max);
    health.set_serving::<RosterServiceServer<RosterService>>().await;
    health.set_serving::<FeedServiceServer<FeedService>>().await;
    health.set_serving::<DisclosureServiceServer<DisclosureService>>().await;
    health.set_serving::<CheckServiceServer<CheckService>>().await;
    health.set_serving::<AuditServiceServer<AuditService>>().await;
    let standby = core.is_standby();
    let first = if standby {
        Turn::Standby
    } else if core.is_broken() {
        Turn::Broken
    } else {
        Turn::Serving
    };
    let status = if first == Turn::Serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    health.set_service_status("", status).await;
    open.set_accepting(!standby);
    crate::metrics::set_active(!standby);
    let (reflection, reflection_v1alpha) =
        crate::reflection::services(&[vigil_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET])
            .map_err(|e| ServeError::State(format!("reflection descriptors: {e}")))?;

    // The optional plaintext health-only listener, for probes.
    if let Some(h) = &c.health {
        let l = TcpListener::bind(h.listen)
            .await
            .map_err(|e| ServeError::Config(format!("cannot listen on {} for health: {e}", h.listen)))?;
        let hs = health_service.clone();
        let mut stop_rx = p.stop.subscribe();
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(hs)
                .serve_with_incoming_shutdown(TcpListenerStream::new(l), async move {
                    let _ = stop_rx.changed().await;
                })
                .await;
        });
        tracing::info!(addr = %h.listen, "serving health checks (plaintext, health only)");
    }
    // Every second, the lease: a standby (no connections taken, health
    // NOT_SERVING) tries to take over; the active coordinator checks it
    // still holds the lease and steps down if not (ending its
    // connections, so that nodes move to the new active one). While the
    // store cannot be read (the database unreachable), or the engine could
    // not be rebuilt from it, health says NOT_SERVING; a broken engine is
    // rebuilt once the store answers again.
    let recovery = {
        let (core, health, open, rpc) = (core.clone(), health.clone(), open.clone(), p.rpc.clone());
        let mut stop_rx = p.stop.subscribe();
        tokio::spawn(async move {
            let mut last = first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_INTERVAL) => {}
                    _ = stop_rx.changed() => return,
                }
                let c = core.clone();
                let turn = tokio::task::spawn_blocking(move || c.lease_turn()).await.unwrap_or(Turn::Broken);
                if turn == last {
                    continue;
                }
                if last == Turn::Standby {
                    // Took over: the log grew under another coordinator.
                    rpc.restore_quotas();
                    open.set_accepting(true);
                }
                match turn {
                    Turn::Serving if last == Turn::Standby => tracing::info!("active: serving"),
                    Turn::Serving => tracing::info!("the store answers again: serving"),
                    Turn::Broken => tracing::warn!("the store cannot be read: health NOT_SERVING until it can"),
                    Turn::Standby => {
                        let ended = open.set_accepting(false);
                        tracing::warn!(connections_ended = ended, "standby: taking no connections");
                    }
                }
                crate::metrics::set_active(turn != Turn::Standby);
                let status = if turn == Turn::Serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                health.set_service_status("", status).await;
                last = turn;
            }
        })
    };
    let stop = p.stop;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: ending streams and closing connections");
        health.set_service_status("", ServingStatus::NotServing).await;
        let _ = stop.send(true);
        let _ = done_tx.send(());
    };
    let (connections, acceptor) = vigil_common::tls::accept(listener, tls_rx, c.limits.max_connections, open);
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(c.limits.max_streams_per_connection))
        .timeout(Duration::from_secs(c.limits.request_timeout_seconds))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(roster)
        .add_service(feed)
        .add_service(disclosure)
        .add_service(check)
        .add_service(audit)
        .serve_with_incoming_shutdown(ReceiverStream::new(connections), signal);
    tokio::pin!(server);
    let flusher = spawn_flusher(core.clone());
    let refresher =
        spawn_checkpoint_refresher(core.clone(), Duration::from_secs(c.audit.checkpoint_refresh_seconds.max(1)));
    let publisher = spawn_periodic(
        core.clone(),
        Duration::from_millis(c.audit.publish_interval_ms),
        "publishing the log",
        Core::publish_staged,
    );
    let result = tokio::select! {
        r = &mut server => r.map_err(|e| ServeError::Transport(e.to_string())),
        _ = async { let _ = done_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "connections did not close within the grace period; stopping anyway");
            Ok(())
        }
    };
    flusher.abort();
    refresher.abort();
    publisher.abort();
    recovery.abort();
    acceptor.abort();
    if let Some(r) = crl_reloader {
        r.abort();
    }
    if let Err(e) = core.flush() {
        tracing::warn!(error = %e, "acknowledgements not written at shutdown: they will be delivered again");
    }
    core.release();
    result
}

/// Runs `job` on a blocking thread every `every` (the first at once), and
/// logs a failure as `what` without stopping.
fn spawn_periodic<E: std::fmt::Display + Send + 'static>(
    core: Arc<Core>,
    every: Duration,
    what: &'static str,
    job: fn(&Core) -> Result<(), E>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let c = core.clone();
            match tokio::task::spawn_blocking(move || job(&c)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "{what}: task failed"),
            }
        }
    })
}

/// Signs a fresh checkpoint every `every` (the first at start), so that the
/// latest checkpoint is never older than that even when nothing happens.
fn spawn_checkpoint_refresher(core: Arc<Core>, every: Duration) -> tokio::task::JoinHandle<()> {
    spawn_periodic(core, every, "signing a fresh checkpoint", Core::refresh_checkpoint)
}

/// Acknowledgements are committed without an fsync; this puts them on disk
/// within about a second even when nothing else is written (a no-op when
/// nothing is pending).
fn spawn_flusher(core: Arc<Core>) -> tokio::task::JoinHandle<()> {
    spawn_periodic(core, Duration::from_secs(1), "writing acknowledgements to disk", Core::flush)
}
