//! The connection to the coordinator: mutual TLS only (see [`crate::tls`]
//! for what is checked), and one place that turns gRPC failures into exit
//! codes.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::tls;

/// Largest message the node sends or accepts.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// The host and port of each of the coordinator's `https://` addresses.
fn authorities(cfg: &NodeConfig) -> Result<Vec<String>, NodeError> {
    cfg.coordinator
        .0
        .iter()
        .map(|address| {
            let bad = |why: &str| NodeError::config(format!("coordinator address {address}: {why}"));
            let uri: Uri = address.parse().map_err(|_| bad("not a URI"))?;
            if uri.scheme_str() != Some("https") {
                return Err(bad("must start with https:// (there is no plaintext mode)"));
            }
            let a = uri.authority().ok_or_else(|| bad("no host"))?;
            Ok(format!("{}:{}", a.host(), a.port_u16().unwrap_or(443)))
        })
        .collect()
}

/// Opens a mutual-TLS channel to the coordinator, after checking this
/// node's own certificate against its configuration.
pub async fn connect(cfg: &NodeConfig) -> Result<Channel, NodeError> {
    connect_to(cfg).await.map(|(channel, _)| channel)
}

/// As [`connect`], retrying an unreachable coordinator (restarting, or a
/// standby taking over) for up to `retry`; a configuration problem fails
/// at once.
pub async fn connect_within(cfg: &NodeConfig, retry: Duration) -> Result<Channel, NodeError> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(cfg).await {
            Err(NodeError::Unavailable(m)) if started.elapsed() < retry => {
                tracing::warn!(error = %m, "the coordinator cannot be reached; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// As [`connect`], also saying which address took the connection. Given
/// several addresses (an active coordinator and its standbys), the first
/// that completes a handshake is used: a standby closes connections before
/// any handshake. When the connection breaks (the active one stopped), the
/// channel connects again the same way, so calls retried on it reach
/// whichever coordinator took over.
pub async fn connect_to(cfg: &NodeConfig) -> Result<(Channel, String), NodeError> {
    let tls = tls::load(cfg)?;
    let addrs = std::sync::Arc::new(authorities(cfg)?);
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone())
        .map_err(|e| NodeError::config(format!("server_name {:?}: {e}", cfg.server_name)))?;
    let connector = tokio_rustls::TlsConnector::from(tls.config);
    let mut failures = Vec::new();
    let mut chosen = None;
    for (i, addr) in addrs.iter().enumerate() {
        match probe(&connector, &name, addr).await {
            Ok(()) => {
                chosen = Some(i);
                break;
            }
            Err(e) => failures.push((i, e)),
        }
    }
    let Some(first) = chosen else {
        // A certificate problem is a configuration error whichever
        // address showed it; otherwise none could be reached.
        if let Some((i, why)) = failures.iter().find_map(|(i, e)| tls::tls_problem(e).map(|w| (*i, w))) {
            return Err(NodeError::config(format!(
                "TLS with the coordinator at {} failed: {why}",
                cfg.coordinator.0[i]
            )));
        }
        let why: Vec<String> = failures.iter().map(|(i, e)| format!("{}: {e}", cfg.coordinator.0[*i])).collect();
        return Err(NodeError::unavailable(format!("cannot reach the coordinator ({})", why.join("; "))));
    };
    let preferred = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(first));
    let dial_addrs = addrs.clone();
    let service = tower::service_fn(move |_: Uri| {
        let (connector, name, addrs, preferred) =
            (connector.clone(), name.clone(), dial_addrs.clone(), preferred.clone());
        async move {
            let start = preferred.load(std::sync::atomic::Ordering::Relaxed);
            let mut last = std::io::Error::other("no coordinator address");
            for k in 0..addrs.len() {
                let i = (start + k) % addrs.len();
                let attempt = async {
                    let tcp = tokio::net::TcpStream::connect(&addrs[i]).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(name.clone(), tcp).await
                };
                match attempt.await {
                    Ok(stream) => {
                        if i != start {
                            tracing::info!(coordinator = %addrs[i], "connected to another coordinator address");
                        }
                        preferred.store(i, std::sync::atomic::Ordering::Relaxed);
                        return Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    });
    // TLS is done by the connector above, so the endpoint itself is plain
    // (its address only names the channel).
    let shown = cfg.coordinator.0[first].clone();
    let endpoint = Endpoint::from_shared(format!("http://{}", addrs[first]))
        .map_err(|e| NodeError::config(format!("coordinator address {shown}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect_with_connector(service).await.map_err(|e| match tls::tls_problem(&e) {
        Some(why) => NodeError::config(format!("TLS with the coordinator at {shown} failed: {why}")),
        None => NodeError::unavailable(format!("cannot reach the coordinator at {shown}: {e}")),
    })?;
    Ok((channel, shown))
}

/// One TLS connection that proves both certificates are accepted: under
/// TLS 1.3 the coordinator judges this node's certificate only after the
/// client's handshake is complete, so a refusal would otherwise surface
/// later, on some call, as a bare transport error. The node sends the
/// HTTP/2 preface and waits (at most 5 s) for the server's first frame or
/// its alert.
async fn probe(
    connector: &tokio_rustls::TlsConnector,
    name: &rustls::pki_types::ServerName<'static>,
    addr: &str,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name.clone(), tcp).await?;
        // The client connection preface, then an empty SETTINGS frame.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await?;
        tls.flush().await?;
        let mut first = [0u8; 9];
        let n = tls.read(&mut first).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the coordinator closed the connection",
            ));
        }
        let _ = tls.shutdown().await;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(5), io).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s")),
    }
}

/// The TLS problem behind a failed call, if that is what it was.
fn tls_cause(s: &Status) -> Option<String> {
    std::error::Error::source(s).and_then(tls::tls_problem)
}

/// Whether a failure is worth retrying: the coordinator unreachable or
/// restarting, never a refused certificate. `CANCELLED` is a call cut off
/// with its connection (a second call in flight when the coordinator
/// died); every call the node retries is safe to send again.
pub fn transient(s: &Status) -> bool {
    tls_cause(s).is_none()
        && matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled)
}

/// The exit code and message for a failed call.
pub fn status_error(s: &Status, what: &str) -> NodeError {
    if let Some(why) = tls_cause(s) {
        return NodeError::config(format!("{what}: TLS with the coordinator failed: {why}"));
    }
    let message = format!("{what}: {} ({:?})", s.message(), s.code());
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded => NodeError::Unavailable(message),
        Code::Unauthenticated | Code::PermissionDenied => NodeError::Config(message),
        Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted | Code::OutOfRange => {
            NodeError::Input(message)
        }
        _ => NodeError::Failed(message),
    }
}
/// Waits until the coordinator's gRPC health service says SERVING, for at
/// most `wait` (zero: ask once); returns the address that answered.
pub async fn health(cfg: &NodeConfig, wait: Duration) -> Result<String, NodeError> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let deadline = std::time::Instant::now() + wait;
    loop {
        let last = match connect_to(cfg).await {
            Ok((ch, at)) => match HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(at),
                Ok(r) => NodeError::unavailable(format!("the coordinator reports status {}", r.get_ref().status)),
                Err(s) => status_error(&s, "health check"),
            },
            Err(e) => e,
        };
        if std::time::Instant::now() >= deadline || matches!(last, NodeError::Config(_)) {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
