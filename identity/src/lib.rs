//! `vigil-identity`: the pure identity core of Vigil, used on force and
//! source nodes (and by the lab tools), never by the coordinator. From raw
//! identity fields to the tokens and sealed boxes that leave a node.
//!
//! Nothing here does I/O: values in, values out. The crate graph keeps it
//! so: no async runtime, network, or storage crate is in its dependency
//! tree, and the coordinator does not link it, so it cannot compute a
//! token.
//!
//! # Layout
//! - [`normalize`]: folding, names, dates, NI numbers and postcodes.
//! - [`nicknames`]: the documented nickname table.
//! - [`keys`]: identities and the match keys of scheme 2.
//! - [`tokens`]: linkage key, local secret, tokens, pseudonyms, references.
//! - [`seal`]: AEAD sealing of record details.
//! - [`category`]: the category vocabulary and its severity order.
#![forbid(unsafe_code)]

pub mod category;
pub mod keys;
pub mod nicknames;
pub mod normalize;
pub mod seal;
pub mod tokens;
