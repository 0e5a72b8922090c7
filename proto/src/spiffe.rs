//! Caller identities: `spiffe://<trust-domain>/<role>/<code>` URI SANs.
//!
//! Roles are `force`, `source`, `auditor`, `witness` (each with a code such
//! as `gmp`, `pnc`, `ico`), `coordinator` and `keyserver` (no code). A code is 1 to 32 of `a-z`,
//! `0-9` and `-`.

use std::fmt;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A police force: syncs its roster, receives its disclosures.
    Force,
    /// A national data custodian: feeds national records.
    Source,
    /// A data protection officer: reads the audit log.
    Auditor,
    /// A log witness: cosigns checkpoints it has found consistent.
    Witness,
    /// The coordinator itself.
    Coordinator,
    /// The key service (no code).
    Keyserver,
}

impl Role {
    /// The path element of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Force => "force",
            Role::Source => "source",
            Role::Auditor => "auditor",
            Role::Witness => "witness",
            Role::Coordinator => "coordinator",
            Role::Keyserver => "keyserver",
        }
    }
}

/// A parsed SPIFFE id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// Trust domain.
    pub trust_domain: String,
    /// Role.
    pub role: Role,
    /// Code (empty for the coordinator).
    pub code: String,
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self.role, Role::Coordinator | Role::Keyserver) {
            write!(f, "spiffe://{}/{}", self.trust_domain, self.role.as_str())
        } else {
            write!(f, "spiffe://{}/{}/{}", self.trust_domain, self.role.as_str(), self.code)
        }
    }
}

/// Why a URI is not a Vigil identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Vigil SPIFFE id (spiffe://<trust-domain>/force|source|auditor|witness/<code>): {0}")]
pub struct SpiffeError(pub &'static str);

/// Whether `code` is a valid force, source or auditor code.
pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses a SPIFFE id URI.
pub fn parse(uri: &str) -> Result<SpiffeId, SpiffeError> {
    let rest = uri.strip_prefix("spiffe://").ok_or(SpiffeError("scheme is not spiffe"))?;
    let (td, path) = rest.split_once('/').ok_or(SpiffeError("no path"))?;
    if td.is_empty() || !td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err(SpiffeError("bad trust domain"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let (role, code) = match parts.as_slice() {
        ["coordinator"] => (Role::Coordinator, ""),
        ["keyserver"] => (Role::Keyserver, ""),
        ["force", c] => (Role::Force, *c),
        ["source", c] => (Role::Source, *c),
        ["auditor", c] => (Role::Auditor, *c),
        ["witness", c] => (Role::Witness, *c),
        _ => {
            return Err(SpiffeError(
                "path is not /force/<code>, /source/<code>, /auditor/<code>, /witness/<code> or /coordinator",
            ));
        }
    };
    if !matches!(role, Role::Coordinator | Role::Keyserver) && !is_valid_code(code) {
        return Err(SpiffeError("bad code"));
    }
    Ok(SpiffeId { trust_domain: td.to_string(), role, code: code.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles() {
        let id = parse("spiffe://vigil.test/force/gmp").unwrap();
        assert_eq!((id.role, id.code.as_str(), id.trust_domain.as_str()), (Role::Force, "gmp", "vigil.test"));
        assert_eq!(id.to_string(), "spiffe://vigil.test/force/gmp");
        assert_eq!(parse("spiffe://vigil.test/coordinator").unwrap().role, Role::Coordinator);
        assert_eq!(parse("spiffe://vigil.test/keyserver").unwrap().to_string(), "spiffe://vigil.test/keyserver");
        assert_eq!(parse("spiffe://vigil.test/auditor/ico").unwrap().role, Role::Auditor);
        assert_eq!(parse("spiffe://vigil.test/witness/ico-w1").unwrap().role, Role::Witness);
        for bad in [
            "https://vigil.test/force/gmp",
            "spiffe://vigil.test/force",
            "spiffe://vigil.test/force/GMP",
            "spiffe://vigil.test/admin/x",
            "spiffe://vigil.test/force/gmp/extra",
            "spiffe:///force/gmp",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
