//! C2SP witness cosignatures (https://c2sp.org/tlog-cosignature),
//! `cosignature/v1` with Ed25519.
//!
//! A cosignature is a note signature line on a checkpoint:
//! `— <witness name> base64(key id || timestamp || signature)`, where the
//! key id is the first four bytes of SHA-256(name || "\n" || 0x04 || public
//! key), the timestamp is the signing time in POSIX seconds (8 bytes, big
//! endian), and the Ed25519 signature covers
//! `cosignature/v1\ntime <timestamp>\n` followed by the whole checkpoint
//! body. It states that, at that time, this was the largest tree the
//! witness had seen of the log and that it was consistent with every
//! earlier one the witness saw.
//!
//! Witness keys use the signed-note key encodings with algorithm byte 0x04:
//! verifier `<name>+<hex id>+<base64(0x04 || key)>`, signer
//! `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::note::{self, NoteError, Verifier, is_valid_name, key_id};

/// The signed-note algorithm byte of an Ed25519 cosignature/v1 key.
pub const ALG_COSIGNATURE_V1: u8 = 4;
const SIG_PREFIX: &str = "\u{2014} ";

fn message(body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

fn split_key(s: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let (name, rest) = s.split_once('+').ok_or(NoteError::KeyFormat)?;
    let (hash16, key64) = rest.split_once('+').ok_or(NoteError::KeyFormat)?;
    if hash16.len() != 8 || !hash16.bytes().all(|b| b.is_ascii_hexdigit()) || !is_valid_name(name) {
        return Err(NoteError::KeyFormat);
    }
    let id = u32::from_str_radix(hash16, 16).map_err(|_| NoteError::KeyFormat)?;
    let key = B64.decode(key64).map_err(|_| NoteError::KeyFormat)?;
    if key.len() != 33 {
        return Err(NoteError::KeyFormat);
    }
    if key[0] != ALG_COSIGNATURE_V1 {
        return Err(NoteError::KeyAlgorithm);
    }
    Ok((name, id, key))
}

/// A witness's verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKey {
    /// The witness's name, as on its signature lines.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    public: [u8; 32],
}

impl WitnessKey {
    /// Parses `<name>+<hex id>+<base64(0x04 || key)>`.
    pub fn from_vkey(vkey: &str) -> Result<WitnessKey, NoteError> {
        let (name, id, key) = split_key(vkey.trim())?;
        if id != key_id(name, &key) {
            return Err(NoteError::KeyHash);
        }
        let public: [u8; 32] = key[1..].try_into().map_err(|_| NoteError::KeyFormat)?;
        Ok(WitnessKey { name: name.to_string(), key_id: id, public })
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        let mut k = vec![ALG_COSIGNATURE_V1];
        k.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(k))
    }

    /// The cosignature's time if `sig` (the decoded signature line after the
    /// key id: timestamp then signature) is this witness's over `body`.
    pub fn verify(&self, body: &str, sig: &[u8]) -> Option<u64> {
        if sig.len() != 72 {
            return None;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().ok()?);
        if time > i64::MAX as u64 {
            return None;
        }
        UnparsedPublicKey::new(&ED25519, &self.public).verify(&message(body, time), &sig[8..]).ok()?;
        Some(time)
    }

    /// The cosignature's time if `line` (`— <name> <base64>`, with or
    /// without its newline) is this witness's valid cosignature of `body`.
    pub fn verify_line(&self, body: &str, line: &str) -> Option<u64> {
        let rest = line.strip_suffix('\n').unwrap_or(line).strip_prefix(SIG_PREFIX)?;
        let (name, b64) = rest.split_once(' ')?;
        let b = B64.decode(b64).ok()?;
        if name != self.name || b.len() < 4 || b[..4] != self.key_id.to_be_bytes() {
            return None;
        }
        self.verify(body, &b[4..])
    }

    /// Finds and verifies this witness's cosignature among a signed note's
    /// signature lines; the cosignature's time if there is a valid one.
    pub fn find(&self, body: &str, signatures: &[note::Signature]) -> Option<u64> {
        signatures.iter().filter(|s| s.name == self.name && s.key_id == self.key_id).find_map(|s| {
            let b = B64.decode(&s.base64).ok()?;
            if b.get(..4)? != self.key_id.to_be_bytes() {
                return None;
            }
            self.verify(body, &b[4..])
        })
    }
}

/// A witness's signing key.
pub struct WitnessSigner {
    name: String,
    key_id: u32,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessSigner {{ name: {:?}, key_id: {:08x}, key: <redacted> }}", self.name, self.key_id)
    }
}

impl WitnessSigner {
    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`.
    pub fn from_skey(skey: &str) -> Result<WitnessSigner, NoteError> {
        let rest = skey.trim().strip_prefix("PRIVATE+KEY+").ok_or(NoteError::KeyFormat)?;
        let (name, id, seed) = split_key(rest)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[1..]).map_err(|_| NoteError::KeyFormat)?;
        let s = WitnessSigner { name: name.to_string(), key_id: id, pair };
        if key_id(name, &s.public_key_bytes()) != id {
            return Err(NoteError::KeyHash);
        }
        Ok(s)
    }

    /// A signer from a 32-byte seed, and its signer key string.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<(WitnessSigner, String), NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::KeyFormat);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::KeyFormat)?;
        let mut s = WitnessSigner { name: name.to_string(), key_id: 0, pair };
        s.key_id = key_id(name, &s.public_key_bytes());
        let mut k = vec![ALG_COSIGNATURE_V1];
        k.extend_from_slice(seed);
        let skey = format!("PRIVATE+KEY+{name}+{:08x}+{}", s.key_id, B64.encode(k));
        Ok((s, skey))
    }

    fn public_key_bytes(&self) -> Vec<u8> {
        let mut k = vec![ALG_COSIGNATURE_V1];
        k.extend_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// The witness's verifier key.
    pub fn verifier(&self) -> WitnessKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        WitnessKey { name: self.name.clone(), key_id: self.key_id, public }
    }

    /// The cosignature line for checkpoint `body` at `time` (POSIX seconds).
    pub fn cosign(&self, body: &str, time: u64) -> String {
        let sig = self.pair.sign(&message(body, time));
        let mut b = self.key_id.to_be_bytes().to_vec();
        b.extend_from_slice(&time.to_be_bytes());
        b.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(b))
    }
}

/// Why a cosigned checkpoint falls short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// The log's own signature is missing or wrong.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Fewer valid cosignatures from configured witnesses than required.
    #[error("cosigned by {found} of the configured witnesses ({names}), {needed} required")]
    Short {
        /// Valid cosignatures found.
        found: usize,
        /// How many are required.
        needed: usize,
        /// Who cosigned.
        names: String,
    },
}

/// Opens a checkpoint note signed by `log` and checks that at least
/// `needed` of `witnesses` cosigned it. Returns the body and the names of
/// the witnesses whose cosignatures verify. A line that claims a configured
/// witness's name and key id but does not verify is not counted.
pub fn open_cosigned(
    signed: &str,
    log: &Verifier,
    witnesses: &[WitnessKey],
    needed: usize,
) -> Result<(String, Vec<String>), QuorumError> {
    let n = note::open(signed.as_bytes(), std::slice::from_ref(log))?;
    let names: Vec<String> =
        witnesses.iter().filter(|w| w.find(&n.text, &n.unverified).is_some()).map(|w| w.name.clone()).collect();
    if names.len() < needed {
        return Err(QuorumError::Short { found: names.len(), needed, names: names.join(", ") });
    }
    Ok((n.text, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::Signer;

    const BODY: &str = "vigil.test/audit\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    /// The C2SP key id for cosignatures hashes the algorithm byte 0x04, so a
    /// witness key and a log key with the same name and bytes differ.
    #[test]
    fn keys_round_trip_with_algorithm_four() {
        let (s, skey) = WitnessSigner::from_seed("witness.test/w1", &[7; 32]).unwrap();
        let v = s.verifier();
        assert_eq!(WitnessKey::from_vkey(&v.vkey()).unwrap(), v);
        assert_eq!(WitnessSigner::from_skey(&skey).unwrap().verifier(), v);
        let raw = B64.decode(v.vkey().rsplit('+').next().unwrap()).unwrap();
        assert_eq!(raw[0], 4);
        let (log, _) = Signer::from_seed("witness.test/w1", &[7; 32]).unwrap();
        assert_ne!(log.verifier().key_id, v.key_id);
        // A log (0x01) key is not a witness key, nor the other way round.
        assert_eq!(WitnessKey::from_vkey(&log.verifier().vkey()), Err(NoteError::KeyAlgorithm));
        assert_eq!(Verifier::from_vkey(&v.vkey()), Err(NoteError::KeyAlgorithm));
    }

    /// The signed message is `cosignature/v1`, the time line, the body.
    #[test]
    fn signs_the_c2sp_message() {
        let (s, _) = WitnessSigner::from_seed("witness.test/w1", &[7; 32]).unwrap();
        let line = s.cosign(BODY, 1_679_315_147);
        let b = B64.decode(line.trim_end().rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(b.len(), 4 + 8 + 64);
        assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), s.verifier().key_id);
        assert_eq!(u64::from_be_bytes(b[4..12].try_into().unwrap()), 1_679_315_147);
        let msg = "cosignature/v1\ntime 1679315147\n".to_string() + BODY;
        let public = s.pair.public_key().as_ref().to_vec();
        assert!(UnparsedPublicKey::new(&ED25519, &public).verify(msg.as_bytes(), &b[12..]).is_ok());
        assert_eq!(s.verifier().verify(BODY, &b[4..]), Some(1_679_315_147));
        assert_eq!(s.verifier().verify(&BODY.replace('5', "6"), &b[4..]), None);
    }

    /// k of n: counts only valid cosignatures of configured witnesses.
    #[test]
    fn quorum_counts_valid_cosignatures_of_configured_witnesses() {
        let (log, _) = Signer::from_seed("vigil.test/audit", &[1; 32]).unwrap();
        let w: Vec<WitnessSigner> =
            (0..3).map(|i| WitnessSigner::from_seed(&format!("witness.test/w{i}"), &[10 + i; 32]).unwrap().0).collect();
        let keys: Vec<WitnessKey> = w.iter().map(WitnessSigner::verifier).collect();
        let (stranger, _) = WitnessSigner::from_seed("witness.test/stranger", &[99; 32]).unwrap();
        let signed = log.sign(BODY).unwrap();
        let with = |lines: &[String]| format!("{signed}{}", lines.concat());
        let c0 = w[0].cosign(BODY, 100);
        let c1 = w[1].cosign(BODY, 101);
        // A cosignature of another body, under w2's name and key id.
        let forged = w[2].cosign(&BODY.replace('5', "6"), 102);
        let note = with(&[c0.clone(), c1.clone(), forged, stranger.cosign(BODY, 103)]);
        let (body, names) = open_cosigned(&note, &log.verifier(), &keys, 2).unwrap();
        assert_eq!(body, BODY);
        assert_eq!(names, ["witness.test/w0", "witness.test/w1"]);
        assert!(matches!(
            open_cosigned(&note, &log.verifier(), &keys, 3),
            Err(QuorumError::Short { found: 2, needed: 3, .. })
        ));
        // Without the log's own signature nothing counts.
        let (other_log, _) = Signer::from_seed("vigil.test/audit", &[2; 32]).unwrap();
        assert!(open_cosigned(&with(&[c0, c1]), &other_log.verifier(), &keys, 1).is_err());
        assert!(open_cosigned(&signed, &log.verifier(), &keys, 0).is_ok());
    }
}
