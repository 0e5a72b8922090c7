//! Packing and checked unpacking of token sets.
//!
//! A [`TokenSet`](crate::v1::TokenSet) carries `n` kinds and `32 * n` bytes of
//! tokens. Everything that reads one from the wire goes through
//! [`unpack`], which refuses malformed sets with an error that says what was
//! wrong and never shows a token.

use crate::kinds::KeyKind;
use crate::v1::{SealedDetails, TokenSet};

/// Length of a token on the wire, in bytes.
pub const TOKEN_LEN: usize = 32;

/// A token: a keyed BLAKE3 hash of one match key.
pub type Token = [u8; TOKEN_LEN];

/// Bytes of a scheme-3 record key, and of each of its wraps in a
/// [`SealedDetails`].
pub const WRAP_LEN: usize = 16;

/// Most wraps one sealed box may carry (a record's tokens are bounded well
/// below this).
pub const MAX_WRAPS: usize = 512;

/// Keeps only the wraps of `sealed` whose kind `keep` accepts: what the
/// coordinator forwards with a disclosure (the kinds that agree).
pub fn retain_wraps(sealed: &mut SealedDetails, mut keep: impl FnMut(i32) -> bool) {
    if sealed.wraps.len() != sealed.wrap_kinds.len() * WRAP_LEN {
        sealed.wrap_kinds.clear();
        sealed.wraps = Default::default();
        return;
    }
    let mut kinds = Vec::new();
    let mut wraps = Vec::new();
    for (i, k) in sealed.wrap_kinds.iter().enumerate() {
        if keep(*k) {
            kinds.push(*k);
            wraps.extend_from_slice(&sealed.wraps[i * WRAP_LEN..(i + 1) * WRAP_LEN]);
        }
    }
    sealed.wrap_kinds = kinds;
    sealed.wraps = wraps.into();
}

/// Why a token set was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSetError {
    /// The token bytes are not 32 bytes per kind.
    #[error("token set holds {kinds} kinds but {bytes} token bytes (want 32 per kind)")]
    LengthMismatch {
        /// Number of kinds.
        kinds: usize,
        /// Number of token bytes.
        bytes: usize,
    },
    /// A kind number that the scheme does not define.
    #[error("token set names unknown key kind {0}")]
    UnknownKind(i32),
    /// More tokens than the bound allows.
    #[error("token set holds {count} tokens, more than the limit of {limit}")]
    TooMany {
        /// Number of tokens.
        count: usize,
        /// The bound.
        limit: usize,
    },
    /// No tokens at all.
    #[error("token set is empty")]
    Empty,
    /// More tokens of one kind than one identity forms.
    #[error("token set holds {count} tokens of kind {kind}; one identity forms at most {limit}")]
    TooManyOfKind {
        /// The kind's short name.
        kind: &'static str,
        /// Tokens of that kind.
        count: usize,
        /// The most one identity forms ([`crate::kinds::max_per_identity`]).
        limit: usize,
    },
}

/// Packs `(kind, token)` pairs into a wire token set.
pub fn pack<'a>(tokens: impl IntoIterator<Item = &'a (KeyKind, Token)>) -> TokenSet {
    let tokens = tokens.into_iter();
    // Sized up front: a record's two dozen tokens would otherwise grow the
    // buffers eight times (a national feed packs every record).
    let (n, _) = tokens.size_hint();
    let mut set = TokenSet { kinds: Vec::with_capacity(n), ..Default::default() };
    let mut bytes = Vec::with_capacity(n * TOKEN_LEN);
    for (kind, token) in tokens {
        set.kinds.push(*kind as i32);
        bytes.extend_from_slice(token);
    }
    set.tokens = bytes.into();
    set
}

/// Checks a wire token set and returns its `(kind, token)` pairs.
pub fn unpack(set: &TokenSet, limit: usize) -> Result<Vec<(KeyKind, Token)>, TokenSetError> {
    let n = set.kinds.len();
    if set.tokens.len() != n * TOKEN_LEN {
        return Err(TokenSetError::LengthMismatch { kinds: n, bytes: set.tokens.len() });
    }
    if n == 0 {
        return Err(TokenSetError::Empty);
    }
    if n > limit {
        return Err(TokenSetError::TooMany { count: n, limit });
    }
    let mut out = Vec::with_capacity(n);
    let mut per_kind = [0usize; crate::kinds::ALL.len()];
    for (i, &k) in set.kinds.iter().enumerate() {
        let kind = KeyKind::from_wire(k).ok_or(TokenSetError::UnknownKind(k))?;
        let count = &mut per_kind[kind.index()];
        *count += 1;
        let limit = crate::kinds::max_per_identity(kind);
        if *count > limit {
            let count = set.kinds.iter().filter(|w| **w == k).count();
            return Err(TokenSetError::TooManyOfKind { kind: kind.short_name(), count, limit });
        }
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&set.tokens[i * TOKEN_LEN..(i + 1) * TOKEN_LEN]);
        out.push((kind, t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_of_a_kind_than_one_identity_forms_is_refused() {
        let two_ninos = vec![(KeyKind::Nino, [1u8; 32]), (KeyKind::Nino, [2u8; 32])];
        let e = unpack(&pack(&two_ninos), 512).unwrap_err();
        assert_eq!(e.to_string(), "token set holds 2 tokens of kind nino; one identity forms at most 1");
        let guesses: Vec<_> = (0..16u8).map(|i| (KeyKind::ForenameDob, [i; 32])).collect();
        assert!(matches!(unpack(&pack(&guesses), 512), Err(TokenSetError::TooManyOfKind { limit: 15, .. })));
        assert_eq!(unpack(&pack(&guesses[..15]), 512).unwrap().len(), 15);
    }

    #[test]
    fn round_trip() {
        let toks = vec![(KeyKind::Nino, [1u8; 32]), (KeyKind::NameDob, [2u8; 32])];
        let set = pack(&toks);
        assert_eq!(unpack(&set, 10).unwrap(), toks);
    }

    #[test]
    fn refuses_malformed_sets() {
        let mut set = pack(&[(KeyKind::Nino, [1u8; 32])]);
        set.kinds.push(KeyKind::NameDob as i32);
        assert!(matches!(unpack(&set, 10), Err(TokenSetError::LengthMismatch { kinds: 2, bytes: 32 })));
        let set = TokenSet { kinds: vec![42], tokens: vec![0u8; 32].into() };
        assert_eq!(unpack(&set, 10), Err(TokenSetError::UnknownKind(42)));
        let set = TokenSet { kinds: vec![0], tokens: vec![0u8; 32].into() };
        assert_eq!(unpack(&set, 10), Err(TokenSetError::UnknownKind(0)));
        assert_eq!(unpack(&TokenSet::default(), 10), Err(TokenSetError::Empty));
        let toks: Vec<_> = (0..3).map(|i| (KeyKind::Nino, [i as u8; 32])).collect();
        assert!(matches!(unpack(&pack(&toks), 2), Err(TokenSetError::TooMany { count: 3, limit: 2 })));
    }
}
