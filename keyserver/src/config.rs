//! `keyserver.toml`. This struct is the reference: every key has its
//! meaning beside it, unknown keys are refused, and relative paths are
//! taken from the directory of the file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// File.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (loopback unless deployed behind a network policy).
    pub listen: SocketAddr,
    /// The deployment's SPIFFE trust domain, e.g. `vigil.example`.
    pub trust_domain: String,
    /// Directory for the quota store.
    pub data_dir: PathBuf,
    /// Mutual TLS.
    pub tls: Tls,
    /// The key.
    pub key: Key,
    /// Allowances.
    pub quota: Quota,
    /// The key service's own log.
    pub audit: Audit,
    /// Each force's declared headcount: `gmp = 7000`. A force not named has
    /// no allowance.
    #[serde(default)]
    pub headcount: BTreeMap<String, u64>,
    /// Each source's allowance per epoch, in evaluations: `pnc = 300000000`.
    /// A source not named has none.
    #[serde(default)]
    pub sources: BTreeMap<String, u64>,
    /// Logging.
    #[serde(default)]
    pub log: vigil_common::config::LogConfig,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate naming `spiffe://<trust-domain>/keyserver`.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// PEM CA that issues the callers' certificates.
    pub client_ca: PathBuf,
    /// The CA's certificate revocation list (`vigil-coordinator pki
    /// revoke` writes it): a certificate it names is refused at its next
    /// handshake, and its open connections end, when the file changes.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// How often the revocation list is looked at, seconds.
    #[serde(default = "Tls::crl_reload_default")]
    pub crl_reload_seconds: u64,
    /// Most client connections open at once.
    #[serde(default = "Tls::max_connections_default")]
    pub max_connections: usize,
}

impl Tls {
    fn crl_reload_default() -> u64 {
        30
    }

    fn max_connections_default() -> usize {
        256
    }
}

/// `[key]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// The 32-byte seed every epoch's key is derived from
    /// (`vigil-keyserver keygen`). Only the key service holds it.
    pub seed: PathBuf,
    /// The epoch served.
    pub epoch: u32,
    /// While parties move to `epoch`: the epoch before it, still served
    /// (each epoch has its own allowance). Remove it once every party has
    /// moved.
    #[serde(default)]
    pub previous_epoch: Option<u32>,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// The log's origin line, e.g. `vigil.example/keyserver` (also the
    /// signing key's name).
    pub origin: String,
    /// The log's signing key (`vigil-keyserver keygen` writes `log.key`, and
    /// `log.vkey` to publish).
    pub signing_key: PathBuf,
    /// How often a fresh, dated checkpoint is signed when nothing happens.
    #[serde(default = "Audit::refresh_default")]
    pub checkpoint_refresh_seconds: u64,
}

impl Audit {
    fn refresh_default() -> u64 {
        300
    }
}

/// `[quota]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Evaluations one member of staff needs: every token of one identity
    /// (name and date variants included).
    #[serde(default = "Quota::per_subject_default")]
    pub evaluations_per_subject: u64,
    /// A force's allowance per epoch is its headcount times
    /// `evaluations_per_subject` times this.
    #[serde(default = "Quota::multiple_default")]
    pub headcount_multiple: f64,
    /// Beyond its epoch allowance, evaluations a force may have in any
    /// day: joiners and pre-employment checks.
    #[serde(default = "Quota::force_daily_default")]
    pub force_daily: u64,
    /// Beyond its epoch allowance, evaluations a source may have in any day:
    /// deltas.
    #[serde(default = "Quota::source_daily_default")]
    pub source_daily: u64,
    /// Of a force's evaluations, those for pre-employment checks in any
    /// day (a further bound: they count as above too). Sources make none.
    #[serde(default = "Quota::checks_daily_default")]
    pub checks_daily: u64,
}

impl Quota {
    fn per_subject_default() -> u64 {
        64
    }
    fn multiple_default() -> f64 {
        1.2
    }
    fn force_daily_default() -> u64 {
        64 * 500
    }
    fn source_daily_default() -> u64 {
        25 * 200_000
    }
    fn checks_daily_default() -> u64 {
        64 * 200
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.into(), message: format!("cannot read: {e}") })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { path: path.into(), message };
        let mut c: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if c.trust_domain.is_empty() || c.trust_domain.contains('/') {
            return Err(err("trust_domain must be a bare domain such as vigil.example".into()));
        }
        if c.key.previous_epoch.is_some_and(|p| p + 1 != c.key.epoch) {
            return Err(err("key.previous_epoch must be the epoch just before key.epoch".into()));
        }
        if c.key.epoch == 0 {
            return Err(err("key.epoch must be at least 1".into()));
        }
        let q = &c.quota;
        if q.evaluations_per_subject == 0 || !(q.headcount_multiple.is_finite() && q.headcount_multiple >= 1.0) {
            return Err(err("quota.evaluations_per_subject must be positive and headcount_multiple at least 1".into()));
        }
        for (code, _) in c.headcount.iter().chain(c.sources.iter()) {
            if !vigil_proto::spiffe::is_valid_code(code) {
                return Err(err(format!("{code:?} is not a force or source code")));
            }
        }
        c.log.check().map_err(err)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !vigil_proto::tlog::note::is_valid_name(&c.audit.origin) || c.audit.checkpoint_refresh_seconds == 0 {
            return Err(err("audit.origin must be non-empty with no spaces or '+', and the refresh positive".into()));
        }
        if c.tls.crl_reload_seconds == 0 || c.tls.max_connections == 0 {
            return Err(err("tls.crl_reload_seconds and tls.max_connections must be positive".into()));
        }
        for p in [
            &mut c.data_dir,
            &mut c.tls.cert,
            &mut c.tls.key,
            &mut c.tls.client_ca,
            &mut c.key.seed,
            &mut c.audit.signing_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = c.tls.crl.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        Ok(c)
    }

    /// A caller's allowance for the epoch and per day beyond it, or `None`
    /// if it has none. `role` is `force` or `source`.
    pub fn allowance(&self, role: &str, code: &str) -> Option<crate::quota::Allowance> {
        let q = &self.quota;
        match role {
            "force" => self.headcount.get(code).map(|h| crate::quota::Allowance {
                per_epoch: (*h as f64 * q.evaluations_per_subject as f64 * q.headcount_multiple) as u64,
                per_day: q.force_daily,
                checks_per_day: q.checks_daily,
            }),
            "source" => self.sources.get(code).map(|n| crate::quota::Allowance {
                per_epoch: *n,
                per_day: q.source_daily,
                checks_per_day: 0,
            }),
            _ => None,
        }
    }
}
