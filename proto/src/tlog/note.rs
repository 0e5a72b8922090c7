//! C2SP signed notes with Ed25519 (https://c2sp.org/signed-note), with the
//! semantics of Go's `golang.org/x/mod/sumdb/note`.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more
//! signature lines `— <name> <base64(key id || signature)>`. The key id is
//! the first four bytes of SHA-256(name || "\n" || 0x01 || public key).
//! Verifier keys are `<name>+<hex key id>+<base64(0x01 || public key)>`;
//! signer keys `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest::{SHA256, digest};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

const ALG_ED25519: u8 = 1;
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signatures a note may carry.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is not well formed.
    #[error("malformed note")]
    Malformed,
    /// No signature from a known key.
    #[error("note has no signature from a known key")]
    Unverified,
    /// A signature from a known key does not verify.
    #[error("invalid signature from key {0}")]
    InvalidSignature(String),
    /// A malformed verifier or signer key.
    #[error("malformed key")]
    KeyFormat,
    /// A key whose id does not match its name and key bytes.
    #[error("key id does not match the key")]
    KeyHash,
    /// A key with an algorithm other than Ed25519.
    #[error("unknown key algorithm")]
    KeyAlgorithm,
}

/// A key name is non-empty UTF-8 with no space and no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The key id of `name` and `key` (algorithm byte included).
pub fn key_id(name: &str, key: &[u8]) -> u32 {
    let mut m = Vec::with_capacity(name.len() + 1 + key.len());
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(key);
    let d = digest(&SHA256, &m);
    u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]])
}

fn chop(s: &str, sep: char) -> (&str, &str) {
    s.split_once(sep).unwrap_or((s, ""))
}

/// A verifier: a name, a key id and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    public: [u8; 32],
}

impl Verifier {
    /// Parses a verifier key `<name>+<hex id>+<base64(0x01 || key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Verifier, NoteError> {
        let (name, rest) = chop(vkey, '+');
        let (hash16, key64) = chop(rest, '+');
        let hash = u32::from_str_radix(hash16, 16).map_err(|_| NoteError::KeyFormat)?;
        let key = B64.decode(key64).map_err(|_| NoteError::KeyFormat)?;
        if hash16.len() != 8 || !hash16.bytes().all(|b| b.is_ascii_hexdigit()) || !is_valid_name(name) || key.is_empty()
        {
            return Err(NoteError::KeyFormat);
        }
        if hash != key_id(name, &key) {
            return Err(NoteError::KeyHash);
        }
        if key[0] != ALG_ED25519 {
            return Err(NoteError::KeyAlgorithm);
        }
        let public: [u8; 32] = key[1..].try_into().map_err(|_| NoteError::KeyFormat)?;
        Ok(Verifier { name: name.to_string(), key_id: hash, public })
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(k))
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public).verify(msg, sig).is_ok()
    }
}

/// A signer: a name, a key id and an Ed25519 key pair.
pub struct Signer {
    name: String,
    key_id: u32,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer {{ name: {:?}, key_id: {:08x}, key: <redacted> }}", self.name, self.key_id)
    }
}

impl Signer {
    /// Parses a signer key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_skey(skey: &str) -> Result<Signer, NoteError> {
        let rest = skey.trim().strip_prefix("PRIVATE+KEY+").ok_or(NoteError::KeyFormat)?;
        let (name, rest) = chop(rest, '+');
        let (hash16, key64) = chop(rest, '+');
        let hash = u32::from_str_radix(hash16, 16).map_err(|_| NoteError::KeyFormat)?;
        let key = B64.decode(key64).map_err(|_| NoteError::KeyFormat)?;
        if hash16.len() != 8 || !is_valid_name(name) || key.len() != 33 {
            return Err(NoteError::KeyFormat);
        }
        if key[0] != ALG_ED25519 {
            return Err(NoteError::KeyAlgorithm);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&key[1..]).map_err(|_| NoteError::KeyFormat)?;
        let mut public = vec![ALG_ED25519];
        public.extend_from_slice(pair.public_key().as_ref());
        if key_id(name, &public) != hash {
            return Err(NoteError::KeyHash);
        }
        Ok(Signer { name: name.to_string(), key_id: hash, pair })
    }

    /// A signer from a 32-byte seed, and its signer key string.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<(Signer, String), NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::KeyFormat);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::KeyFormat)?;
        let mut public = vec![ALG_ED25519];
        public.extend_from_slice(pair.public_key().as_ref());
        let id = key_id(name, &public);
        let mut s = vec![ALG_ED25519];
        s.extend_from_slice(seed);
        let skey = format!("PRIVATE+KEY+{name}+{id:08x}+{}", B64.encode(s));
        Ok((Signer { name: name.to_string(), key_id: id, pair }, skey))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier for this signer.
    pub fn verifier(&self) -> Verifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        Verifier { name: self.name.clone(), key_id: self.key_id, public }
    }

    /// The signature line for `text`.
    pub fn signature_line(&self, text: &str) -> String {
        let sig = self.pair.sign(text.as_bytes());
        let mut b = self.key_id.to_be_bytes().to_vec();
        b.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(b))
    }

    /// A signed note of `text` (which must end in a newline).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || !valid_text(text.as_bytes()) {
            return Err(NoteError::Malformed);
        }
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }
}

/// A signature found on a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// The base64 signature as written.
    pub base64: String,
}

/// An opened note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Signatures from known keys, each verified (one per key).
    pub verified: Vec<Signature>,
    /// Signatures from unknown keys (not checked).
    pub unverified: Vec<Signature>,
}

fn valid_text(msg: &[u8]) -> bool {
    match std::str::from_utf8(msg) {
        Ok(s) => !s.chars().any(|c| (c as u32) < 0x20 && c != '\n'),
        Err(_) => false,
    }
}

/// Opens a signed note, verifying every signature from a known key. Fails
/// if the note is malformed, if a known key's signature does not verify, or
/// if no known key signed it.
pub fn open(msg: &[u8], known: &[Verifier]) -> Result<Note, NoteError> {
    if !valid_text(msg) {
        return Err(NoteError::Malformed);
    }
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
    let split = msg.rfind("\n\n").ok_or(NoteError::Malformed)?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed);
    }
    let mut verified: Vec<Signature> = Vec::new();
    let mut unverified: Vec<Signature> = Vec::new();
    let mut seen_unverified: Vec<&str> = Vec::new();
    let mut count = 0;
    for line in sigs[..sigs.len() - 1].split('\n') {
        let body = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed)?;
        let (name, b64) = chop(body, ' ');
        let sig = B64.decode(b64).map_err(|_| NoteError::Malformed)?;
        if !is_valid_name(name) || b64.is_empty() || sig.len() < 5 {
            return Err(NoteError::Malformed);
        }
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(NoteError::Malformed);
        }
        let id = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
        let signature = Signature { name: name.to_string(), key_id: id, base64: b64.to_string() };
        match known.iter().find(|v| v.name == name && v.key_id == id) {
            None => {
                if !seen_unverified.contains(&body) {
                    seen_unverified.push(body);
                    unverified.push(signature);
                }
            }
            Some(v) => {
                if !v.verify(text.as_bytes(), &sig[4..]) {
                    return Err(NoteError::InvalidSignature(name.to_string()));
                }
                if !verified.iter().any(|s| s.name == name && s.key_id == id) {
                    verified.push(signature);
                }
            }
        }
    }
    if verified.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(Note { text: text.to_string(), verified, unverified })
}
