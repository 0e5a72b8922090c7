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
use vigil_identity::tokens::{LinkageKey, LocalSecret, Tokenizer};
use vigil_proto::hex;
use vigil_proto::v1::SealedDetails;

use crate::config::NodeConfig;
use crate::error::NodeError;

/// A node's keys, loaded.
pub struct Keys {
    /// Tokenizer of the current epoch.
    pub tokenizer: Tokenizer,
    /// Sealers: the current epoch first, then earlier ones.
    pub sealers: Vec<Sealer>,
    /// The node-local secret.
    pub local: LocalSecret,
    /// The current epoch.
    pub epoch: u32,
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
        let linkage: LinkageKey = read_linkage(&k.linkage).map_err(cfg_err)?;
        let mut sealers = vec![Sealer::new(&linkage)];
        for p in &k.previous_linkage {
            sealers.push(Sealer::new(&read_linkage(p).map_err(cfg_err)?));
        }
        Ok(Keys {
            tokenizer: Tokenizer::new(&linkage),
            sealers,
            local: read_local(&k.local).map_err(cfg_err)?,
            epoch: linkage.epoch,
        })
    }

    /// The sealer for an epoch.
    pub fn sealer(&self, epoch: u32) -> Option<&Sealer> {
        self.sealers.iter().find(|s| s.epoch() == epoch)
    }

    /// Opens a record's sealed details (the one way the node does it).
    pub fn open(&self, record_ref: &[u8], sealed: Option<&SealedDetails>) -> Opened {
        let note = |record_id: String| Opened { record_id, category: "other".into(), event_date: String::new() };
        let Some(s) = sealed else { return note("(none)".into()) };
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
