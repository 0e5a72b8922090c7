//! The coordinator's pepper: every token is re-keyed with it before it is
//! stored or indexed, so a leak of the store alone is useless, even to
//! someone who also holds the linkage key.

use std::fmt;
use vigil_proto::Token;

use crate::index::IndexKey;

/// Length of a stored (peppered) token.
pub const STORED_LEN: usize = 16;

/// A stored token: the first 16 bytes of the peppered token.
pub type Stored = [u8; STORED_LEN];

/// The pepper. Its `Debug` form does not show it.
#[derive(Clone)]
pub struct Pepper([u8; 32]);

/// The pepper is overwritten when dropped (so are clones).
impl Drop for Pepper {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl Pepper {
    /// Wraps 32 bytes of secret.
    pub fn new(secret: [u8; 32]) -> Pepper {
        Pepper(blake3::derive_key("vigil coordinator pepper v1", &secret))
    }

    /// Re-keys a token of `epoch`: `BLAKE3-keyed(pepper, token)[..16]`,
    /// with the last bit replaced by the epoch's parity ([`parity`]), so
    /// that while two consecutive epochs are served the tokens of each can
    /// be told apart (and those of the old one dropped once every party
    /// has moved).
    pub fn rekey(&self, token: &Token, epoch: u32) -> Stored {
        let h = blake3::keyed_hash(&self.0, token);
        let mut s = [0u8; STORED_LEN];
        s.copy_from_slice(&h.as_bytes()[..STORED_LEN]);
        s[STORED_LEN - 1] = (s[STORED_LEN - 1] & !1) | (epoch & 1) as u8;
        s
    }
}

/// The parity of the epoch a stored token was sent in (0 or 1).
pub fn parity(stored: &Stored) -> u32 {
    u32::from(stored[STORED_LEN - 1] & 1)
}

/// The index key of a stored token.
pub fn index_key(stored: &Stored) -> IndexKey {
    IndexKey::from_bytes(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pepper_is_zeroised_on_drop() {
        assert!(std::mem::needs_drop::<Pepper>(), "a plain array would linger in memory");
    }

    #[test]
    fn rekeying_is_keyed_and_stable() {
        let a = Pepper::new([1; 32]);
        let b = Pepper::new([2; 32]);
        assert_eq!(a.rekey(&[5; 32], 1), a.rekey(&[5; 32], 1));
        assert_ne!(a.rekey(&[5; 32], 1), b.rekey(&[5; 32], 1));
        assert_ne!(&a.rekey(&[5; 32], 1)[..], &[5u8; 16][..]);
        assert_eq!(format!("{a:?}"), "Pepper(<redacted>)");
        assert_eq!(parity(&a.rekey(&[5; 32], 1)), 1);
        assert_eq!(parity(&a.rekey(&[5; 32], 2)), 0);
        assert_eq!(a.rekey(&[5; 32], 2)[..15], a.rekey(&[5; 32], 3)[..15]);
    }
}
