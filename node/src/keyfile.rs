//! Key files: the linkage key of an epoch and the node-local secret, as
//! small TOML files written with mode 0600 and never overwritten.
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

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use vigil_proto::hex;

use crate::tokens::{LinkageKey, LocalSecret};

/// Why a key file could not be read or written. Never shows key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Malformed contents.
    #[error("{path}: {problem}")]
    Format {
        /// File.
        path: PathBuf,
        /// What is wrong (never the key).
        problem: String,
    },
    /// Refusing to overwrite.
    #[error("{0} exists already; refusing to overwrite a key")]
    Exists(PathBuf),
    /// No randomness.
    #[error("system random generator failed")]
    Random,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkageFile {
    epoch: u32,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalFile {
    secret: String,
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })
}

fn format_err(path: &Path, problem: impl Into<String>) -> KeyFileError {
    KeyFileError::Format { path: path.to_path_buf(), problem: problem.into() }
}

/// Reads 32 bytes of hex from a field.
fn key32(path: &Path, field: &str, value: &str) -> Result<[u8; 32], KeyFileError> {
    hex::decode_array::<32>(value).ok_or_else(|| format_err(path, format!("{field} must be 64 hex digits")))
}

/// Reads a linkage key file.
pub fn read_linkage(path: &Path) -> Result<LinkageKey, KeyFileError> {
    let f: LinkageFile = toml::from_str(&read(path)?).map_err(|e| format_err(path, e.message().to_string()))?;
    if f.epoch == 0 {
        return Err(format_err(path, "epoch must be at least 1"));
    }
    Ok(LinkageKey::new(f.epoch, key32(path, "key", &f.key)?))
}

/// Reads a node-local secret file.
pub fn read_local(path: &Path) -> Result<LocalSecret, KeyFileError> {
    let f: LocalFile = toml::from_str(&read(path)?).map_err(|e| format_err(path, e.message().to_string()))?;
    Ok(LocalSecret::new(key32(path, "secret", &f.secret)?))
}

/// Reads a file holding one secret in hex (`secret = "..."`): the same
/// format as a local secret, used for the coordinator's pepper.
pub fn read_secret(path: &Path) -> Result<[u8; 32], KeyFileError> {
    read_local(path).map(|s| *s.expose())
}

/// 32 random bytes.
pub fn random_key() -> Result<[u8; 32], KeyFileError> {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).map_err(|_| KeyFileError::Random)?;
    Ok(k)
}

/// Writes `text` to a new file with mode 0600.
pub fn write_new(path: &Path, text: &str) -> Result<(), KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_path_buf())
        } else {
            KeyFileError::Io { path: path.to_path_buf(), source }
        }
    })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })
}

/// Writes a new linkage key file for `epoch`.
pub fn write_linkage(path: &Path, key: &LinkageKey) -> Result<(), KeyFileError> {
    let text = format!(
        "# Vigil linkage key, epoch {e}. SECRET: for force and source nodes only, never the coordinator.\nepoch = {e}\nkey = \"{k}\"\n",
        e = key.epoch,
        k = hex::encode(key.expose())
    );
    write_new(path, &text)
}

/// Writes a new secret file (`secret = "..."`) with a comment saying what it is.
pub fn write_secret(path: &Path, what: &str, secret: &[u8; 32]) -> Result<(), KeyFileError> {
    write_new(path, &format!("# {what}\nsecret = \"{}\"\n", hex::encode(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let lp = d.path().join("linkage.key");
        let key = LinkageKey::new(3, random_key().unwrap());
        write_linkage(&lp, &key).unwrap();
        assert_eq!(read_linkage(&lp).unwrap(), key);
        assert!(matches!(write_linkage(&lp, &key), Err(KeyFileError::Exists(_))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&lp).unwrap().permissions().mode() & 0o777, 0o600);
        let sp = d.path().join("local.key");
        write_secret(&sp, "local", &[7; 32]).unwrap();
        assert_eq!(read_local(&sp).unwrap(), LocalSecret::new([7; 32]));
    }

    #[test]
    fn malformed_files_say_what_is_wrong_without_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, "epoch = 1\nkey = \"abcd\"\n").unwrap();
        let e = read_linkage(&p).unwrap_err().to_string();
        assert!(e.contains("64 hex digits") && !e.contains("abcd"), "{e}");
        std::fs::write(&p, "epoch = 0\nkey = \"00\"\n").unwrap();
        assert!(read_linkage(&p).unwrap_err().to_string().contains("epoch"));
        std::fs::write(&p, "secret = \"00\"\nextra = 1\n").unwrap();
        assert!(read_local(&p).unwrap_err().to_string().contains("extra"));
    }
}
