//! `vigil-coordinator`: blind set intersection of force tokens against
//! national tokens. It never sees a name, a date of birth or an identifier,
//! and it cannot compute tokens (it has no linkage key).
//!
//! # Layout
//! Pure logic (values in, values out; the engine reads the store through a
//! read-only port and returns what to commit):
//! - [`index`]: the compact token → id multimap.
//! - [`matcher`]: both indexes, probed in both directions into evidence.
//! - [`policy`]: the versioned confirmation policy; `classify` turns
//!   evidence into a decision.
//! - [`pepper`]: re-keying tokens before they are stored.
//! - [`engine`]: continuous matching, cases (disclosures, amendments,
//!   retractions) and the audit log as one state machine.
//! - [`limiter`]: a per-caller rate limit.
//! - [`witness`]: witnessing rounds, collecting cosignatures of checkpoints.
//! - [`turns`]: a sender's batches in flight together apply in sequence
//!   order.
//!
//! I/O and the process:
//! - [`store`]: the `Store` trait, its read-only port, the embedded redb
//!   backend and an in-memory one for tests.
//! - [`core`]: the application core: apply, commit, publish, rebuild.
//! - [`inflight`]: commits in flight: a batch's commit is written while
//!   the next batch applies, in order, and the store as they will leave it.
//! - [`delivery`]: streaming a force's disclosures.
//! - [`service`]: the gRPC services (authorisation, checks, conversion, one
//!   error mapping).
//! - [`reflection`]: gRPC reflection v1 and v1alpha, files with their imports.
//! - [`server`]: serving the services, health, reflection, graceful shutdown.
//! - [`config`]: the `coordinator.toml` configuration.
//! - [`metrics`]: Prometheus metrics.
//! - [`pki`]: a private CA issuing SPIFFE-identity certificates.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod delivery;
pub mod engine;
pub mod index;
pub mod inflight;
pub mod limiter;
pub mod matcher;
pub mod metrics;
pub mod pepper;
pub mod pki;
pub mod policy;
pub mod reflection;
pub mod server;
pub mod service;
pub mod store;
pub mod turns;
pub mod witness;
