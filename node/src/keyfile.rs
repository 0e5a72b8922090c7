//! The node's key files: the linkage key of an epoch and the node-local
//! secret, as small TOML files written with mode 0600 and never overwritten
//! (through `vigil_common::secrets`).
//!
//! ```toml
//! # linkage.key
//! epoch = 1
//! key = "<64 hex digits>"
//! ```
//! ```toml
//! # local.key
//! secret = "<64 hex digits>"
//! ```

use serde::Deserialize;
use std::path::Path;
use vigil_common::secrets::{self, SecretFileError};
use vigil_identity::seal::Sealer;
use vigil_identity::tokens::{LinkageKey, LocalSecret, Tokenizer, WrapSecret};
use vigil_proto::hex;
use vigil_proto::v1::SealedDetails;
use vigil_proto::{KeyKind, Token};

use crate::config::NodeConfig;
use crate::error::NodeError;

/// What stands for an identity in a row digest ([`Keys::identity_digest`]).
pub enum IdentityDigest {
    /// Scheme 2: the tokens, packed for the wire.
    Tokens(vigil_proto::v1::TokenSet),
    /// Scheme 3: a keyed hash of the match keys.
    Keys([u8; 32]),
}

impl IdentityDigest {
    /// The bytes the row digest covers.
    pub fn part(&self) -> &[u8] {
        match self {
            IdentityDigest::Tokens(set) => &set.tokens,
            IdentityDigest::Keys(hash) => hash,
        }
    }

    /// The packed tokens (scheme 2), if any.
    pub fn into_tokens(self) -> Option<vigil_proto::v1::TokenSet> {
        match self {
            IdentityDigest::Tokens(set) => Some(set),
            IdentityDigest::Keys(_) => None,
        }
    }
}

/// A node's keys, loaded.
pub struct Keys {
    /// Tokenizer of the current epoch (scheme 2; `None` when the key
    /// service makes the tokens).
    pub tokenizer: Option<Tokenizer>,
    /// Sealers: the current epoch first, then earlier ones (scheme 2).
    pub sealers: Vec<Sealer>,
    /// The node-local secret.
    pub local: LocalSecret,
    /// The current epoch.
    pub epoch: u32,
    /// The token scheme: `vigil_proto::kinds::TOKENS_LINKAGE_KEY` or
    /// `TOKENS_KEY_SERVICE`.
    pub scheme: u32,
}

/// A record's details as a force's node shows them: opened, or a note
/// saying why they could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The custodian's record id (or why it cannot be shown).
    pub record_id: String,
    /// Category (`other` when it cannot be opened).
    pub category: String,
    /// Event date, or empty.
    pub event_date: String,
}

impl Keys {
    /// Loads the keys named in the config.
    pub fn load(cfg: &NodeConfig) -> Result<Keys, NodeError> {
        let k = cfg.keys.as_ref().ok_or_else(|| NodeError::config("this node has no [keys] section"))?;
        let cfg_err = |e: SecretFileError| NodeError::config(e.to_string());
        let local = read_local(&k.local).map_err(cfg_err)?;
        let Some(path) = &k.linkage else {
            let ks = cfg.keyserver.as_ref().ok_or_else(|| NodeError::config("[keys] has no linkage key"))?;
            return Ok(Keys {
                tokenizer: None,
                sealers: Vec::new(),
                local,
                epoch: ks.epoch,
                scheme: vigil_proto::kinds::TOKENS_KEY_SERVICE,
            });
        };
        let linkage: LinkageKey = read_linkage(path).map_err(cfg_err)?;
        let mut sealers = vec![Sealer::new(&linkage)];
        for p in &k.previous_linkage {
            sealers.push(Sealer::new(&read_linkage(p).map_err(cfg_err)?));
        }
        Ok(Keys {
            tokenizer: Some(Tokenizer::new(&linkage)),
            sealers,
            local,
            epoch: linkage.epoch,
            scheme: vigil_proto::kinds::TOKENS_LINKAGE_KEY,
        })
    }

    /// Whether the key service makes this node's tokens (scheme 3).
    pub fn key_service(&self) -> bool {
        self.scheme == vigil_proto::kinds::TOKENS_KEY_SERVICE
    }

    /// What stands for an identity in a row digest (a row is sent again
    /// only when its digest changes). Scheme 2: the packed tokens (left in
    /// `toks`, and returned packed, ready to send). Scheme 3: a hash of the
    /// match keys keyed by the local secret (`toks` left empty, nothing
    /// packed), so that an unchanged row costs no evaluation.
    pub fn identity_digest(
        &self,
        id: &vigil_identity::keys::Identity,
        toks: &mut Vec<(KeyKind, Token)>,
    ) -> IdentityDigest {
        match &self.tokenizer {
            Some(t) => {
                t.tokens(id, toks);
                IdentityDigest::Tokens(vigil_proto::tokens::pack(toks.iter()))
            }
            None => {
                toks.clear();
                let key = blake3::derive_key("vigil row digest scheme 3", self.local.expose());
                let mut h = blake3::Hasher::new_keyed(&key);
                for (k, b) in vigil_identity::tokens::distinct_match_keys(id) {
                    h.update(&(k as i32).to_be_bytes()).update(&(b.len() as u32).to_be_bytes()).update(&b);
                }
                IdentityDigest::Keys(*h.finalize().as_bytes())
            }
        }
    }

    /// The sealer for an epoch.
    pub fn sealer(&self, epoch: u32) -> Option<&Sealer> {
        self.sealers.iter().find(|s| s.epoch() == epoch)
    }

    /// Opens a record's sealed details (the one way the node does it):
    /// scheme 3 boxes with the wrap secrets of the identity that matched
    /// (`wraps`), scheme 2 boxes with the epoch's linkage key. The details
    /// must name the source the coordinator named.
    pub fn open(
        &self,
        source: &str,
        record_ref: &[u8],
        sealed: Option<&SealedDetails>,
        wraps: &[(KeyKind, WrapSecret)],
    ) -> Opened {
        let note = |record_id: String| Opened { record_id, category: "other".into(), event_date: String::new() };
        let Some(s) = sealed else { return note("(none)".into()) };
        if !s.wrap_kinds.is_empty() {
            let candidates: Vec<(KeyKind, &WrapSecret)> = wraps.iter().map(|(k, w)| (*k, w)).collect();
            return match vigil_identity::seal::open_wrapped(source, record_ref, s, &candidates) {
                Ok(d) if d.source == source => {
                    Opened { record_id: d.record_id, category: d.category, event_date: d.event_date }
                }
                Ok(_) => note("(sealed by another source than the coordinator named)".into()),
                Err(_) => note("(cannot be opened with this identity's keys)".into()),
            };
        }
        match self.sealer(s.epoch).map(|x| x.open(record_ref, s)) {
            Some(Ok(d)) => Opened { record_id: d.record_id, category: d.category, event_date: d.event_date },
            Some(Err(_)) => note("(cannot be opened)".into()),
            None => note(format!("(sealed under epoch {}; no key)", s.epoch)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkageFile {
    epoch: u32,
    key: String,
}

/// Reads a linkage key file.
pub fn read_linkage(path: &Path) -> Result<LinkageKey, SecretFileError> {
    let f: LinkageFile = secrets::read_toml(path)?;
    if f.epoch == 0 {
        return Err(secrets::format_err(path, "epoch must be at least 1"));
    }
    Ok(LinkageKey::new(f.epoch, secrets::key32(path, "key", &f.key)?))
}

/// Reads a node-local secret file.
pub fn read_local(path: &Path) -> Result<LocalSecret, SecretFileError> {
    secrets::read_secret(path).map(LocalSecret::new)
}

/// Writes a new linkage key file for `epoch`.
pub fn write_linkage(path: &Path, key: &LinkageKey) -> Result<(), SecretFileError> {
    let text = format!(
        "# Vigil linkage key, epoch {e}. SECRET: for force and source nodes only, never the coordinator.\nepoch = {e}\nkey = \"{k}\"\n",
        e = key.epoch,
        k = hex::encode(key.expose())
    );
    secrets::write_new(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let lp = d.path().join("linkage.key");
        let key = LinkageKey::new(3, secrets::random_key().unwrap());
        write_linkage(&lp, &key).unwrap();
        assert_eq!(read_linkage(&lp).unwrap(), key);
        assert!(matches!(write_linkage(&lp, &key), Err(SecretFileError::Exists(_))));
        let sp = d.path().join("local.key");
        secrets::write_secret(&sp, "local", &[7; 32]).unwrap();
        assert_eq!(read_local(&sp).unwrap(), LocalSecret::new([7; 32]));
    }

    #[test]
    fn malformed_linkage_files_say_what_is_wrong_without_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, "epoch = 1\nkey = \"abcd\"\n").unwrap();
        let e = read_linkage(&p).unwrap_err().to_string();
        assert!(e.contains("64 hex digits") && !e.contains("abcd"), "{e}");
        std::fs::write(&p, "epoch = 0\nkey = \"00\"\n").unwrap();
        assert!(read_linkage(&p).unwrap_err().to_string().contains("epoch"));
    }
}
