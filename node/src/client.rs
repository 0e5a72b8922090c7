//! The connection to the coordinator: mutual TLS only, and one place that
//! turns gRPC failures into exit codes.

use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::config::NodeConfig;
use crate::exit::{self, Exit};

/// Largest message the node sends or accepts.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Exit> {
    std::fs::read(path).map_err(|e| Exit::new(exit::CONFIG, format!("cannot read {what} {}: {e}", path.display())))
}

/// Opens a mutual-TLS channel to the coordinator.
pub async fn connect(cfg: &NodeConfig) -> Result<Channel, Exit> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.tls.ca, "CA certificate")?))
        .identity(Identity::from_pem(read(&cfg.tls.cert, "certificate")?, read(&cfg.tls.key, "key")?))
        .domain_name(cfg.server_name.clone());
    let endpoint = Endpoint::from_shared(cfg.coordinator.clone())
        .map_err(|e| Exit::new(exit::CONFIG, format!("coordinator address {}: {e}", cfg.coordinator)))?
        .tls_config(tls)
        .map_err(|e| Exit::new(exit::CONFIG, format!("TLS configuration: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    endpoint
        .connect()
        .await
        .map_err(|e| Exit::new(exit::UNAVAILABLE, format!("cannot reach the coordinator at {}: {e}", cfg.coordinator)))
}

/// Whether a failure is worth retrying.
pub fn transient(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown)
}

/// The exit code and message for a failed call.
pub fn status_exit(s: &Status, what: &str) -> Exit {
    let code = match s.code() {
        Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
        Code::Unauthenticated | Code::PermissionDenied => exit::CONFIG,
        Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted | Code::OutOfRange => exit::INPUT,
        _ => exit::FAILURE,
    };
    Exit::new(code, format!("{what}: {} ({:?})", s.message(), s.code()))
}

/// Waits until the coordinator's gRPC health service says SERVING, for at
/// most `wait` (zero: ask once).
pub async fn health(cfg: &NodeConfig, wait: Duration) -> Result<(), Exit> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let deadline = std::time::Instant::now() + wait;
    loop {
        let last = match connect(cfg).await {
            Ok(ch) => match HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                Ok(r) => Exit::new(exit::UNAVAILABLE, format!("the coordinator reports status {}", r.get_ref().status)),
                Err(s) => status_exit(&s, "health check"),
            },
            Err(e) => e,
        };
        if std::time::Instant::now() >= deadline || last.code == exit::CONFIG {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
