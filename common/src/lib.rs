//! `vigil-common`: what both Vigil programs (`vigil-node` and
//! `vigil-coordinator`) share at their edges. Nothing here knows about
//! identities or tokens.
//!
//! # Layout
//! - [`exit`]: process exit codes and the error that carries one to `main`.
//! - [`cli`]: logging set-up, writing to standard output, shutdown signals.
//! - [`secrets`]: 32-byte secret files (mode 0600, never overwritten) and
//!   private directories (mode 0700).
//! - [`config`]: the `[log]` and `[metrics]` tables both configs share.
//! - [`clock`]: the wall clock in milliseconds.
//! - [`metrics`]: the Prometheus exporter.
//! - [`certs`]: the SPIFFE identity named in a certificate.
//! - [`tls`]: the servers' TLS acceptor (TLS 1.3, client certificates,
//!   revocation lists reloaded without a restart, a connection limit).
#![forbid(unsafe_code)]

pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exit;
pub mod metrics;
pub mod secrets;
pub mod tls;
