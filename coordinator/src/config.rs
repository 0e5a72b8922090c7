//! `coordinator.toml`: the coordinator's configuration. This struct is the
//! reference: every key has its meaning beside it, unknown keys are refused,
//! and relative paths are taken from the directory of the config file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or unknown or missing keys.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to serve gRPC on, e.g. `"127.0.0.1:7443"`. Port 0 picks a free
    /// port; the chosen address is printed as `listening on <addr>`.
    pub listen: SocketAddr,
    /// SPIFFE trust domain of every client certificate, e.g. `"vigil.example"`.
    /// A certificate from this CA naming another trust domain is refused.
    pub trust_domain: String,
    /// Directory of the coordinator's embedded store (created if missing;
    /// unused with `[store] backend = "postgres"`).
    pub data_dir: PathBuf,
    /// Where the durable state lives: the embedded store (default) or
    /// PostgreSQL.
    #[serde(default)]
    pub store: StoreConfig,
    /// Mutual TLS. There is no plaintext mode.
    pub tls: TlsConfig,
    /// Secret keys.
    pub keys: KeysConfig,
    /// Matching.
    #[serde(default)]
    pub matching: MatchingConfig,
    /// Bounds on every input.
    #[serde(default)]
    pub limits: Limits,
    /// Expected index sizes, to allocate up front.
    #[serde(default)]
    pub capacity: Capacity,
    /// `[headcount]`: each named force's declared headcount (force code =
    /// number), the most subjects it may enrol; other forces have
    /// `[limits] max_roster_size`.
    #[serde(default)]
    pub headcount: std::collections::HashMap<String, u64>,
    /// The transparency log.
    pub audit: AuditConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Prometheus metrics endpoint (omit to disable).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// A plaintext listener serving only the gRPC health service, for
    /// orchestrators whose probes cannot present a client certificate
    /// (omit to disable). It reveals nothing but serving status.
    #[serde(default)]
    pub health: Option<HealthConfig>,
}

/// `[health]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Address of the health-only listener, e.g. `"0.0.0.0:7444"`.
    pub listen: SocketAddr,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the coordinator (its SAN must include the
    /// DNS name nodes dial, and `spiffe://<trust-domain>/coordinator`).
    pub cert: PathBuf,
    /// PEM private key of the coordinator.
    pub key: PathBuf,
    /// PEM CA certificate(s) that issue client certificates.
    pub client_ca: PathBuf,
    /// PEM certificate revocation list(s) from that CA (`vigil-coordinator
    /// pki revoke` writes one): a client certificate named there is refused
    /// at its handshake. Re-read when the file changes, without a restart.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// How often the CRL file is looked at for changes, seconds.
    #[serde(default = "TlsConfig::crl_reload_default")]
    pub crl_reload_seconds: u64,
}

impl TlsConfig {
    fn crl_reload_default() -> u64 {
        30
    }
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The pepper (`secret = "<64 hex>"`): every token is re-keyed with it
    /// before it is stored. Losing it makes the store useless; changing it
    /// needs every roster and extract sent again.
    pub pepper: PathBuf,
    /// The audit-log signing key (C2SP signer key `PRIVATE+KEY+...`).
    pub audit_signing_key: PathBuf,
}

/// `[matching]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingConfig {
    /// Policy file; the shipped default policy when absent.
    pub policy: Option<PathBuf>,
    /// The epoch accepted (of the linkage key, or of the key service's key);
    /// batches of any other epoch are refused.
    pub epoch: u32,
    /// While parties move to `epoch`: the epoch before it, also accepted.
    /// Both are matched (each item keeps its tokens of both); remove it once
    /// every party has re-sent in `epoch`, and at the next start the
    /// previous epoch's tokens are dropped and every pair decided again.
    pub previous_epoch: Option<u32>,
    /// The token scheme accepted: 2 (each node holds the linkage key) or 3
    /// (tokens from the key service, record details sealed to matching
    /// identities). Deployment-wide: batches of the other scheme are
    /// refused. Changing it is an epoch change (docs/operations.md).
    pub scheme: u32,
    /// The size of the full national data (records over all sources). The
    /// policy's prior is spread over this many records, or over the records
    /// held when there are more; so pairs decided while the national data
    /// is still loading are judged as strictly as they will be once it is
    /// in. 0 (the default) uses the records held.
    pub national_records: u32,
}

impl Default for MatchingConfig {
    fn default() -> Self {
        MatchingConfig { policy: None, epoch: 1, previous_epoch: None, scheme: 3, national_records: 0 }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Most upserts plus removes in one batch.
    pub max_batch_items: usize,
    /// Most tokens for one subject, record or applicant.
    pub max_tokens_per_item: usize,
    /// Most subjects one force may have enrolled.
    pub max_roster_size: u64,
    /// Pre-employment checks one force may make per minute.
    pub checks_per_minute: u32,
    /// Applicants one force may check in any 24 hours (restored from the
    /// log at start, so a restart does not reset it).
    pub applicants_per_day: u64,
    /// New subjects one force may enrol in any 24 hours from the day after
    /// its first roster batch (restored from the log at start).
    pub additions_per_day: u64,
    /// Most applicants in one check.
    pub max_applicants: usize,
    /// Largest share of a force's enrolled subjects one roster batch may
    /// remove unless the batch says the removals are intended
    /// (`allow_removals`, from `vigil-node sync --allow-removals`).
    pub max_removal_share: f64,
    /// Most client connections open at once; more are closed at once,
    /// logged and counted (`vigil_tls_handshake_failures_total{reason="too_many_connections"}`).
    pub max_connections: usize,
    /// Most concurrent requests (HTTP/2 streams) on one connection.
    pub max_streams_per_connection: u32,
    /// Longest a request may take before it is answered `DEADLINE_EXCEEDED`
    /// (a disclosure subscription is a request that answers at once and
    /// then streams; the stream itself is not bounded).
    pub request_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 32 * 1024 * 1024,
            max_batch_items: 20_000,
            max_tokens_per_item: 512,
            max_roster_size: 60_000,
            checks_per_minute: 30,
            applicants_per_day: 2_000,
            additions_per_day: 2_000,
            max_applicants: 1_000,
            max_removal_share: 0.1,
            max_connections: 512,
            max_streams_per_connection: 64,
            request_timeout_seconds: 120,
        }
    }
}

/// `[capacity]`: how many tokens the indexes should hold without growing.
///
/// Growing a large index allocates a bigger table and moves every entry, and
/// the first full load of a national extract grows it about twenty times.
/// Sized up front, that load ran about 20% faster and with less peak memory
/// (docs/BENCHMARKS.md). 0 means grow as needed; more than expected is
/// fine too, the index simply grows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    /// National tokens expected: about 20 per national record.
    pub national_tokens: usize,
    /// Roster tokens expected, all forces together: about 20 per person.
    pub roster_tokens: usize,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"redb"`: one embedded file in `data_dir` (the default), or
    /// `"postgres"`: a PostgreSQL database (run `vigil-coordinator migrate`
    /// first; docs/operations.md).
    pub backend: String,
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// Role to connect as.
    pub user: String,
    /// File whose first line is the role's password (omit for none, e.g.
    /// peer or certificate authentication). Keep it readable by the
    /// coordinator only.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) of the database server: set, the connection is
    /// TLS and the server's certificate must chain to it and name `host`.
    pub tls_ca: Option<PathBuf>,
    /// How long to wait for a connection, in seconds.
    pub connect_timeout_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "redb".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "vigil".into(),
            user: "vigil".into(),
            password_file: None,
            tls_ca: None,
            connect_timeout_seconds: 10,
        }
    }
}

/// Largest `[capacity]` figure accepted: 2^31 tokens, about 45 GB of index.
pub const MAX_CAPACITY_TOKENS: usize = 1 << 31;

impl StoreConfig {
    /// The PostgreSQL settings of this section.
    pub fn postgres(&self) -> crate::store::postgres::PgSettings {
        crate::store::postgres::PgSettings {
            host: self.host.clone(),
            port: self.port,
            dbname: self.dbname.clone(),
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            tls_ca: self.tls_ca.clone(),
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout_seconds.max(1)),
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's origin line, naming the deployment, e.g.
    /// `"vigil.example/audit"`. It is also the signing key's name.
    pub origin: String,
    /// How often a fresh checkpoint is signed when the log is quiet, so that
    /// nodes can refuse an old view (their `[audit] max_checkpoint_age_seconds`).
    #[serde(default = "AuditConfig::refresh_default")]
    pub checkpoint_refresh_seconds: u64,
    /// How often new log entries and the latest checkpoint are published
    /// (1 to 60,000 ms). Batches in between appear together, so whoever
    /// reads checkpoints cannot tell one batch's entries from another's.
    /// A disclosure reaches its force, and a check its answer, at the next
    /// publication: this adds up to this much to their latency.
    #[serde(default = "AuditConfig::publish_default")]
    pub publish_interval_ms: u64,
    /// Witnesses whose cosignatures this coordinator collects and serves
    /// (none by default). Each is a `[[audit.witnesses]]` table.
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    /// Longest witnessing round, seconds: witnesses are given the same
    /// checkpoint until all have cosigned it or this much time has passed.
    #[serde(default = "AuditConfig::round_default")]
    pub witness_round_seconds: u64,
}

/// `[[audit.witnesses]]`: one witness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's code, as in its certificate (`spiffe://<domain>/witness/<code>`).
    pub code: String,
    /// Its C2SP cosignature verifier key, `<name>+<hex id>+<base64(0x04 || key)>`
    /// (printed by `vigil-node witness keygen`).
    pub vkey: String,
}

impl AuditConfig {
    fn refresh_default() -> u64 {
        300
    }
    fn publish_default() -> u64 {
        20
    }
    fn round_default() -> u64 {
        60
    }
}

/// `[log]` and `[metrics]`: the same tables, with the same meaning, as in
/// `node.toml`.
pub use vigil_common::config::{LogConfig, MetricsConfig};

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text; relative paths are resolved against
    /// the directory of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut c: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let invalid = |message: &str| ConfigError::Invalid { path: path.into(), message: message.to_string() };
        if c.trust_domain.is_empty() || c.trust_domain.contains('/') {
            return Err(invalid("trust_domain must be a bare domain such as vigil.example"));
        }
        if !vigil_proto::tlog::note::is_valid_name(&c.audit.origin) {
            return Err(invalid("audit.origin must be non-empty with no spaces or '+'"));
        }
        if !(1..=60_000).contains(&c.audit.publish_interval_ms) {
            return Err(invalid("audit.publish_interval_ms must be 1 to 60000"));
        }
        for (i, w) in c.audit.witnesses.iter().enumerate() {
            if !vigil_proto::spiffe::is_valid_code(&w.code) || c.audit.witnesses[..i].iter().any(|o| o.code == w.code) {
                return Err(invalid(&format!("audit.witnesses[{i}]: code must be a distinct witness code")));
            }
            vigil_proto::tlog::cosignature::WitnessKey::from_vkey(&w.vkey).map_err(|e| {
                invalid(&format!("audit.witnesses[{i}] ({}): vkey is not a cosignature verifier key: {e}", w.code))
            })?;
        }
        if c.audit.witness_round_seconds == 0 {
            return Err(invalid("audit.witness_round_seconds must be at least 1"));
        }
        if ![vigil_proto::kinds::TOKENS_LINKAGE_KEY, vigil_proto::kinds::TOKENS_KEY_SERVICE]
            .contains(&c.matching.scheme)
        {
            return Err(invalid("matching.scheme must be 2 (linkage key) or 3 (key service)"));
        }
        if c.matching.previous_epoch.is_some_and(|p| p + 1 != c.matching.epoch) {
            return Err(invalid("matching.previous_epoch must be the epoch just before matching.epoch"));
        }
        if c.matching.epoch == 0 {
            return Err(invalid("matching.epoch must be at least 1"));
        }
        let l = &c.limits;
        if l.max_message_bytes < 1024
            || l.max_batch_items == 0
            || l.max_tokens_per_item == 0
            || l.max_applicants == 0
            || l.max_connections == 0
            || l.max_streams_per_connection == 0
            || l.request_timeout_seconds == 0
            || l.applicants_per_day == 0
            || l.additions_per_day == 0
            || !(l.max_removal_share > 0.0 && l.max_removal_share <= 1.0)
        {
            return Err(invalid("limits must be positive (max_message_bytes at least 1024)"));
        }
        // An index slot is 12 bytes at 75% load: about 16 bytes a token,
        // allocated at start. Refuse a figure no machine could hold rather
        // than abort on allocation.
        let cap = &c.capacity;
        if cap.national_tokens.max(cap.roster_tokens) > MAX_CAPACITY_TOKENS {
            return Err(invalid(&format!(
                "capacity.national_tokens and roster_tokens must each be at most {MAX_CAPACITY_TOKENS} \
                 (about 16 bytes of memory a token, allocated at start)"
            )));
        }
        if c.headcount.iter().any(|(f, n)| f.is_empty() || f.contains('/') || *n == 0) {
            return Err(invalid("headcount: each entry is a force code and a number above 0"));
        }
        if !matches!(c.store.backend.as_str(), "redb" | "postgres") {
            return Err(invalid("store.backend must be \"redb\" (embedded) or \"postgres\""));
        }
        if c.store.backend == "postgres"
            && (c.store.host.is_empty() || c.store.dbname.is_empty() || c.store.user.is_empty() || c.store.port == 0)
        {
            return Err(invalid("store: host, port, dbname and user must be set for the postgres backend"));
        }
        if !matches!(c.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format must be \"text\" or \"json\""));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.data_dir);
        fix(&mut c.tls.cert);
        fix(&mut c.tls.key);
        fix(&mut c.tls.client_ca);
        if let Some(p) = c.tls.crl.as_mut() {
            fix(p);
        }
        if let Some(p) = c.store.password_file.as_mut() {
            fix(p);
        }
        if let Some(p) = c.store.tls_ca.as_mut() {
            fix(p);
        }
        fix(&mut c.keys.pepper);
        fix(&mut c.keys.audit_signing_key);
        if let Some(p) = c.matching.policy.as_mut() {
            fix(p);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
trust_domain = "vigil.test"
data_dir = "data"
[tls]
cert = "coordinator.crt"
key = "coordinator.key"
client_ca = "ca.crt"
[keys]
pepper = "pepper.key"
audit_signing_key = "audit.key"
[audit]
origin = "vigil.test/audit"
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/vigil/coordinator.toml")).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/vigil/data"));
        assert_eq!(c.matching.epoch, 1);
        assert_eq!(c.limits.max_batch_items, 20_000);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let e = Config::parse(&format!("{GOOD}\nplaintext = true\n"), Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("plaintext"), "{e}");
        let e = Config::parse(&GOOD.replace("[audit]", "[audit]\nretention = 1"), Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
        let e = Config::parse(&GOOD.replace("vigil.test/audit", "bad name"), Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("audit.origin"), "{e}");
        let huge = format!("{GOOD}\n[capacity]\nnational_tokens = 100000000000\n");
        let e = Config::parse(&huge, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("capacity.national_tokens"), "{e}");
        let sized = format!("{GOOD}\n[capacity]\nnational_tokens = 11000000\nroster_tokens = 3300000\n");
        assert_eq!(Config::parse(&sized, Path::new("c.toml")).unwrap().capacity.national_tokens, 11_000_000);
    }
}
