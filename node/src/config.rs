//! `node.toml`: one per force, source or auditor. This struct is the
//! reference: every key has its meaning beside it, unknown keys are refused,
//! and relative paths are taken from the directory of the config file.

use serde::Deserialize;
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

/// What this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A police force: syncs its roster, watches for disclosures.
    Force,
    /// A national data custodian: feeds its extract.
    Source,
    /// A data protection officer: audits the log.
    Auditor,
    /// A log witness: cosigns checkpoints it has found consistent.
    Witness,
}

impl NodeRole {
    /// The SPIFFE path element.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Force => "force",
            NodeRole::Source => "source",
            NodeRole::Auditor => "auditor",
            NodeRole::Witness => "witness",
        }
    }
}

/// Whom the node talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// The coordinator.
    #[default]
    Coordinator,
    /// The key service (auditors of its log only).
    Keyserver,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `"force"`, `"source"`, `"auditor"` or `"witness"`; must match the
    /// certificate.
    pub role: NodeRole,
    /// This node's code, e.g. `"gmp"` or `"pnc"`; must match the certificate.
    pub code: String,
    /// The coordinator's address, e.g. `"https://vigil.example:7443"`, or
    /// the addresses of an active coordinator and its standbys, as a list:
    /// the node uses whichever takes its connection (a standby takes
    /// none) and moves on when one goes away.
    pub coordinator: Addresses,
    /// The name the coordinator's certificate is checked against (a DNS SAN
    /// of its certificate), e.g. `"coordinator.vigil.example"`.
    pub server_name: String,
    /// Whom `coordinator` and `server_name` name: `"coordinator"` (the
    /// default), or for an auditor of the key service's own log,
    /// `"keyserver"` (its certificate must then name
    /// `spiffe://<domain>/keyserver`).
    #[serde(default)]
    pub server_role: ServerRole,
    /// Directory for this node's local store (enrolment state, inbox,
    /// checkpoints, reports). It holds personal data: protect it.
    pub data_dir: PathBuf,
    /// Mutual TLS.
    pub tls: NodeTls,
    /// Keys (not needed by an auditor or a witness).
    #[serde(default)]
    pub keys: Option<NodeKeys>,
    /// The key service (token scheme 3). With it, the node has no linkage
    /// key: every match key is evaluated obliviously by the key service.
    /// Without it, tokens are made under `[keys] linkage` (scheme 2).
    #[serde(default)]
    pub keyserver: Option<KeyServerConfig>,
    /// A witness's signing key and polling (witness role only).
    #[serde(default)]
    pub witness: Option<WitnessConfig>,
    /// The transparency log this node verifies.
    pub audit: NodeAudit,
    /// Roster sync and national feed.
    #[serde(default)]
    pub sync: SyncConfig,
    /// The disclosure subscription.
    #[serde(default)]
    pub watch: WatchConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Prometheus metrics endpoint for `watch` (omit to disable).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// PEM client certificate whose URI SAN is `spiffe://<domain>/<role>/<code>`.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// PEM CA certificate that issued the coordinator's certificate.
    pub ca: PathBuf,
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeKeys {
    /// The linkage key file of the current epoch (`vigil-node keygen`);
    /// scheme 2 only (omit it with `[keyserver]`).
    #[serde(default)]
    pub linkage: Option<PathBuf>,
    /// Linkage key files of earlier epochs, to open older disclosures.
    #[serde(default)]
    pub previous_linkage: Vec<PathBuf>,
    /// This node's local secret (`vigil-node keygen`).
    pub local: PathBuf,
}

/// `[keyserver]`: where the key service is and which key it must use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServerConfig {
    /// The key service's address, e.g. `"https://keyserver.vigil.example:7444"`.
    pub address: String,
    /// The DNS name its certificate must carry (it must also name
    /// `spiffe://<domain>/keyserver`).
    pub server_name: String,
    /// The key epoch evaluated in (the coordinator must accept the same).
    pub epoch: u32,
    /// The key service's public key for this epoch, 64 hex digits, as the
    /// key ceremony published it (`vigil-keyserver public-key`). Every
    /// evaluation's proof is checked against it.
    pub public_key: String,
}

impl KeyServerConfig {
    /// The pinned public key's bytes.
    pub fn public_key(&self) -> Result<[u8; 32], crate::error::NodeError> {
        vigil_proto::hex::decode_array::<32>(&self.public_key).ok_or_else(|| {
            crate::error::NodeError::config("keyserver.public_key must be 64 hex digits (vigil-keyserver public-key)")
        })
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAudit {
    /// The log's origin line, e.g. `"vigil.example/audit"`.
    pub origin: String,
    /// File holding the log's verifier key (`audit.vkey`).
    pub vkey: PathBuf,
    /// The oldest checkpoint accepted, in seconds (by its signed
    /// `vigil-time`): a coordinator holding this node on an old view of the
    /// log is refused. The coordinator signs a fresh one every
    /// `checkpoint_refresh_seconds` (300 by default). 0 turns it off.
    #[serde(default = "NodeAudit::max_age_default")]
    pub max_checkpoint_age_seconds: u64,
    /// Witnesses' cosignature verifier keys (`vigil-node witness keygen`
    /// prints one), for `audit verify`.
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must have cosigned the checkpoint
    /// `audit verify` checks against (0: no witnesses required).
    #[serde(default)]
    pub witness_quorum: usize,
}

/// `[witness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's signing key (`vigil-node witness keygen`).
    pub key: PathBuf,
    /// How often `vigil-node witness run` asks for a checkpoint to cosign.
    #[serde(default = "WitnessConfig::interval_default")]
    pub interval_seconds: u64,
}

impl WitnessConfig {
    fn interval_default() -> u64 {
        30
    }
}

impl NodeAudit {
    fn max_age_default() -> u64 {
        3600
    }
}

/// One address, or several (`coordinator = ["https://a:7443",
/// "https://b:7443"]`), tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses(pub Vec<String>);

impl Addresses {
    /// A single address.
    pub fn one(a: impl Into<String>) -> Addresses {
        Addresses(vec![a.into()])
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Addresses, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Several(Vec<String>),
        }
        match Form::deserialize(d) {
            Ok(Form::One(a)) => Ok(Addresses(vec![a])),
            Ok(Form::Several(v)) => Ok(Addresses(v)),
            Err(_) => Err(serde::de::Error::custom("expected an address or a list of addresses")),
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Subjects or records per batch.
    pub batch_size: usize,
    /// A sync or full feed that would remove more than this share of what is
    /// enrolled is refused unless `--allow-removals` is given.
    pub max_removal_share: f64,
    /// How long `sync` and `feed` keep retrying an unreachable coordinator.
    pub retry_seconds: u64,
    /// Threads that tokenise and seal a feed's records (token scheme 2);
    /// 0, the default: one a core.
    pub feed_workers: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig { batch_size: 10_000, max_removal_share: 0.10, retry_seconds: 30, feed_workers: 0 }
    }
}

/// `[watch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// First reconnection delay, milliseconds.
    pub backoff_initial_ms: u64,
    /// Longest reconnection delay, milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { backoff_initial_ms: 200, backoff_max_ms: 30_000 }
    }
}

/// `[log]` and `[metrics]`: the same tables, with the same meaning, as in
/// `coordinator.toml`.
pub use vigil_common::config::{LogConfig, MetricsConfig};

impl NodeConfig {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.into(), message: format!("cannot read: {e}") })?;
        NodeConfig::parse(&text, path)
    }

    /// Parses and checks config text.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let err = |message: String| ConfigError { path: path.into(), message };
        let mut c: NodeConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if !vigil_proto::spiffe::is_valid_code(&c.code) {
            return Err(err("code must be 1 to 32 of a-z, 0-9 and -".into()));
        }
        if c.coordinator.0.is_empty() {
            return Err(err("coordinator must name at least one address".into()));
        }
        if let Some(a) = c.coordinator.0.iter().find(|a| !a.starts_with("https://")) {
            return Err(err(format!("coordinator {a:?} must be an https:// address (there is no plaintext mode)")));
        }
        if matches!(c.role, NodeRole::Force | NodeRole::Source) && c.keys.is_none() {
            return Err(err(format!("a {} node needs a [keys] section", c.role.as_str())));
        }
        if let Some(k) = &c.keys {
            match (&c.keyserver, &k.linkage) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        "[keys] linkage and [keyserver] are two token schemes: give one (a key-service node holds no linkage key)"
                            .into(),
                    ));
                }
                (None, None) => {
                    return Err(err(
                        "[keys] needs `linkage` (scheme 2), or the node a [keyserver] section (scheme 3)".into()
                    ));
                }
                _ => {}
            }
            if c.keyserver.is_some() && !k.previous_linkage.is_empty() {
                return Err(err("[keys] previous_linkage is for scheme 2 nodes".into()));
            }
        }
        if let Some(ks) = &c.keyserver {
            if !matches!(c.role, NodeRole::Force | NodeRole::Source) {
                return Err(err("only a force or a source node has a [keyserver] section".into()));
            }
            if !ks.address.starts_with("https://") {
                return Err(err("keyserver.address must be an https:// address".into()));
            }
            if ks.epoch == 0 || ks.public_key().is_err() {
                return Err(err("keyserver.epoch must be at least 1 and keyserver.public_key 64 hex digits".into()));
            }
        }
        if c.server_role == ServerRole::Keyserver && c.role != NodeRole::Auditor {
            return Err(err("server_role = \"keyserver\" is for an auditor of the key service's log".into()));
        }
        if (c.role == NodeRole::Witness) != c.witness.is_some() {
            return Err(err("a witness node, and only a witness node, has a [witness] section".into()));
        }
        if c.witness.as_ref().is_some_and(|w| w.interval_seconds == 0) {
            return Err(err("witness.interval_seconds must be at least 1".into()));
        }
        for (i, v) in c.audit.witnesses.iter().enumerate() {
            vigil_proto::tlog::cosignature::WitnessKey::from_vkey(v).map_err(|e| {
                err(format!(
                    "audit.witnesses[{i}] is not a cosignature verifier key (name+id+base64 of 0x04 and the key): {e}"
                ))
            })?;
        }
        if c.audit.witness_quorum > c.audit.witnesses.len() {
            return Err(err(format!(
                "audit.witness_quorum is {} but only {} witnesses are listed",
                c.audit.witness_quorum,
                c.audit.witnesses.len()
            )));
        }
        if !(0.0..=1.0).contains(&c.sync.max_removal_share) || c.sync.batch_size == 0 {
            return Err(err("sync.max_removal_share must be 0 to 1 and sync.batch_size positive".into()));
        }
        c.log.check().map_err(err)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.data_dir);
        fix(&mut c.tls.cert);
        fix(&mut c.tls.key);
        fix(&mut c.tls.ca);
        fix(&mut c.audit.vkey);
        if let Some(w) = c.witness.as_mut() {
            fix(&mut w.key);
        }
        if let Some(k) = c.keys.as_mut() {
            if let Some(l) = k.linkage.as_mut() {
                fix(l);
            }
            fix(&mut k.local);
            k.previous_linkage.iter_mut().for_each(fix);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
role = "force"
code = "gmp"
coordinator = "https://127.0.0.1:7443"
server_name = "coordinator.vigil.test"
data_dir = "data"
[tls]
cert = "gmp.crt"
key = "gmp.key"
ca = "ca.crt"
[keys]
linkage = "linkage.key"
local = "local.key"
[audit]
origin = "vigil.test/audit"
vkey = "audit.vkey"
"#;

    #[test]
    fn parses_and_checks() {
        let c = NodeConfig::parse(GOOD, Path::new("/srv/gmp/node.toml")).unwrap();
        assert_eq!(c.role, NodeRole::Force);
        assert_eq!(c.tls.cert, PathBuf::from("/srv/gmp/gmp.crt"));
        assert_eq!(c.sync.max_removal_share, 0.10);
        assert_eq!(c.coordinator, Addresses::one("https://127.0.0.1:7443"));
        // An active coordinator and its standby.
        let pair = GOOD.replace("\"https://127.0.0.1:7443\"", "[\"https://a:7443\", \"https://b:7443\"]");
        let c = NodeConfig::parse(&pair, Path::new("n.toml")).unwrap();
        assert_eq!(c.coordinator.0, ["https://a:7443", "https://b:7443"]);
        assert_eq!(c.coordinator.to_string(), "https://a:7443, https://b:7443");
        for (bad, want) in [
            (GOOD.replace("https://", "http://"), "plaintext"),
            (GOOD.replace("[keys]\nlinkage = \"linkage.key\"\nlocal = \"local.key\"\n", ""), "[keys]"),
            (format!("{GOOD}\n[sync]\nbatch_sise = 3\n"), "batch_sise"),
            (GOOD.replace("code = \"gmp\"", "code = \"GMP\""), "code"),
            (GOOD.replace("\"https://127.0.0.1:7443\"", "[]"), "at least one"),
            (GOOD.replace("\"https://127.0.0.1:7443\"", "[\"https://a:1\", \"http://b:2\"]"), "plaintext"),
            (GOOD.replace("\"https://127.0.0.1:7443\"", "7443"), "list of addresses"),
        ] {
            let e = NodeConfig::parse(&bad, Path::new("n.toml")).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
