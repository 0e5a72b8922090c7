//! The servers' TLS acceptor (the coordinator's and the key service's):
//! TLS 1.3 only, a client certificate from the configured CA required and
//! checked against the CA's revocation list when one is configured (re-read
//! when the file changes, ending the connections of newly revoked
//! certificates), ALPN `h2`; every refused handshake is logged with the
//! peer address and the reason, and counted
//! (`vigil_tls_handshake_failures_total{reason}`), so that operators can
//! see probing. At most `max_connections` are open at once. Accepted
//! connections are handed to tonic, which reads the client certificate
//! from them for authorisation.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why the TLS configuration could not be built (names the file, never a
/// key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(pub String);

/// How long a peer may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM certificates in `path` (`what` names it in errors): at least one.
pub fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|e| TlsConfigError(format!("cannot read {what} {}: {e}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError(format!("{what} {}: not PEM certificates ({e})", path.display())))?;
    if certs.is_empty() {
        return Err(TlsConfigError(format!("{what} {} holds no certificate", path.display())));
    }
    Ok(certs)
}

fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| TlsConfigError(format!("cannot read the revocation list {}: {e}", path.display())))?;
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError(format!("revocation list {}: not PEM ({e})", path.display())))?;
    if crls.is_empty() {
        return Err(TlsConfigError(format!("revocation list {} holds no CRL", path.display())));
    }
    Ok(crls)
}

/// The server configuration from the server's certificate chain, key,
/// the CA that issues client certificates and, if given, its revocation
/// list.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crl: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(client_ca, "client CA")? {
        roots.add(c).map_err(|e| TlsConfigError(format!("client CA {}: {e}", client_ca.display())))?;
    }
    let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(p) = crl {
        builder = builder.with_crls(crls(p)?);
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsConfigError(format!("client CA {} and revocation list: {e}", client_ca.display())))?;
    let key_pem =
        std::fs::read(key).map_err(|e| TlsConfigError(format!("cannot read TLS key {}: {e}", key.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsConfigError(format!("TLS key {}: not a PEM private key ({e})", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError(format!("TLS: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert, "TLS certificate")?, key)
        .map_err(|e| TlsConfigError(format!("TLS certificate {} and key: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A short, stable label for a refused handshake (a metric label) and the
/// reason in words (a log field). Neither carries identity data.
pub fn classify(e: &std::io::Error) -> (&'static str, String) {
    use rustls::CertificateError as C;
    let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return ("io", e.to_string());
    };
    let label = match t {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => "unknown_ca",
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        rustls::Error::InvalidCertificate(C::Revoked) => "revoked",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::AlertReceived(_) => "alert_from_client",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    };
    (label, t.to_string())
}

fn refused(peer: SocketAddr, label: &'static str, reason: &str) {
    metrics::counter!("vigil_tls_handshake_failures_total", "reason" => label).increment(1);
    tracing::warn!(peer = %peer, reason = %reason, kind = label, "TLS handshake refused");
}

/// A way to end an open connection from outside: set, then wake the
/// connection's reader.
#[derive(Default)]
pub struct Cut {
    cut: std::sync::atomic::AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl Cut {
    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(w) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    }

    fn check(&self, cx: &Context<'_>) -> std::io::Result<()> {
        if let Ok(mut w) = self.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection ended by the server (certificate revoked, or the coordinator stepped down)",
            ));
        }
        Ok(())
    }
}

/// The open connections by the serial number of their client certificate,
/// so that revoking a certificate also ends the connections it opened.
/// While closed (a standby coordinator), new connections are closed at
/// once, before any handshake, so that clients given several addresses
/// move on to the next.
#[derive(Default)]
pub struct Open {
    conns: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<std::sync::Weak<Cut>>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Open {
    /// Stops (`false`) or resumes (`true`) taking connections; stopping
    /// also ends every open one. Returns how many were ended.
    pub fn set_accepting(&self, accepting: bool) -> usize {
        self.closed.store(!accepting, std::sync::atomic::Ordering::SeqCst);
        if accepting {
            return 0;
        }
        let Ok(m) = self.conns.lock() else { return 0 };
        let mut n = 0;
        for c in m.values().flatten().filter_map(std::sync::Weak::upgrade) {
            c.cut();
            n += 1;
        }
        n
    }

    fn accepting(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn add(&self, serial: Vec<u8>) -> Arc<Cut> {
        let cut = Arc::new(Cut::default());
        if let Ok(mut m) = self.conns.lock() {
            let v = m.entry(serial).or_default();
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(&cut));
        }
        cut
    }

    /// Ends every open connection whose certificate has one of `serials`;
    /// returns how many.
    pub fn revoke(&self, serials: &[Vec<u8>]) -> usize {
        let Ok(m) = self.conns.lock() else { return 0 };
        let mut n = 0;
        for s in serials {
            for c in m.get(s).into_iter().flatten().filter_map(std::sync::Weak::upgrade) {
                c.cut();
                n += 1;
            }
        }
        n
    }
}

/// An accepted connection, holding its place under the connection limit
/// until it closes, and ended when its certificate is revoked.
pub struct Conn {
    inner: TlsStream<TcpStream>,
    _slot: tokio::sync::OwnedSemaphorePermit,
    cut: Arc<Cut>,
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if let Err(e) = me.cut.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        if me.cut.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "client certificate revoked",
            )));
        }
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = <TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts connections on `listener` and completes their handshakes
/// concurrently (each bounded by [`HANDSHAKE_TIMEOUT`]); established
/// streams go to the returned receiver. At most `max_connections` are open
/// (handshaking or established) at once: one more is closed at once, logged
/// and counted (`too_many_connections`). Dropping the receiver ends the
/// accept loop at its next connection; abort the handle to end it at once.
pub fn accept(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    open: Arc<Open>,
) -> (tokio::sync::mpsc::Receiver<std::io::Result<Conn>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let handle = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            if !open.accepting() {
                drop(tcp);
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(tcp);
                refused(peer, "too_many_connections", "the connection limit (max_connections) is reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // The configuration in force now (a reloaded revocation list
            // applies to every handshake from then on).
            let acceptor = TlsAcceptor::from(config.borrow().clone());
            let (tx, open) = (tx.clone(), open.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let serial = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
                            .map(|(_, c)| c.tbs_certificate.raw_serial().to_vec())
                            .unwrap_or_default();
                        let cut = open.add(serial);
                        let _ = tx.send(Ok(Conn { inner: stream, _slot: slot, cut })).await;
                    }
                    Ok(Err(e)) => {
                        let (label, reason) = classify(&e);
                        refused(peer, label, &reason);
                    }
                    Err(_) => refused(peer, "timeout", "the handshake did not complete in time"),
                }
            });
        }
    });
    (rx, handle)
}

/// The serial numbers a set of revocation lists names.
fn revoked_serials(crls: &[CertificateRevocationListDer<'_>]) -> Vec<Vec<u8>> {
    crls.iter()
        .filter_map(|c| x509_parser::parse_x509_crl(c.as_ref()).ok())
        .flat_map(|(_, l)| l.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect::<Vec<_>>())
        .collect()
}

/// Keeps the server configuration current: every `every`, if the
/// revocation list file changed, the configuration is rebuilt and handed to
/// the accept loop, and open connections of newly revoked certificates are
/// ended. A list that cannot be read keeps the one in force, with
/// an error in the log (`vigil_crl_reload_failures_total`).
pub fn reload_crl(
    files: (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf),
    every: Duration,
    tx: tokio::sync::watch::Sender<Arc<rustls::ServerConfig>>,
    open: Arc<Open>,
) -> tokio::task::JoinHandle<()> {
    let (cert, key, ca, crl) = files;
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut last = stamp(&crl);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&crl);
            if now == last {
                continue;
            }
            last = now;
            match server_config(&cert, &key, &ca, Some(&crl)) {
                Ok(c) => {
                    let _ = tx.send(c);
                    // Connections opened before the revocation end now.
                    let ended = crls(&crl).map(|l| open.revoke(&revoked_serials(&l))).unwrap_or(0);
                    tracing::info!(crl = %crl.display(), connections_ended = ended, "certificate revocation list reloaded");
                }
                Err(e) => {
                    metrics::counter!("vigil_crl_reload_failures_total").increment(1);
                    tracing::error!(error = %e, "revocation list not reloaded; the previous one stays in force");
                }
            }
        }
    })
}
