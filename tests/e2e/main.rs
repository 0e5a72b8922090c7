//! End-to-end tests: real binaries, mutual TLS, certificates generated at
//! test time, readiness by health check. One binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod audit;
mod auth;
mod common;
mod crash;
mod demo;
mod deploy;
mod failover;
mod integrity;
mod keyserver;
mod policy;
mod rosters;
mod split_trust;
mod store_postgres;
mod system;
