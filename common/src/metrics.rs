//! The Prometheus exporter both programs serve when `[metrics] listen` is
//! set. Metric names and labels never carry a token, a reference or
//! personal data.

use std::net::SocketAddr;

/// Serves `/metrics` on `listen` from a background thread; an error names
/// the address.
pub fn serve(listen: SocketAddr) -> Result<(), String> {
    if !listen.ip().is_loopback() {
        tracing::warn!(
            addr = %listen,
            "metrics endpoint listens beyond loopback: it is plain HTTP and shows counts of batches and disclosures; \
             only the operator's monitoring should reach it"
        );
    }
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|e| format!("metrics listener {listen}: {e}"))
}
