//! `vigil-coordinator`: blind set intersection of force tokens against
//! national tokens. It never sees a name, a date of birth or an identifier,
//! and it cannot compute tokens (it has no linkage key).
//!
//! # Layout
//! Pure logic:
//! - [`index`]: the compact token → id multimap.
//! - [`policy`]: the versioned confirmation policy.
//! - [`matcher`]: both indexes, probed in both directions into evidence.
//! - [`pepper`]: re-keying tokens before they are stored.
//!
//! - [`engine`]: continuous matching, disclosures, retractions and the audit
//!   log as one state machine; returns what to commit.
//!
//! I/O:
//! - [`store`]: the `Store` trait and its embedded redb backend.
//! - [`config`]: the `coordinator.toml` configuration.
//! - [`service`]: the gRPC services (authorisation, checks, conversion).
//! - [`reflection`]: gRPC reflection v1 and v1alpha, files with their imports.
//! - [`tls`]: the TLS 1.3 acceptor; refused handshakes are logged and counted.
//! - [`server`]: serving the services, health, reflection, graceful shutdown.
//! - [`metrics`]: Prometheus metrics.
//! - [`pki`]: a private CA issuing SPIFFE-identity certificates.

#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod index;
pub mod matcher;
pub mod metrics;
pub mod pepper;
pub mod pki;
pub mod policy;
pub mod reflection;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
