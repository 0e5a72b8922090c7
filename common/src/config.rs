//! The configuration tables `coordinator.toml` and `node.toml` share, with
//! the same meaning in both.

use serde::Deserialize;
use std::net::SocketAddr;

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `"text"` or `"json"`.
    pub format: String,
    /// A tracing filter, e.g. `"info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), level: "info".into() }
    }
}

impl LogConfig {
    /// Checks the format; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if matches!(self.format.as_str(), "text" | "json") {
            Ok(())
        } else {
            Err("log.format must be \"text\" or \"json\"".into())
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`): loopback
    /// (`127.0.0.1:9464`) unless set. Anything else is logged as a warning
    /// at start: the endpoint is plain HTTP and its counts (batches,
    /// disclosures) are for the operator's monitoring only.
    #[serde(default = "MetricsConfig::loopback")]
    pub listen: SocketAddr,
}

impl MetricsConfig {
    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9464))
    }
}
