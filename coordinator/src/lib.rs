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
//! Offline tools:
//! - [`eval`]: tokenisation and matching in one process, scored against the
//!   synthetic ground truth.
#![forbid(unsafe_code)]

pub mod eval;
pub mod index;
pub mod matcher;
pub mod pepper;
pub mod policy;
