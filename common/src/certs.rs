//! The identity a certificate carries: its single `spiffe://` URI SAN
//! (`spiffe://<trust-domain>/<role>/<code>`, or `/coordinator`).

use vigil_proto::spiffe::{self, SpiffeId};

/// The single `spiffe://` URI SAN of a DER certificate.
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| "unreadable certificate".to_string())?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| "malformed subject alternative name".to_string())?
        .ok_or_else(|| "the certificate has no subject alternative name".to_string())?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .filter(|u| u.starts_with("spiffe://"))
        .collect();
    match uris.as_slice() {
        [one] => spiffe::parse(one).map_err(|e| e.to_string()),
        [] => Err("the certificate names no spiffe:// identity".into()),
        _ => Err("the certificate names more than one spiffe:// identity".into()),
    }
}
