//! Serving the key service over mutual TLS with the coordinator's acceptor
//! (`vigil_common::tls`: TLS 1.3 only, client certificates from `client_ca`
//! required and checked against the revocation list, reloaded without a
//! restart; refused handshakes logged and counted; a connection limit),
//! with the gRPC health service, until SIGTERM or SIGINT.

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use vigil_proto::v1::key_service_server::KeyServiceServer;

use crate::config::Config;
use crate::quota::QuotaStore;
use crate::service::{KeyAudit, Keys};
use vigil_proto::v1::audit_service_server::AuditServiceServer;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the log's signing key (`PRIVATE+KEY+...`).
pub fn read_signing_key(path: &std::path::Path) -> Result<String, ServeError> {
    let text = String::from_utf8(read(path, "log signing key")?)
        .map_err(|_| ServeError::Config(format!("{} is not text", path.display())))?;
    let key = text.lines().map(str::trim).find(|l| l.starts_with("PRIVATE+KEY+")).unwrap_or("").to_string();
    vigil_proto::tlog::Signer::from_skey(&key)
        .map_err(|e| ServeError::Config(format!("{}: not a signer key ({e})", path.display())))?;
    Ok(key)
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration, keys or certificates.
    #[error("{0}")]
    Config(String),
    /// The quota store.
    #[error("{0}")]
    State(String),
    /// The transport.
    #[error("server failed: {0}")]
    Transport(String),
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| ServeError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Serves until `shutdown` completes. Prints `listening on <addr>` on
/// standard output once bound.
pub async fn serve(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
    let seed = zeroize::Zeroizing::new(
        vigil_common::secrets::read_secret(&config.key.seed).map_err(|e| ServeError::Config(e.to_string()))?,
    );
    let signer_key = read_signing_key(&config.audit.signing_key)?;
    let store = Arc::new(QuotaStore::open(&config.data_dir).map_err(|e| ServeError::State(e.to_string()))?);
    let config = Arc::new(config);
    let keys = Arc::new(Keys::new(&seed, signer_key, config.clone(), store).map_err(ServeError::State)?);
    let refresher = {
        let keys = keys.clone();
        let every = std::time::Duration::from_secs(config.audit.checkpoint_refresh_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let k = keys.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || k.refresh()).await {
                    tracing::warn!(error = %e, "signing a fresh checkpoint failed; retrying");
                }
            }
        })
    };
    let t = &config.tls;
    let tls = vigil_common::tls::server_config(&t.cert, &t.key, &t.client_ca, t.crl.as_deref())
        .map_err(|e| ServeError::Config(e.0))?;
    let (tls_tx, tls_rx) = tokio::sync::watch::channel(tls);
    let open = Arc::new(vigil_common::tls::Open::default());
    let _crl_reloader = t.crl.clone().map(|crl| {
        AbortOnDrop(vigil_common::tls::reload_crl(
            (t.cert.clone(), t.key.clone(), t.client_ca.clone(), crl),
            std::time::Duration::from_secs(t.crl_reload_seconds),
            tls_tx,
            open.clone(),
        ))
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| ServeError::Transport(e.to_string()))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<KeyServiceServer<Keys>>().await;
    vigil_common::outln!("listening on {addr}");
    tracing::info!(%addr, epoch = config.key.epoch, "key service serving (mutual TLS)");
    let (started, stopping) = tokio::sync::oneshot::channel::<()>();
    let (connections, acceptor) = vigil_common::tls::accept(listener, tls_rx, t.max_connections, open);
    let _acceptor = AbortOnDrop(acceptor);
    let server = Server::builder()
        .add_service(health_service)
        .add_service(KeyServiceServer::from_arc(keys.clone()))
        .add_service(AuditServiceServer::new(KeyAudit(keys)))
        .serve_with_incoming_shutdown(ReceiverStream::new(connections), async move {
            shutdown.await;
            tracing::info!("shutting down: closing connections");
            health.set_not_serving::<KeyServiceServer<Keys>>().await;
            let _ = started.send(());
        });
    // Open connections are given a grace period to close, no more.
    let _stop_refreshing = AbortOnDrop(refresher);
    tokio::select! {
        r = server => r.map_err(|e| ServeError::Transport(e.to_string())),
        _ = async { let _ = stopping.await; tokio::time::sleep(GRACE).await } => {
            tracing::warn!(grace_secs = GRACE.as_secs(), "connections did not close within the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// How long open connections have to close at shutdown.
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);
