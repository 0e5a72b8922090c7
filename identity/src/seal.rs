//! Sealing record details for forces only: ChaCha20-Poly1305 (ring) under a
//! key derived from the epoch's linkage key, with the record reference as
//! associated data so a sealed box cannot be moved to another record.
//!
//! The nonce is synthetic: the first 12 bytes of a keyed BLAKE3 of the
//! reference and the plaintext, under a second key derived from the linkage
//! key (as in SIV modes). Different details always get different nonces.
//! The same details for the same record seal to the same box, so re-sending
//! an unchanged record is recognised as unchanged. The only thing this
//! reveals is whether a record's details changed, and the coordinator learns
//! that from its tokens anyway.

use prost::Message;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use vigil_proto::v1::{RecordDetails, SealedDetails};

use crate::tokens::LinkageKey;

/// Why a sealed box could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// Sealed under an epoch this node has no key for.
    #[error("sealed under epoch {0}, for which this node holds no linkage key")]
    UnknownEpoch(u32),
    /// The box is malformed, was tampered with, or belongs to another record.
    #[error("sealed details do not open (tampered, or not for this record)")]
    Open,
    /// Sealing failed (should not happen with a valid key).
    #[error("sealing failed")]
    Seal,
}

/// Seals and opens record details under one epoch's linkage key.
pub struct Sealer {
    epoch: u32,
    key: LessSafeKey,
    nonce_key: [u8; 32],
}

/// The nonce key is overwritten when the sealer is dropped (ring's AEAD key
/// is its own).
impl Drop for Sealer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.nonce_key);
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer {{ epoch: {}, key: <redacted> }}", self.epoch)
    }
}

const AAD_PREFIX: &[u8] = b"vigil sealed details v1";

impl Sealer {
    /// The sealer of `key`'s epoch.
    pub fn new(key: &LinkageKey) -> Sealer {
        let k = key.derive(&format!("vigil record-details seal v1 epoch {}", key.epoch));
        let key_obj = UnboundKey::new(&CHACHA20_POLY1305, &k).map(LessSafeKey::new);
        // 32 bytes is always the right length for ChaCha20-Poly1305.
        let key_obj = match key_obj {
            Ok(k) => k,
            Err(_) => unreachable!("ChaCha20-Poly1305 takes 32-byte keys"),
        };
        let nonce_key = key.derive(&format!("vigil record-details nonce v1 epoch {}", key.epoch));
        Sealer { epoch: key.epoch, key: key_obj, nonce_key }
    }

    fn aad(record_ref: &[u8]) -> Vec<u8> {
        let mut a = AAD_PREFIX.to_vec();
        a.extend_from_slice(record_ref);
        a
    }

    /// The epoch this sealer belongs to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Seals `details` for the record named `record_ref`.
    pub fn seal(&self, record_ref: &[u8], details: &RecordDetails) -> Result<SealedDetails, SealError> {
        let mut buf = details.encode_to_vec();
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&(record_ref.len() as u32).to_be_bytes()).update(record_ref).update(&buf);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(Self::aad(record_ref)), &mut buf)
            .map_err(|_| SealError::Seal)?;
        Ok(SealedDetails { epoch: self.epoch, nonce: nonce.to_vec().into(), ciphertext: buf.into() })
    }

    /// Opens details sealed for `record_ref`.
    pub fn open(&self, record_ref: &[u8], sealed: &SealedDetails) -> Result<RecordDetails, SealError> {
        if sealed.epoch != self.epoch {
            return Err(SealError::UnknownEpoch(sealed.epoch));
        }
        let nonce: [u8; NONCE_LEN] = sealed.nonce.as_ref().try_into().map_err(|_| SealError::Open)?;
        let mut buf = sealed.ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(Self::aad(record_ref)), &mut buf)
            .map_err(|_| SealError::Open)?;
        RecordDetails::decode(&*plain).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> RecordDetails {
        RecordDetails {
            source: "pnc".into(),
            record_id: "R-1".into(),
            category: "violence".into(),
            event_date: "2021-01-02".into(),
        }
    }

    #[test]
    fn seal_and_open() {
        let s = Sealer::new(&LinkageKey::new(1, [9; 32]));
        let box_ = s.seal(b"ref-a", &details()).unwrap();
        assert_eq!(s.open(b"ref-a", &box_).unwrap(), details());
        assert!(!box_.ciphertext.windows(3).any(|w| w == b"R-1"));
        // Unchanged details seal to the same box; changed ones do not, and
        // get a different nonce.
        assert_eq!(s.seal(b"ref-a", &details()).unwrap(), box_);
        let mut d2 = details();
        d2.category = "drugs".into();
        let other = s.seal(b"ref-a", &d2).unwrap();
        assert_ne!(other.nonce, box_.nonce);
        assert_ne!(s.seal(b"ref-b", &details()).unwrap().nonce, box_.nonce);
    }

    #[test]
    fn refuses_other_record_other_key_other_epoch_and_tampering() {
        let s = Sealer::new(&LinkageKey::new(1, [9; 32]));
        let box_ = s.seal(b"ref-a", &details()).unwrap();
        assert_eq!(s.open(b"ref-b", &box_), Err(SealError::Open));
        assert_eq!(Sealer::new(&LinkageKey::new(1, [8; 32])).open(b"ref-a", &box_), Err(SealError::Open));
        assert_eq!(Sealer::new(&LinkageKey::new(2, [9; 32])).open(b"ref-a", &box_), Err(SealError::UnknownEpoch(1)));
        let mut t = box_.clone();
        let mut c = t.ciphertext.to_vec();
        c[0] ^= 1;
        t.ciphertext = c.into();
        assert_eq!(s.open(b"ref-a", &t), Err(SealError::Open));
    }
}
