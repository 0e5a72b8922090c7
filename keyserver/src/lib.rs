//! `vigil-keyserver`: the key service of issue 11. It evaluates nodes'
//! blinded match keys obliviously (RFC 9497 POPRF over ristretto255,
//! [`vigil_oprf`]) under a key only it holds, one key per epoch, and proves
//! each batch was evaluated with its published key. Run by a party other
//! than the coordinator. It never sees a match key or a token; what it
//! learns is who asked for how many evaluations of which kind, and it
//! holds every caller to a quota that survives restarts.
//!
//! Every evaluated batch is an entry in the key service's own signed
//! transparency log, verifiable with `vigil-node audit verify`.
//!
//! Status: the service runs and is tested end to end; nodes do not use it
//! yet (docs/architecture.md, "The key service").
//!
//! # Layout
//! - [`config`]: the `keyserver.toml` configuration.
//! - [`quota`]: allowances per caller and epoch, and the durable store (usage
//!   and log).
//! - [`log`]: the key service's transparency log.
//! - [`service`]: the gRPC service (authorisation, checks, evaluation).
//! - [`server`]: serving over mutual TLS, health, graceful shutdown.
#![forbid(unsafe_code)]

pub mod config;
pub mod log;
pub mod quota;
pub mod server;
pub mod service;
