//! Keys and tokens: the linkage key of an epoch, the node-local secret, and
//! what is computed from them. Pure: key files are read and written in
//! the node (`vigil-node`, module `keyfile`).
//!
//! - A token is `BLAKE3-keyed(subkey(kind, epoch), key bytes)`, 32 bytes, where
//!   `subkey = blake3::derive_key("vigil match-key scheme v2 kind <kind> epoch <epoch>", linkage key)`
//!   (the scheme version is `vigil_proto::kinds::SCHEME_VERSION`).
//! - Scheme 3 (key service): the node sends each match key blinded to the
//!   key service and unblinds the RFC 9497 POPRF output `y` (64 bytes, its
//!   public input binds kind and epoch). The token is
//!   `blake3::derive_key("vigil token scheme v3", y)` ([`token_of_prf`]) and
//!   the secret that wraps record keys is
//!   `blake3::derive_key("vigil record-key wrap scheme v3", y)`
//!   ([`WrapSecret::of_prf`]). Neither reveals the other or `y`.
//! - A subject pseudonym is the first 16 bytes of
//!   `BLAKE3-keyed(derive_key("vigil subject pseudonym v1", local secret), employee_id)`:
//!   stable across epochs, computable only by the force that holds the secret.
//! - A record reference is the first 16 bytes of
//!   `BLAKE3-keyed(derive_key("vigil record reference v1", local secret), source 0x1F record_id)`.

use std::fmt;
use vigil_proto::kinds::{ALL, KindSet};
use vigil_proto::{KeyKind, Token};

use crate::keys::{Identity, match_keys};

/// A 32-byte secret newtype: overwritten when dropped, `Debug` shows only
/// its name.
macro_rules! secret_bytes {
    ($t:ident) => {
        impl Drop for $t {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.0);
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($t))
            }
        }
    };
}

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

/// Key material is overwritten when the key is dropped (so are clones).
impl Drop for LinkageKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
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

secret_bytes!(LocalSecret);

fn truncate(h: blake3::Hash) -> Ref {
    let mut r = [0u8; REF_LEN];
    r.copy_from_slice(&h.as_bytes()[..REF_LEN]);
    r
}

/// Bytes of a key-service (POPRF) output.
pub const PRF_OUTPUT: usize = 64;

/// Scheme 3: the token of a match key from its key-service output.
pub fn token_of_prf(output: &[u8; PRF_OUTPUT]) -> Token {
    blake3::derive_key("vigil token scheme v3", output)
}

/// Scheme 3: the secret under which a source wraps a record's key for one
/// of its tokens, and with which a force that evaluated the same match key
/// unwraps it (`crate::seal`). Zeroised on drop; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WrapSecret([u8; 32]);

impl WrapSecret {
    /// The wrap secret of a match key from its key-service output.
    pub fn of_prf(output: &[u8; PRF_OUTPUT]) -> WrapSecret {
        WrapSecret(blake3::derive_key("vigil record-key wrap scheme v3", output))
    }

    /// From stored bytes (a force keeps its staff's wrap secrets).
    pub fn from_bytes(b: [u8; 32]) -> WrapSecret {
        WrapSecret(b)
    }

    /// The secret's bytes, to store or to key a hash.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

secret_bytes!(WrapSecret);

/// Every distinct match key of an identity, in key order: what a scheme-3
/// node sends (blinded) to the key service.
pub fn distinct_match_keys(id: &Identity) -> Vec<(KeyKind, Vec<u8>)> {
    let mut out: Vec<(KeyKind, Vec<u8>)> = Vec::new();
    match_keys(id, |kind, bytes| {
        if !out.iter().any(|(k, b)| *k == kind && b == bytes) {
            out.push((kind, bytes.to_vec()));
        }
    });
    out
}

/// Turns identities into tokens under one epoch's linkage key.
#[derive(Clone)]
pub struct Tokenizer {
    epoch: u32,
    subkeys: [[u8; 32]; ALL.len()],
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        for k in &mut self.subkeys {
            zeroize::Zeroize::zeroize(k);
        }
    }
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

    /// Secret material is overwritten when it goes out of scope: every type
    /// holding it has drop glue (plain arrays have none).
    #[test]
    fn secrets_are_zeroised_on_drop() {
        assert!(std::mem::needs_drop::<LinkageKey>());
        assert!(std::mem::needs_drop::<LocalSecret>());
        assert!(std::mem::needs_drop::<Tokenizer>());
        assert!(std::mem::needs_drop::<WrapSecret>());
        assert!(std::mem::needs_drop::<crate::seal::Sealer>());
    }

    /// The fixed test vector of scheme v2. If this fails, normalisation,
    /// match keys or the token format changed: every deployed token would
    /// change with it, which needs a new scheme version and a new epoch.
    /// The identity of the fixed vectors, with or without a previous surname.
    fn vector_identity(previous_surnames: &str) -> Identity {
        let raw = RawIdentity {
            forenames: "Dr Zoë Anne",
            surname: "O'Brien-Smith",
            previous_surnames,
            date_of_birth: "1984-07-02",
            ni_number: "ab 12 34 56 c",
            postcode: "ls1 4ap",
            ..Default::default()
        };
        let mut issues = Vec::new();
        let id = Identity::from_raw(&raw, &mut Phonetic::default(), &mut issues);
        assert!(issues.is_empty());
        id
    }

    #[test]
    fn fixed_token_vector() {
        let id = vector_identity("Kowalska");
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

    /// The fixed test vector of token scheme 3: the match keys of the
    /// scheme-2 vector's identity without its previous surname, evaluated
    /// by a key service whose seed is 00 01 .. 1f, epoch 1 (evaluated
    /// directly: blinding does not change the output, which the
    /// `vigil-oprf` tests show against RFC 9497's vectors). If this fails,
    /// every scheme-3 token would change: a new scheme and a new epoch.
    #[test]
    fn fixed_token_vector_scheme_3() {
        let id = vector_identity("");
        let key = vigil_oprf::ServerKey::derive(vector_key().expose(), 1).unwrap();
        let keys = distinct_match_keys(&id);
        let got: Vec<String> = keys
            .iter()
            .map(|(k, b)| {
                let y = key.evaluate_direct(b, &vigil_oprf::info(*k as u32, 1)).unwrap();
                format!("{} {}", k.short_name(), hex::encode(&token_of_prf(&y)))
            })
            .collect();
        let want: Vec<&str> = TOKEN_VECTOR_3.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(got, want, "scheme-3 token vector changed:\n{}", got.join("\n"));
        // The wrap secret is another value of the same output.
        let y = key.evaluate_direct(&keys[0].1, &vigil_oprf::info(keys[0].0 as u32, 1)).unwrap();
        assert_ne!(WrapSecret::of_prf(&y).expose(), &token_of_prf(&y));
        // Each kind's public input separates outputs of equal bytes.
        let other = key.evaluate_direct(&keys[0].1, &vigil_oprf::info(keys[0].0 as u32 + 1, 1)).unwrap();
        assert_ne!(token_of_prf(&y), token_of_prf(&other));
    }

    const TOKEN_VECTOR_3: &str = "
        nino f604e893500328851c132b0bd6520d397affe3a05d497388cfa7d0557301d953
        nino_head_yob 41d2944cf8354d79a50f98ccee1717228990a75e5de74a9657825bf5ca7e6708
        nino_tail_yob 57c4c8b21da5a65620c1fc8d434d7f51b6e3aa673ddae58412afe977a7c530a5
        nino_digits_birthday 5b5197c7e87190c5b7cf4d78936149fc2fad6f34d23a82d196b008ee82e3aa2c
        birthday_postcode c7f4cae343b2880ccdf72035ee30ebc399b0b10af0cfe1ff9e2090125230b088
        name_district a421abc73a089664c3b9223a8e3b8785818fb9ebc05a695631cea6c71cb0b3d2
        name_postcode 2094ddb1a8f61af3f48588cf20a049fa07b2a7857aad0f27a02888be4c5e1d3d
        initials_postcode a3742bbe1154bb47e6a6cf6788e0529a79cf10afc6e57a62a63630a9e79aff6b
        surname_postcode e31ef15a4a6361364c942f4aa6ac4765924f53267c26dda861f14ff6d8d04d46
        forename_postcode fccaf4d2b8abd57d33e043411c1693ed32de450b9f9927793f7a1494725bf6de
        name_dob a2bd0a760e26fa9277212027fadaef45d8183c31f153a3e1a7c883da01da682e
        forename_part_surname_dob b78cf6ed502d1ea74e077b050397c2a32257b9fa957970c5d48861b3a8e51063
        forename_part_surname_dob b3aac58f4ccb2d750c9f8cdd233ce7a577b03ac8bdcee872cb684e71819a16e9
        surname_part_forename_dob 987ddc448b0845bcf8fc631281a710cc4730aed417b1e90f5928a8799263ace0
        surname_part_forename_dob d8824f9c5009e6c230b24478796cecf874199ffa7dc50d1a6adb3629771ea938
        initials_dob 3ca802db9ebc66e75eec841ef2b6a5cf4baa27409c7b08b62315739034514a83
        forename_dob 5fd506d51565b268123fb1029407af819aa7c39534b883f37584e32983eaf00b
        surname_dob e7157e98deefc3374ee3c009a4b2872936a0153ea61fd391d84fe5b62717cdd3
        name_md 8608630bab4278f6b291c8bebedd53877ba43b1724609ca5352b4ac749e897df
        forename_initial_surname_md ef5261b84d3d3a10e6357525bd251d2972e48273189880b710efb80305449aca
        forename_surname_part_md 080b1b55fba613c4de1d16abcd66fb64d9c74a2ba0589dfe07e07aa75ecb790a
        forename_surname_part_md 9801be605f1fa91ddf78cdb065eec804d17e91f31811b5be062f8c23ba20ee6d
        phonetic_ym 3f70e55b6b9b7c8cfdcf03901931c1de11cf252fb7afec2c89cec9c0e5e53a1b
        name_yob 96da1f9c0d98f9608e32b9ffa6525706a9ec362d586b9f72841c30d082f68a94
        name_district b53819732e43cfe3d3661e5cd9ce962d7cbdc4c7d82c851dbc01f2628c7c5966
        name_postcode ebf28bff9793ed89f2016f18f131eabdb52c68a5f46deb3c7d86debfb7f44c20
        surname_postcode 034d640c700d9e3f5f92e7821ee03da5f4334bbe62ecc6c75b11f171c773f79a
        name_dob 976411851e9b27b93ed7f6815790ed12b5c88fcc554b2ac294d831e0cb43374e
        forename_part_surname_dob c8b334d4cb45332a9d05b402b26d9285b8d8df44167cf33b4b594737ea4fbaac
        forename_part_surname_dob ec1623970c12da901584c87ceb2b8239cedba3fc132c701d2c53724a221ca2b6
        surname_part_forename_dob c26730ab5bce86f4cd37a6e58a8e8bb5e475f396792912d74770cdef039c2627
        surname_dob 09b48baa3756257ce80705c9adbb954741aab1b7f12bdaa39be1c70f37be3242
        name_md a2fc5371683d8d3aa4052847fe120da553cdba53f22317f84d802a7e2a3d8ec3
        forename_initial_surname_md 33e50686b496095b4bb6f8a685c6cc7c582cba6ee381205708a8b9f1f9098d98
        forename_surname_part_md 2fd6a97fa0df9701c1652c14f09b7df0b16dd7a996f738a65c03f6a7d64dd3dc
        name_yob e3cb073d6e51b5af7dc08b68a9905dbd0ae386c3665197c0ecfaa622a12ab7a2
        name_district 00211d454765c22a8d5b31ae07e68b42840605bb94022053c763674d5e1c207a
        name_postcode 23af9114790ef836c7167ca2478c772a5451bc190e6e69ee8e6ef1c2199aebb9
        initials_postcode cd40cb08a5f8898bd22793f2788fa40b3ac20072a6e085b45639e932ee53eb51
        surname_postcode b212b37ee8505076d4f0cfbdc908fbc0d4a69bf00fe1a6904c8dcdfe83e73ce2
        name_dob 70236e67c94a77ac3d2d69b8346ade12df51a83cc80ada84d46eed0927a68af7
        forename_part_surname_dob 79176f2d5e21fedd6368ab435f0ae3080ba3bebc60073ac77a911f8f63a3069b
        forename_part_surname_dob 60c6b442500d15afd35cf1ed1d0b64d2adb86b9c2f93cf6e318745fcc0c0f355
        surname_part_forename_dob e890d33251758fb4bd71b79033bf5ab1223f879626e46787dae27c8e70c740c5
        initials_dob 0b1fa4e4ab56e8c62dc80a9a829e248421d1efef5f87334684208fe98c395fb3
        surname_dob d86376817e48a1f9c8fe4de622922455a0af8cdbe6015d518ad2945edbaf4525
        name_md 7472fe94e749d8d0042daa5be57b5af3bb41825aac480cbad06d9adcfc0b4615
        forename_initial_surname_md 3e7d8b5d1a1d6b77bbf164d6f8b2c8ba7684b235abd53d4a46a786e91c39fe99
        forename_surname_part_md 835abfc13623da9a453b0f991e6e642aba5635fe22885ce3e712eb9223e3843a
        phonetic_ym 8720529555cf9e61a316531371c9a11150488c850f60c48152577d71c0c22db0
        name_yob c164358d89a689c8aeb63dc8b546b40b6a476448c0181007981b1d57c0a886b9
";

    /// `kind key-bytes (0x1F shown as |) token-hex`, linkage key 00 01 .. 1f, epoch 1.
    const TOKEN_VECTOR: &str = "
        nino AB123456 1fc54f385cacca4359d8b4a9f5ba1390bb2b630e5e4ac8fc1e9fb589524587ab
        nino_head_yob AB12|1984 7dd6026cd1a9aa488d976fe078109f35dd833655de0e51e8973bbd3ad255b431
        nino_tail_yob 3456|1984 c87f448b807a60d7c0f9349afee9b0d35c03bd5b401edc7ec2064dfa2fa1eda2
        nino_digits_birthday AB|123456|02|07 c9fa48066577e518acb17afbef297c178259ccca09c4500ccdc7a443e47781b5
        birthday_postcode 02|07|LS1 4AP 7a1e7bd29e64fbc0c538525d47b73ece0a6db238b430f92be533e3cc44a11152
        name_district obriensmith|zoe|LS1 7d7670a6a460580dad9bfb937b2aad99ad36f7f1285a4e9a2763221da2545c87
        name_postcode obriensmith|zoe|LS1 4AP dfae15c169c27db9d12f2dd756c4366b92edfa14cc88ddd0175690766c30f064
        initials_postcode o|z|LS1 4AP fd7095932316d97a4e110629927e88944ec2e1595b8952345c5aa6122c487453
        surname_postcode obriensmith|LS1 4AP 5b0ed2d01c0bbeb4e284ff67d84c95a2406cec55e195684981531c26803255a1
        forename_postcode zoe|LS1 4AP 29d74d06a89b4c9330e22f67175d1f91274c518b0279cde88c8ad3beb94c9274
        name_dob obriensmith|zoe|1984-07-02 1179058852aee0814aef06e4d768a4b116f42284a04a24249a30fcac4e5a7c03
        forename_part_surname_dob ^|z|obriensmith|1984-07-02 e618490ec8ed0811fb327f049847271c86be1f1f320bd43253a872998269dc24
        forename_part_surname_dob $|zoe|obriensmith|1984-07-02 8f0528f946883bd23ba9f57547f19a4a8782ceaeaa2798b8d5515ca204130f63
        surname_part_forename_dob zoe|^|obr|1984-07-02 0dba490b350f9a912c6f21c5f527325ee2ed74c4ed217d3b276b3a2263b84abc
        surname_part_forename_dob zoe|$|ith|1984-07-02 a98b000f94936452f9019b3e0b03b24127c4d6edf191b5bcde57fcdf9bc086b0
        initials_dob o|z|1984-07-02 c689e8fe8eab6cd6e6329f7bbee56d99c1accd2ed99cd303bbfbd5ef527bc77b
        forename_dob zoe|1984-07-02 24f25c0d01258c1f2dda94dfbe23294351048e40a0e25c4ec9e3e05c684cb331
        surname_dob obriensmith|1984-07-02 23f8fe4a6ffeda12d5d947d3acf7ce4defb7cd16b2ff6d4dc33895e1014f7c13
        name_md obriensmith|zoe|02|07 cf874d78894194e5969414ec0ce87694376390e57965ba17d9ff5009d76fd1e2
        forename_initial_surname_md z|obriensmith|02|07 7bedcb9d7e9690f946c84bc997f66c18757383b37e2ed53a001e56662aa4bb54
        forename_surname_part_md zoe|^|obr|02|07 42fb134b34a10268bd4ff421d84d3cdf1b8f64ed33042ff8f4e51a3dd9ab23b8
        forename_surname_part_md zoe|$|ith|02|07 b8574100432d6f188b117168dd3d4816f3e49143d87c5a7a353fd6738e0d367b
        phonetic_ym APRN|S|1984|07 8652a262fe3f9ea0a2c4dcc296625d4b459ab74fc7993b35d30f3d1dff0ddc6c
        name_yob obriensmith|zoe|1984 3ea3c281502da71e994ab2ade5b8bc5712aa7e8953cf3df33e66819272e449fe
        name_district obrien|zoe|LS1 1804ffac989ddab780513c50fdc5a1b1ff4b4a0ff0b053e9a262fec88bb8cc70
        name_postcode obrien|zoe|LS1 4AP 50245c49b8c4119f701c32a3b87aa9c1b41370ab59fa9b3a3dd358f5a1ec0b9a
        surname_postcode obrien|LS1 4AP 95926c234a996c8776696a046dd8e9df92f7fc7dc5945d26a1e26d95a04cca7c
        name_dob obrien|zoe|1984-07-02 cb093cb294f969cf4e280a5c7f303ded267a49705a603661df4e2bd69867976c
        forename_part_surname_dob ^|z|obrien|1984-07-02 ebdf9525112d0bc2fefeea23cedbf8f546df1fdbe0a51ee8b2b147a3233a343a
        forename_part_surname_dob $|zoe|obrien|1984-07-02 f17147f7cac9be08955e5193383b15432b33fa4fb4eeb3aaec0a822bccbdf364
        surname_part_forename_dob zoe|$|ien|1984-07-02 05b616e3d58abdc1c732f7a0e8ab6cfd7834d3a4174eeb1618f971f8b507ee82
        surname_dob obrien|1984-07-02 273eba5158e2b0790f0806d3513d300cc4567ac2ab1d27aa0895ae39a299b593
        name_md obrien|zoe|02|07 9a9bbf51ff6f2f170ce4d1c4a620d54f07f3b2af91bc01830ec545390ae9fa47
        forename_initial_surname_md z|obrien|02|07 d385e0f12de6be2c69da5cef1cb9b346e6244f8ee9bc97019e2c6d5f160642d3
        forename_surname_part_md zoe|$|ien|02|07 f73d986f693e24ab03a5a209a1e403b2d7cfe029be9acc177180dd9207dcc266
        name_yob obrien|zoe|1984 db632bccb1521d7d821ab92318adfb9c917ed557a707a7491b3a4402631c780f
        name_district smith|zoe|LS1 171b758376bbdfbcb865142b4cc12aa42fda2635f58cf711a8ab460f325f019c
        name_postcode smith|zoe|LS1 4AP 49e15a3689cf9af98809a4ba649c68a3079614ad385669c18c5c2512960c57fc
        initials_postcode s|z|LS1 4AP b6e88f498ae9baa1258ae19a018cc7dbde304d652c43bfa9c6c73f55be6ae7a5
        surname_postcode smith|LS1 4AP bbced881b0a97648f30b85ea29b04f002a33a7078ec0188298c35a64210e2c06
        name_dob smith|zoe|1984-07-02 59f092b6e3d2d19581ff3d8948a54f57c18b757b3e4e0806326b036fe7acbd1a
        forename_part_surname_dob ^|z|smith|1984-07-02 36d262d1740ca384fd1c8594f480319c04a8f02461978a25a1937d86a1462790
        forename_part_surname_dob $|zoe|smith|1984-07-02 c4cb42978530f3ea9ff5beb038c8265da82e89ee2f04fd958c7dd1a50646ac9d
        surname_part_forename_dob zoe|^|smi|1984-07-02 21d5c0108cab6f9ba7eec5e00d9c91826fe365afd7dc46cddaf004c3be274d0a
        initials_dob s|z|1984-07-02 4006255398e3d26fd9ab8a73c3819890eedcf3788ede676e246f809fa254ce0e
        surname_dob smith|1984-07-02 4fa27d5ca47680f67c7daabcca881ac7b2e06d08d3e75bd95e20335b91f91176
        name_md smith|zoe|02|07 d552e3faf77f21f16360d54a331898aeff294ed15b8263bab63aa325cb68adec
        forename_initial_surname_md z|smith|02|07 e5ebfa8e36f067916b446a6b71f90d9a02d7ce0cb9cd828accb54f9b145a82b2
        forename_surname_part_md zoe|^|smi|02|07 0ef0cc3cb4c3e10f6a1fc32e25499bf9c0b5445bae4250900fdeacb601603a42
        phonetic_ym S|SM0|1984|07 8c81529478c99fab3fb809b41a6358d8ed3c77903a7b979b619c5b91274b60bf
        name_yob smith|zoe|1984 9a25491dbf8f51eacd8fc78b2d8949dfe8482ca993ef443ff64bf030e9d60987
        name_district kowalska|zoe|LS1 8e01a6af0604e9809829e3a76db67f4c2fa8b2d45afee55f51441e1d56586919
        name_postcode kowalska|zoe|LS1 4AP 1fb881c52231b643d9754fa9d29510e4a986ec96cd5ee76cd1e4350f691ce293
        initials_postcode k|z|LS1 4AP 5135fda437c5e07ed05103a20212d2c39deaac255b370ce95aebf8ba666e32cb
        surname_postcode kowalska|LS1 4AP 578c48d6a07f5458d4b4022177b5dd9423ca897d5bc2d53e9e7392c735087b2b
        name_dob kowalska|zoe|1984-07-02 6b9b50e228ffb6bc9c71b550ce286b6148d9fb92303eb24428937957549ecc3b
        forename_part_surname_dob ^|z|kowalska|1984-07-02 8d288bb6b99af25ef301ccd734ed083ef974eb81564ee9a7bbb237d28d93d0fa
        forename_part_surname_dob $|zoe|kowalska|1984-07-02 bff81d054764d3593cabd6fe0c4c1e5c717905941543f55694879b970fca8acd
        surname_part_forename_dob zoe|^|kow|1984-07-02 b57563d972a38c92bb6caf2d2e1525b49700479160dcdad72ac40eba752ae999
        surname_part_forename_dob zoe|$|ska|1984-07-02 ef866d68317356b723e22da598c7a86d59d606e159b3eea701218a1ff5b6de66
        initials_dob k|z|1984-07-02 6529aacbac0ae6943399cca70bc848669d2f8edfabb898f5ef4dc4a4a19fb284
        surname_dob kowalska|1984-07-02 963b03964bbb7db663614ae7c9bbfa5194387318bebbd19798247b3accf1dd78
        name_md kowalska|zoe|02|07 86f22172ab8dbb60ba9998f366c8ebbbe054e933e9a303d4455e1b2d316af31e
        forename_initial_surname_md z|kowalska|02|07 eb2041fb120d76cf2f471436ca5997e3910b71bd8a6a61706a43b0689e5f9d12
        forename_surname_part_md zoe|^|kow|02|07 0d8d06a8f12d20f92196e7fb002aee2a3ced95b44fc12f7c9a734e1261e20785
        forename_surname_part_md zoe|$|ska|02|07 c08ffdbf87332f14925213b40b68033ed4855b05a9b51dea4d5ef864e9ebd213
        phonetic_ym KLSK|S|1984|07 403c4313910192255d2abe0dda6c5f9d3c83a3005eb65af009f1001f1491b8ae
        name_yob kowalska|zoe|1984 e20af0b74a0661e23ac3398eafa1e02a718593961139ccfdf95f79fe4b26026c
";

    #[test]
    fn subkeys_differ_by_kind_and_epoch() {
        let k1 = Tokenizer::new(&vector_key());
        let k2 = Tokenizer::new(&LinkageKey::new(2, *vector_key().expose()));
        assert_ne!(k1.token(KeyKind::NameDob, b"x"), k1.token(KeyKind::NameMd, b"x"));
        assert_ne!(k1.token(KeyKind::NameDob, b"x"), k2.token(KeyKind::NameDob, b"x"));
        assert_eq!(subkey_context(KeyKind::NameDob, 7), "vigil match-key scheme v2 kind name_dob epoch 7");
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
        assert_eq!(format!("{:?}", WrapSecret::from_bytes([7; 32])), "WrapSecret(<redacted>)");
        assert!(format!("{:?}", Tokenizer::new(&k)).contains("redacted"));
    }
}
