//! Packing and checked unpacking of token sets.
//!
//! A [`TokenSet`](crate::v1::TokenSet) carries `n` kinds and `32 * n` bytes of
//! tokens. Everything that reads one from the wire goes through
//! [`unpack`], which refuses malformed sets with an error that says what was
//! wrong and never shows a token.

use crate::kinds::KeyKind;
use crate::v1::TokenSet;

/// Length of a token on the wire, in bytes.
pub const TOKEN_LEN: usize = 32;

/// A token: a keyed BLAKE3 hash of one match key.
pub type Token = [u8; TOKEN_LEN];

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
}

/// Packs `(kind, token)` pairs into a wire token set.
pub fn pack<'a>(tokens: impl IntoIterator<Item = &'a (KeyKind, Token)>) -> TokenSet {
    let mut set = TokenSet::default();
    let mut bytes = Vec::new();
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
    for (i, &k) in set.kinds.iter().enumerate() {
        let kind = KeyKind::from_wire(k).ok_or(TokenSetError::UnknownKind(k))?;
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
