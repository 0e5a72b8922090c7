//! The Vigil wire protocol and the formats both sides share.
//!
//! Nodes (forces and national sources) and the coordinator depend on this
//! crate and on nothing of each other. It holds what both must agree on byte
//! for byte.
//!
//! # Layout
//! - [`v1`]: the generated protobuf messages and gRPC clients and servers of
//!   `proto/vigil/v1/*.proto` (compiled by protox at build time, no `protoc`).
//! - [`audit`]: transparency-log entries and batch commitments.
//! - `codec` (with `grpc`): the gRPC codec, prost's with the send buffer
//!   reserved for the whole message.
//! - [`hex`]: lowercase hex for key files and references.
//! - [`invariants`]: the log's invariants, checked over its entries.
//! - [`kinds`]: the match-key kinds of scheme 2, their stable short names and
//!   bit positions.
//! - [`spiffe`]: caller identities from certificate URI SANs.
//! - [`time`]: RFC 3339 formatting.
//! - [`tlog`]: the transparency log: RFC 6962 Merkle trees, C2SP signed
//!   notes and checkpoints, proof verification.
//! - [`tokens`]: packing and checked unpacking of [`v1::TokenSet`].
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//!
//! Nothing here does I/O.
#![forbid(unsafe_code)]

pub mod audit;
#[cfg(feature = "grpc")]
pub mod codec;
pub mod hex;
pub mod invariants;
pub mod kinds;
pub mod spiffe;
pub mod time;
pub mod tlog;
pub mod tokens;

/// Generated messages (and, with the `grpc` feature, services) of package
/// `vigil.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the Vigil API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

pub use kinds::KeyKind;
pub use tokens::{TOKEN_LEN, Token, TokenSetError};
