//! `vigil-lab`: Vigil's development tools. None of this ships in
//! `vigil-node` or `vigil-coordinator`: it generates synthetic people and
//! scores matching quality, so it needs both sides' code in one process
//! (the node's normaliser and tokeniser, the coordinator's matcher and
//! policy), which no production binary may hold.
//!
//! # Layout
//! - [`synth`]: the synthetic data generator (rosters, extracts, deltas,
//!   applicants, ground truth), deterministic by seed. Pure in its core;
//!   `generate` writes the files.
//! - [`eval`]: offline evaluation: tokenise and match every file in one
//!   process, then score confirmed pairs against the ground truth.
//!
//! The binary `vigil-lab` runs both (`vigil-lab synth`, `vigil-lab eval`);
//! `tests/matching.rs` holds the matching-quality tests and
//! `benches/tokenise.rs` the normalise-and-tokenise benchmark.
#![forbid(unsafe_code)]

pub mod eval;
pub mod synth;
