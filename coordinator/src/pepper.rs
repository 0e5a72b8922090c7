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

    /// Re-keys a token: `BLAKE3-keyed(pepper, token)[..16]`.
    pub fn rekey(&self, token: &Token) -> Stored {
        let h = blake3::keyed_hash(&self.0, token);
        let mut s = [0u8; STORED_LEN];
        s.copy_from_slice(&h.as_bytes()[..STORED_LEN]);
        s
    }
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
        assert_eq!(a.rekey(&[5; 32]), a.rekey(&[5; 32]));
        assert_ne!(a.rekey(&[5; 32]), b.rekey(&[5; 32]));
        assert_ne!(&a.rekey(&[5; 32])[..], &[5u8; 16][..]);
        assert_eq!(format!("{a:?}"), "Pepper(<redacted>)");
    }
}
