//! Mutual TLS as the node does it, with identities checked both ways:
//!
//! - **This node's own certificate** must chain to the configured CA, be
//!   within its validity, and name exactly the SPIFFE id its configuration
//!   claims (`spiffe://<trust-domain>/<role>/<code>`). A force configured as
//!   `aa` with force `bb`'s certificate would otherwise enrol its staff
//!   under `bb`. Checked at every connection and by `check-config`.
//! - **The coordinator's certificate** must chain to the CA, carry the
//!   configured DNS name, and name `spiffe://<trust-domain>/coordinator`,
//!   the trust domain being this node's own. Another party's certificate
//!   with the right DNS name is refused before a byte of data is sent.
//! - A TLS failure is reported at once with its reason (exit code 64),
//!   not retried as if the coordinator were down.
//!
//! TLS 1.3 only, with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use vigil_proto::spiffe::{Role, SpiffeId};

use crate::config::NodeConfig;
use crate::error::NodeError;

/// What was loaded and checked of this node's TLS identity.
pub struct NodeTls {
    /// This node's SPIFFE id, from its certificate.
    pub id: SpiffeId,
    /// The identity the coordinator must present.
    pub coordinator: SpiffeId,
    /// When this node's certificate expires (RFC 3339).
    pub not_after: String,
    /// The client configuration: TLS 1.3, client certificate, ALPN h2,
    /// and the coordinator's identity checked.
    pub config: Arc<rustls::ClientConfig>,
}

fn cfg_err(m: impl Into<String>) -> NodeError {
    NodeError::config(m)
}

pub use vigil_common::certs::spiffe_id_of;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|e| cfg_err(format!("cannot read {what} {}: {e}", path.display())))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, NodeError> {
    vigil_common::tls::certs(path, what).map_err(|e| cfg_err(e.0))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads this node's certificate, key and CA, checks them against the
/// configuration (see the module docs), and builds the client config.
pub fn load(cfg: &NodeConfig) -> Result<NodeTls, NodeError> {
    let chain = certs(&cfg.tls.cert, "certificate")?;
    let key_pem = read(&cfg.tls.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| cfg_err(format!("key {}: not a PEM private key ({e})", cfg.tls.key.display())))?;
    let mut roots = RootCertStore::empty();
    for c in certs(&cfg.tls.ca, "CA certificate")? {
        roots.add(c).map_err(|e| cfg_err(format!("CA certificate {}: {e}", cfg.tls.ca.display())))?;
    }
    let roots = Arc::new(roots);

    let cert_path = cfg.tls.cert.display();
    let id = spiffe_id_of(&chain[0]).map_err(|e| cfg_err(format!("certificate {cert_path}: {e}")))?;
    let role = cfg.role.as_str();
    if id.role.as_str() != role || id.code != cfg.code {
        return Err(cfg_err(format!(
            "certificate {cert_path} is for {id}, but this node is configured as {role} {:?}: \
             use this node's own certificate, or correct `role` and `code`",
            cfg.code
        )));
    }
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|_| cfg_err(format!("{cert_path}: unreadable")))?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    let not_after = validity.not_after.to_datetime();
    if now < validity.not_before {
        return Err(cfg_err(format!("certificate {cert_path} is not valid before {}", validity.not_before)));
    }
    if now > validity.not_after {
        return Err(cfg_err(format!(
            "certificate {cert_path} expired on {}: renew it (docs/operations.md)",
            validity.not_after
        )));
    }
    // The chain, as the coordinator will check it.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| cfg_err(format!("CA certificate {}: {e}", cfg.tls.ca.display())))?;
    verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).map_err(|e| {
        cfg_err(format!(
            "certificate {cert_path} is not accepted by the CA in {} ({}): the coordinator would refuse it",
            cfg.tls.ca.display(),
            describe(&e)
        ))
    })?;

    let expected = match cfg.server_role {
        crate::config::ServerRole::Coordinator => Role::Coordinator,
        crate::config::ServerRole::Keyserver => Role::Keyserver,
    };
    let coordinator = SpiffeId { trust_domain: id.trust_domain.clone(), role: expected, code: String::new() };
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| cfg_err(format!("CA certificate {}: {e}", cfg.tls.ca.display())))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cfg_err(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CoordinatorVerifier { inner, expected: coordinator.clone() }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| cfg_err(format!("certificate {cert_path} and key {}: {e}", cfg.tls.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(NodeTls {
        id,
        coordinator,
        not_after: vigil_proto::time::rfc3339(not_after.unix_timestamp() * 1000),
        config: Arc::new(config),
    })
}

/// The CA's usual checks (chain, validity, DNS name), then the SPIFFE id.
#[derive(Debug)]
struct CoordinatorVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: SpiffeId,
}

/// Why the coordinator's certificate was refused although the CA issued it.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate is for {got}, not {want}: it is not the coordinator")]
struct NotTheCoordinator {
    got: String,
    want: String,
}

impl ServerCertVerifier for CoordinatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        match spiffe_id_of(end_entity) {
            Ok(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            got => Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                NotTheCoordinator {
                    got: got.map(|i| i.to_string()).unwrap_or_else(|e| format!("no Vigil identity ({e})")),
                    want: self.expected.to_string(),
                },
            ))))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS alert in words an operator can act on.
fn alert(a: &str) -> String {
    match a {
        "UnknownCA" => "the coordinator does not know the CA of this node's certificate (alert UnknownCA)".into(),
        "CertificateExpired" => {
            "the coordinator says this node's certificate has expired (alert CertificateExpired)".into()
        }
        "CertificateRevoked" => {
            "the coordinator says this node's certificate is revoked (alert CertificateRevoked)".into()
        }
        "CertificateRequired" => "the coordinator requires a client certificate (alert CertificateRequired)".into(),
        other => format!("the coordinator refused the connection (TLS alert {other})"),
    }
}

/// A TLS error in words an operator can act on.
pub fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => o.to_string(),
        rustls::Error::InvalidCertificate(c) => format!("the coordinator's certificate is refused: {c:?}"),
        rustls::Error::AlertReceived(a) => alert(&format!("{a:?}")),
        other => other.to_string(),
    }
}

/// The TLS problem in an error's chain, in words, if there is one. A TLS
/// error reaches here either as a `rustls::Error` (during the handshake) or,
/// once the connection is up, as the text of one inside an I/O error.
pub fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(t));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(describe(t));
            }
            if let Some(a) = inner.to_string().strip_prefix("received fatal alert: ") {
                return Some(alert(a));
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_problems_are_found_inside_io_errors() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        let typed = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.clone());
        assert!(tls_problem(&typed).unwrap().contains("UnknownCA"));
        let text = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.to_string());
        assert!(tls_problem(&text).unwrap().contains("does not know the CA"));
        assert!(tls_problem(&std::io::Error::other("refused")).is_none());
    }
}
