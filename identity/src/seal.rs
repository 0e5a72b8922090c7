//! Sealing record details for forces only, in two schemes.
//!
//! **Scheme 3 (key service)**, [`seal_wrapped`] and [`open_wrapped`]: each
//! record gets a 16-byte record key of its own (synthetic: derived from its
//! details under a secret of the source's node, so unchanged details seal
//! to the same box); its details are sealed
//! with ChaCha20-Poly1305 under `blake3::derive_key("vigil record details
//! scheme v3", record key)`, and the record key is wrapped once per token of
//! the record: XORed with the first 16 bytes of
//! `BLAKE3-keyed(wrap secret, associated data ‖ kind)`, where the wrap secret
//! comes from that token's key-service output ([`WrapSecret`]). The
//! associated data binds the scheme, the epoch, the source and the record
//! reference, so a box cannot be moved to another record or presented as
//! another source's. Only a node that evaluated a match key of the record
//! holds a wrap secret that opens it; the coordinator forwards to a force
//! only the wraps of the kinds that agree. No key opens boxes in bulk.
//! A wrong unwrap is caught by the AEAD tag (a force tries its secrets of
//! the wrap's kind: one or two per kind).
//!
//! **Scheme 2 (linkage key)**, [`Sealer`]: ChaCha20-Poly1305 (ring) under a
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

use vigil_proto::KeyKind;

use crate::tokens::{LinkageKey, WrapSecret};

pub use vigil_proto::tokens::{MAX_WRAPS, WRAP_LEN as RECORD_KEY, retain_wraps};

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
        Ok(SealedDetails {
            epoch: self.epoch,
            nonce: nonce.to_vec().into(),
            ciphertext: buf.into(),
            ..Default::default()
        })
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

fn aad_v3(epoch: u32, source: &str, record_ref: &[u8]) -> Vec<u8> {
    let mut a = b"vigil sealed details scheme v3".to_vec();
    a.extend_from_slice(&epoch.to_be_bytes());
    a.extend_from_slice(&(source.len() as u32).to_be_bytes());
    a.extend_from_slice(source.as_bytes());
    a.extend_from_slice(record_ref);
    a
}

fn pad(secret: &WrapSecret, aad: &[u8], kind: KeyKind) -> [u8; RECORD_KEY] {
    let mut h = blake3::Hasher::new_keyed(secret.expose());
    h.update(aad).update(&(kind as i32).to_be_bytes());
    let mut p = [0u8; RECORD_KEY];
    p.copy_from_slice(&h.finalize().as_bytes()[..RECORD_KEY]);
    p
}

fn record_aead(record_key: &[u8; RECORD_KEY]) -> LessSafeKey {
    let k = blake3::derive_key("vigil record details scheme v3", record_key);
    match UnboundKey::new(&CHACHA20_POLY1305, &k) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("ChaCha20-Poly1305 takes 32-byte keys"),
    }
}

/// Scheme 3: seals `details` of the record `record_ref` of `source` under a
/// record key of its own, wrapped once for each `(kind, wrap secret)` of
/// the record's tokens.
///
/// The record key and nonce are synthetic: a keyed BLAKE3 of the
/// associated data and the details under `source_secret` (a secret of the
/// source's node, derived from its local secret). Different details or
/// another record get another key; the same details of the same record
/// seal to the same box, so a record sent again after an interrupted feed
/// is recognised as unchanged (no spurious amendment at the force).
pub fn seal_wrapped(
    epoch: u32,
    source: &str,
    record_ref: &[u8],
    details: &RecordDetails,
    wraps: &[(KeyKind, &WrapSecret)],
    source_secret: &[u8; 32],
) -> Result<SealedDetails, SealError> {
    if wraps.is_empty() || wraps.len() > MAX_WRAPS {
        return Err(SealError::Seal);
    }
    let aad = aad_v3(epoch, source, record_ref);
    let mut buf = details.encode_to_vec();
    let mut h = blake3::Hasher::new_keyed(source_secret);
    h.update(&(aad.len() as u32).to_be_bytes()).update(&aad).update(&buf);
    let mut synthetic = *h.finalize().as_bytes();
    let mut rk = [0u8; RECORD_KEY];
    let mut nonce = [0u8; NONCE_LEN];
    rk.copy_from_slice(&synthetic[..RECORD_KEY]);
    nonce.copy_from_slice(&synthetic[RECORD_KEY..RECORD_KEY + NONCE_LEN]);
    zeroize::Zeroize::zeroize(&mut synthetic);
    record_aead(&rk)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut buf)
        .map_err(|_| SealError::Seal)?;
    let mut packed = Vec::with_capacity(wraps.len() * RECORD_KEY);
    for (kind, secret) in wraps {
        let p = pad(secret, &aad, *kind);
        packed.extend(rk.iter().zip(p).map(|(a, b)| a ^ b));
    }
    zeroize::Zeroize::zeroize(&mut rk);
    Ok(SealedDetails {
        epoch,
        nonce: nonce.to_vec().into(),
        ciphertext: buf.into(),
        wrap_kinds: wraps.iter().map(|(k, _)| *k as i32).collect(),
        wraps: packed.into(),
    })
}

/// Scheme 3: opens details sealed for `record_ref` of `source`, with the
/// wrap secrets of the identity the caller evaluated (`candidates`): each
/// wrap is tried with the candidates of its kind.
pub fn open_wrapped(
    source: &str,
    record_ref: &[u8],
    sealed: &SealedDetails,
    candidates: &[(KeyKind, &WrapSecret)],
) -> Result<RecordDetails, SealError> {
    if sealed.wraps.len() != sealed.wrap_kinds.len() * RECORD_KEY {
        return Err(SealError::Open);
    }
    let nonce: [u8; NONCE_LEN] = sealed.nonce.as_ref().try_into().map_err(|_| SealError::Open)?;
    let aad = aad_v3(sealed.epoch, source, record_ref);
    for (i, kind) in sealed.wrap_kinds.iter().enumerate() {
        let wrap = &sealed.wraps[i * RECORD_KEY..(i + 1) * RECORD_KEY];
        for (k, secret) in candidates.iter().filter(|(k, _)| *k as i32 == *kind) {
            let p = pad(secret, &aad, *k);
            let mut rk = [0u8; RECORD_KEY];
            for (j, b) in rk.iter_mut().enumerate() {
                *b = wrap[j] ^ p[j];
            }
            let mut buf = sealed.ciphertext.to_vec();
            let opened = record_aead(&rk)
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut buf)
                .map(|plain| RecordDetails::decode(&*plain));
            zeroize::Zeroize::zeroize(&mut rk);
            if let Ok(Ok(d)) = opened {
                return Ok(d);
            }
        }
    }
    Err(SealError::Open)
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

    fn secret(b: u8) -> WrapSecret {
        WrapSecret::of_prf(&[b; 64])
    }

    #[test]
    fn scheme_3_opens_only_with_a_secret_of_an_agreeing_kind() {
        let (a, b, c) = (secret(1), secret(2), secret(3));
        let wraps = [(KeyKind::NameDob, &a), (KeyKind::Nino, &b)];
        let box_ = seal_wrapped(4, "pnc", b"ref-a", &details(), &wraps, &[7; 32]).unwrap();
        assert_eq!(box_.wraps.len(), 2 * RECORD_KEY);
        assert!(!box_.ciphertext.windows(3).any(|w| w == b"R-1"));
        // The holder of either token's secret opens it; a secret of another
        // identity, or the right secret under another kind, does not.
        assert_eq!(open_wrapped("pnc", b"ref-a", &box_, &[(KeyKind::NameDob, &a)]).unwrap(), details());
        assert_eq!(
            open_wrapped("pnc", b"ref-a", &box_, &[(KeyKind::Nino, &c), (KeyKind::Nino, &b)]).unwrap(),
            details()
        );
        assert_eq!(open_wrapped("pnc", b"ref-a", &box_, &[(KeyKind::NameDob, &c)]), Err(SealError::Open));
        assert_eq!(open_wrapped("pnc", b"ref-a", &box_, &[(KeyKind::NameYob, &a)]), Err(SealError::Open));
        // Bound to the source and the record reference.
        assert_eq!(open_wrapped("pnd", b"ref-a", &box_, &[(KeyKind::NameDob, &a)]), Err(SealError::Open));
        assert_eq!(open_wrapped("pnc", b"ref-b", &box_, &[(KeyKind::NameDob, &a)]), Err(SealError::Open));
        let mut other_epoch = box_.clone();
        other_epoch.epoch = 5;
        assert_eq!(open_wrapped("pnc", b"ref-a", &other_epoch, &[(KeyKind::NameDob, &a)]), Err(SealError::Open));
        // The same details of the same record seal to the same box; other
        // details, another record or another source secret do not.
        assert_eq!(seal_wrapped(4, "pnc", b"ref-a", &details(), &wraps, &[7; 32]).unwrap(), box_);
        let mut d2 = details();
        d2.category = "drugs".into();
        let changed = seal_wrapped(4, "pnc", b"ref-a", &d2, &wraps, &[7; 32]).unwrap();
        assert_ne!(changed.wraps, box_.wraps);
        assert_ne!(changed.nonce, box_.nonce);
        assert_ne!(seal_wrapped(4, "pnc", b"ref-b", &details(), &wraps, &[7; 32]).unwrap().wraps, box_.wraps);
        assert_ne!(seal_wrapped(4, "pnc", b"ref-a", &details(), &wraps, &[8; 32]).unwrap().wraps, box_.wraps);
        // What the coordinator forwards when only the NI number agrees.
        let mut fwd = box_.clone();
        retain_wraps(&mut fwd, |k| k == KeyKind::Nino as i32);
        assert_eq!(fwd.wrap_kinds, vec![KeyKind::Nino as i32]);
        assert_eq!(open_wrapped("pnc", b"ref-a", &fwd, &[(KeyKind::NameDob, &a)]), Err(SealError::Open));
        assert_eq!(open_wrapped("pnc", b"ref-a", &fwd, &[(KeyKind::Nino, &b)]).unwrap(), details());
        // A malformed wrap list opens nothing and is dropped when filtered.
        let mut bad = box_.clone();
        bad.wraps = vec![0u8; 5].into();
        assert_eq!(open_wrapped("pnc", b"ref-a", &bad, &[(KeyKind::NameDob, &a)]), Err(SealError::Open));
        retain_wraps(&mut bad, |_| true);
        assert!(bad.wrap_kinds.is_empty() && bad.wraps.is_empty());
        assert_eq!(seal_wrapped(4, "pnc", b"ref-a", &details(), &[], &[7; 32]), Err(SealError::Seal));
    }
}
