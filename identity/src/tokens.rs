//! Keys and tokens: the linkage key of an epoch, the node-local secret, and
//! what is computed from them. Pure: key files are read and written in
//! the node (`vigil-node`, module `keyfile`).
//!
//! - A token is `BLAKE3-keyed(subkey(kind, epoch), key bytes)`, 32 bytes, where
//!   `subkey = blake3::derive_key("vigil match-key scheme v1 kind <kind> epoch <epoch>", linkage key)`.
//! - A subject pseudonym is the first 16 bytes of
//!   `BLAKE3-keyed(derive_key("vigil subject pseudonym v1", local secret), employee_id)`:
//!   stable across epochs, computable only by the force that holds the secret.
//! - A record reference is the first 16 bytes of
//!   `BLAKE3-keyed(derive_key("vigil record reference v1", local secret), source 0x1F record_id)`.

use std::fmt;
use vigil_proto::kinds::{ALL, KindSet};
use vigil_proto::{KeyKind, Token};

use crate::keys::{Identity, match_keys};

/// Length of subject pseudonyms and record references, in bytes.
pub const REF_LEN: usize = 16;

/// An opaque 16-byte reference: a subject pseudonym or a record reference.
pub type Ref = [u8; REF_LEN];

/// The linkage key of one epoch, shared by every node and never by the
/// coordinator. Its `Debug` form does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkageKey {
    /// Epoch number (starts at 1; a new epoch means a new key).
    pub epoch: u32,
    key: [u8; 32],
}

impl LinkageKey {
    /// Wraps key material for an epoch.
    pub fn new(epoch: u32, key: [u8; 32]) -> LinkageKey {
        LinkageKey { epoch, key }
    }

    /// The raw key (for writing the key file).
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }

    /// Derives a 32-byte key for `purpose` under this linkage key.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key)
    }
}

impl fmt::Debug for LinkageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkageKey {{ epoch: {}, key: <redacted> }}", self.epoch)
    }
}

/// A node-local secret: names subjects and records. Never leaves the node.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalSecret([u8; 32]);

impl LocalSecret {
    /// Wraps secret material.
    pub fn new(secret: [u8; 32]) -> LocalSecret {
        LocalSecret(secret)
    }

    /// The raw secret (for writing the key file).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The pseudonym of an employee number.
    pub fn subject_pseudonym(&self, employee_id: &str) -> Ref {
        let k = blake3::derive_key("vigil subject pseudonym v1", &self.0);
        truncate(blake3::keyed_hash(&k, employee_id.as_bytes()))
    }

    /// The opaque reference of a national record.
    pub fn record_ref(&self, source: &str, record_id: &str) -> Ref {
        let k = blake3::derive_key("vigil record reference v1", &self.0);
        let mut h = blake3::Hasher::new_keyed(&k);
        h.update(source.as_bytes()).update(&[crate::keys::SEP]).update(record_id.as_bytes());
        truncate(h.finalize())
    }

    /// A pseudonym for an applicant of a pre-employment check: distinct from
    /// every subject pseudonym and from every other check.
    pub fn applicant_ref(&self, request_id: &str, applicant_id: &str) -> Ref {
        let k = blake3::derive_key("vigil applicant reference v1", &self.0);
        let mut h = blake3::Hasher::new_keyed(&k);
        h.update(request_id.as_bytes()).update(&[crate::keys::SEP]).update(applicant_id.as_bytes());
        truncate(h.finalize())
    }
}

impl fmt::Debug for LocalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalSecret(<redacted>)")
    }
}

fn truncate(h: blake3::Hash) -> Ref {
    let mut r = [0u8; REF_LEN];
    r.copy_from_slice(&h.as_bytes()[..REF_LEN]);
    r
}

/// Turns identities into tokens under one epoch's linkage key.
#[derive(Clone)]
pub struct Tokenizer {
    epoch: u32,
    subkeys: [[u8; 32]; ALL.len()],
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokenizer {{ epoch: {}, subkeys: <redacted> }}", self.epoch)
    }
}

/// The key-derivation context of a kind's subkey.
pub fn subkey_context(kind: KeyKind, epoch: u32) -> String {
    format!("vigil match-key scheme v{} kind {} epoch {epoch}", vigil_proto::kinds::SCHEME_VERSION, kind.short_name())
}

impl Tokenizer {
    /// Derives the per-kind subkeys of `key`'s epoch.
    pub fn new(key: &LinkageKey) -> Tokenizer {
        let mut subkeys = [[0u8; 32]; ALL.len()];
        for k in ALL {
            subkeys[k.index()] = key.derive(&subkey_context(k, key.epoch));
        }
        Tokenizer { epoch: key.epoch, subkeys }
    }

    /// The epoch these tokens belong to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The token of one match key.
    pub fn token(&self, kind: KeyKind, key_bytes: &[u8]) -> Token {
        *blake3::keyed_hash(&self.subkeys[kind.index()], key_bytes).as_bytes()
    }

    /// Every distinct token of an identity, appended to `out` (cleared first),
    /// in key order. Returns the kinds present.
    pub fn tokens(&self, id: &Identity, out: &mut Vec<(KeyKind, Token)>) -> KindSet {
        out.clear();
        let mut kinds = KindSet::EMPTY;
        match_keys(id, |kind, bytes| {
            let t = self.token(kind, bytes);
            if !out.iter().any(|(k, x)| *k == kind && *x == t) {
                out.push((kind, t));
                kinds.insert(kind);
            }
        });
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Phonetic, RawIdentity};
    use vigil_proto::hex;

    fn vector_key() -> LinkageKey {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        LinkageKey::new(1, k)
    }

    /// The fixed test vector of scheme v1. If this fails, normalisation,
    /// match keys or the token format changed: every deployed token would
    /// change with it, which needs a new scheme version and a new epoch.
    #[test]
    fn fixed_token_vector() {
        let raw = RawIdentity {
            forenames: "Dr Zoë Anne",
            surname: "O'Brien-Smith",
            previous_surnames: "Kowalska",
            date_of_birth: "1984-07-02",
            ni_number: "ab 12 34 56 c",
            postcode: "ls1 4ap",
            ..Default::default()
        };
        let mut issues = Vec::new();
        let id = Identity::from_raw(&raw, &mut Phonetic::default(), &mut issues);
        assert!(issues.is_empty());
        let tk = Tokenizer::new(&vector_key());
        let mut got = Vec::new();
        crate::keys::match_keys(&id, |k, b| {
            let line = format!(
                "{} {} {}",
                k.short_name(),
                String::from_utf8_lossy(b).replace('\u{1f}', "|"),
                hex::encode(&tk.token(k, b))
            );
            if !got.contains(&line) {
                got.push(line);
            }
        });
        let want: Vec<&str> = TOKEN_VECTOR.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(got, want, "token vector changed:\n{}", got.join("\n"));
        let mut toks = Vec::new();
        tk.tokens(&id, &mut toks);
        let distinct: std::collections::HashSet<_> = got.iter().map(|l| l.rsplit(' ').next()).collect();
        assert_eq!(toks.len(), distinct.len());
    }

    /// `kind key-bytes (0x1F shown as |) token-hex`, linkage key 00 01 .. 1f, epoch 1.
    const TOKEN_VECTOR: &str = "
        nino AB123456 da8ede8d7ce0bf16d4cb74217b0177da95e6786252d01fc380fa46ff3c7f04d7
        name_dob zoe|obriensmith|1984-07-02 01261aa89525fc094ba40fc4e47588cd142c94986929cf0f87dd0ee1db241771
        canon_name_dob zoe|obriensmith|1984-07-02 085093049c59d3fcc2b720103530016886c9ef2c5defef0b06ed3e9a14569e13
        initial_surname_dob z|obriensmith|1984-07-02 ca4f937ede86f59fc61499fe6cf845f1d51ba1f7ff14de750efa353b8822b990
        phonetic_dob S|APRN|1984-07-02 fda579e90a42f1d41cd2c4432816fdbae42ae5eb87d01c2c8862320c9635194b
        name_pair_dob obriensmith|zoe|1984-07-02 6af4c698057a34400125a36e1c18c7dc8eb81afa6baed3db7718be7b5ef4da9f
        name_dob_unordered zoe|obriensmith|1984|02|07 68135ee9df0930d3b9ecd681b0845a1b026a6eaf066533b30c6844ff99789cf4
        forename_dob zoe|1984-07-02 e4b31bc3268cc18a2ec92f7395582d1d7debb2f5e994b885d261cf2370550a9b
        name_yob_district obriensmith|zoe|1984|LS1 0d78b7b2b931cd70925bd0d7d8a8a29cb15d3ef18d0f2527f5bbe33a7e639703
        name_dob zoe|obrien|1984-07-02 28642bef0acb37980de434a1e90ad39190a24dbccec57ccc49e64ede142404d4
        canon_name_dob zoe|obrien|1984-07-02 b02ea56baf99451f363df6daaa13deb55c4774c42dd378e2d0d0465e1d6685ae
        initial_surname_dob z|obrien|1984-07-02 f03b573a72a1bc10c92700e6f212be2f05ed9593d6f2afcdd1d45866dfbf812b
        name_pair_dob obrien|zoe|1984-07-02 bed90dd9d63f1c1e042a5563fa2a057ad633d870b5536ec5d2bb68755f2e375e
        name_dob_unordered zoe|obrien|1984|02|07 5cb196c25e48ba29a52fdad8eca52e4dc99d7d071c4afe528b98f198e409b3bb
        name_yob_district obrien|zoe|1984|LS1 7b808f470bfeb0c52e7c816984e232177250523ee05efde510227a2510fb2a3f
        name_dob zoe|smith|1984-07-02 558d335605856117d8962a57c30f89002012575f4d83220bfd1d7f184ca6ed2f
        canon_name_dob zoe|smith|1984-07-02 f9353ae37ff06e3839d947e9a81e5caa7800408ef8d01b1ac1abd21d5102c081
        initial_surname_dob z|smith|1984-07-02 4c16435297a04ec2277b47cfe2cad1c51dbacff83ed5ba0eee01c6af264783f6
        phonetic_dob S|SM0|1984-07-02 13c5e4ab2a15f629c333659d0e17a0dda0a94d6cda61fbadd0fe103f99fa534a
        name_pair_dob smith|zoe|1984-07-02 d5ee1c350c5d2b26a33ff43af03613ad67057339192ce023bf3495bcfe18dfc1
        name_dob_unordered zoe|smith|1984|02|07 0eaabfc813549d117c7e2aab309dd73af99db88a6cd43ed8d079c40250a79a94
        name_yob_district smith|zoe|1984|LS1 7a24331fcf252766427778f54127403f32b2085e3b1b5187c5a2a6f1fe2c8b58
        name_dob zoe|kowalska|1984-07-02 bfc9e59aef06e60ca96e8ad7c5e74b5b97ab9b3a1e32f55dc78976cd77cfa4dc
        canon_name_dob zoe|kowalska|1984-07-02 d319ee7e3a51d321ae24245d12c92aa1b52fe1fed55b13055c3316e728077f5c
        initial_surname_dob z|kowalska|1984-07-02 6996726e2d26e67824ec23fcb3209b12c1d24dc37732ace6fb6b96ed26b39f5c
        phonetic_dob S|KLSK|1984-07-02 06529aaf142d7a645c88e5ec5fef1e1a2fc02963d8ba8ae13e3c4b5402ae9edc
        name_pair_dob kowalska|zoe|1984-07-02 0726941bad6e179db56142596ce4eeb47aa8370f4f557b5b10411d1c35f13a5c
        name_dob_unordered zoe|kowalska|1984|02|07 52e429b77e21c4700ff23caf823c6739d84dd8411a7d543f493a488e133af841
        name_yob_district kowalska|zoe|1984|LS1 de0864f5d5b85e51949ab8669fcf5bb6b886c340cc5810474f38c322d342f7b4
    ";

    #[test]
    fn subkeys_differ_by_kind_and_epoch() {
        let k1 = Tokenizer::new(&vector_key());
        let k2 = Tokenizer::new(&LinkageKey::new(2, *vector_key().expose()));
        assert_ne!(k1.token(KeyKind::NameDob, b"x"), k1.token(KeyKind::CanonNameDob, b"x"));
        assert_ne!(k1.token(KeyKind::NameDob, b"x"), k2.token(KeyKind::NameDob, b"x"));
        assert_eq!(subkey_context(KeyKind::NameDob, 7), "vigil match-key scheme v1 kind name_dob epoch 7");
    }

    #[test]
    fn references_are_stable_and_keyed() {
        let a = LocalSecret::new([1; 32]);
        let b = LocalSecret::new([2; 32]);
        assert_eq!(a.subject_pseudonym("E1001"), a.subject_pseudonym("E1001"));
        assert_ne!(a.subject_pseudonym("E1001"), b.subject_pseudonym("E1001"));
        assert_ne!(a.record_ref("pnc", "1"), a.record_ref("pnd", "1"));
        assert_ne!(a.applicant_ref("r1", "A1"), a.applicant_ref("r2", "A1"));
    }

    #[test]
    fn debug_forms_hide_secrets() {
        let k = vector_key();
        assert!(!format!("{k:?}").contains("0, 1, 2"));
        assert_eq!(format!("{:?}", LocalSecret::new([7; 32])), "LocalSecret(<redacted>)");
        assert!(format!("{:?}", Tokenizer::new(&k)).contains("redacted"));
    }
}
