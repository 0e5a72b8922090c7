//! A small private CA for Vigil deployments: create the CA, issue and renew
//! certificates that carry SPIFFE identities. Used by `vigil-coordinator pki`
//! and by the tests, which generate every certificate at run time.
//!
//! Keys are ECDSA P-256. Client certificates carry
//! `spiffe://<trust-domain>/<role>/<code>` as their only URI SAN and the
//! clientAuth usage; the coordinator's carries its DNS names, its SPIFFE id
//! and the serverAuth usage.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
#[error("pki: {0}")]
pub struct PkiError(pub String);

fn err(e: impl std::fmt::Display) -> PkiError {
    PkiError(e.to_string())
}

/// A certificate authority that can issue certificates.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The SPIFFE id (URI SAN).
    pub spiffe: String,
    /// DNS names (for the coordinator's server certificate).
    pub dns: Vec<String>,
    /// Valid from.
    pub not_before: OffsetDateTime,
    /// Valid until.
    pub not_after: OffsetDateTime,
    /// Usable as a TLS server certificate.
    pub server: bool,
    /// Usable as a TLS client certificate.
    pub client: bool,
}

impl Leaf {
    /// A certificate valid from a minute ago for `days` days.
    pub fn valid_for(spiffe: &str, days: i64) -> Leaf {
        let now = OffsetDateTime::now_utc();
        Leaf {
            spiffe: spiffe.to_string(),
            dns: Vec::new(),
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(days),
            server: false,
            client: true,
        }
    }
}

impl Ca {
    /// Creates a new CA; returns it and its private key in PEM.
    pub fn create(common_name: &str, days: i64) -> Result<(Ca, String), PkiError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(1);
        p.not_after = now + Duration::days(days);
        let cert = p.self_signed(&key).map_err(err)?;
        let key_pem = key.serialize_pem();
        Ok((Ca { cert_pem: cert.pem(), issuer: Issuer::new(p, key) }, key_pem))
    }

    /// Loads a CA from its certificate and key in PEM.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(err)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(err)?;
        Ok(Ca { cert_pem: cert_pem.to_string(), issuer })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate with a fresh key; returns (certificate, key) in PEM.
    pub fn issue(&self, leaf: &Leaf) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(err)?;
        let cert = Self::params(leaf)?.signed_by(&key, &self.issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate for the key of a certificate signing request
    /// (PEM), so that the CA never sees the private key. Only the request's
    /// public key is used: the identity, validity and usages are `leaf`'s.
    pub fn sign_request(&self, csr_pem: &str, leaf: &Leaf) -> Result<String, PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| err(format!("not a valid certificate signing request: {e}")))?;
        csr.params = Self::params(leaf)?;
        Ok(csr.signed_by(&self.issuer).map_err(err)?.pem())
    }

    fn params(leaf: &Leaf) -> Result<CertificateParams, PkiError> {
        vigil_proto::spiffe::parse(&leaf.spiffe).map_err(err)?;
        let mut p = CertificateParams::new(leaf.dns.clone()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf.spiffe.as_str());
        p.distinguished_name = dn;
        p.subject_alt_names.push(SanType::URI(leaf.spiffe.as_str().try_into().map_err(err)?));
        p.not_before = leaf.not_before;
        p.not_after = leaf.not_after;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if leaf.server {
            p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if leaf.client {
            p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        // A random serial (16 bytes, positive), so that a revocation names
        // exactly this certificate.
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| err("no randomness"))?;
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        Ok(p)
    }

    /// A certificate revocation list naming `revoked` (serial, time of
    /// revocation), numbered `number` (it must grow with each list), valid
    /// for `days`. Returns it in PEM.
    pub fn crl(&self, revoked: &[(Vec<u8>, OffsetDateTime)], number: u64, days: i64) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(days.max(1)),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: *at,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).map_err(err)?.pem().map_err(err)
    }
}

/// The serial number of a PEM certificate (as the CA wrote it).
pub fn serial_of(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(err)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(err)?;
    Ok(cert.tbs_certificate.raw_serial().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_with_spiffe_ids() {
        let (ca, key) = Ca::create("Vigil test CA", 30).unwrap();
        let again = Ca::load(ca.cert_pem(), &key).unwrap();
        let (cert, _) = again.issue(&Leaf::valid_for("spiffe://vigil.test/force/gmp", 1)).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.as_bytes());
        let der: rustls_pki_types::CertificateDer<'_> = der.unwrap();
        let id = crate::service::identity_of(der.as_ref()).unwrap();
        assert_eq!((id.role, id.code.as_str()), (vigil_proto::spiffe::Role::Force, "gmp"));
        assert!(ca.issue(&Leaf::valid_for("https://not-spiffe", 1)).is_err());
    }
}
