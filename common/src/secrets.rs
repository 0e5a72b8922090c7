//! Secret files: small TOML files holding 32 bytes in hex, written with mode
//! 0600 and never overwritten. Errors name the file and the problem, never
//! the key material.
//!
//! ```toml
//! # what this secret is
//! secret = "<64 hex digits>"
//! ```

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use vigil_proto::hex;

/// Why a secret file could not be read or written. Never shows key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
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
    #[error("{0} exists already; refusing to overwrite it")]
    Exists(PathBuf),
    /// No randomness.
    #[error("system random generator failed")]
    Random,
}

/// A malformed-file error for `path`.
pub fn format_err(path: &Path, problem: impl Into<String>) -> SecretFileError {
    SecretFileError::Format { path: path.to_path_buf(), problem: problem.into() }
}

/// Reads a TOML key file into `T` (unknown keys refused).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SecretFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| SecretFileError::Io { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| format_err(path, e.message().to_string()))
}

/// 32 bytes from the hex of one field.
pub fn key32(path: &Path, field: &str, value: &str) -> Result<[u8; 32], SecretFileError> {
    hex::decode_array::<32>(value).ok_or_else(|| format_err(path, format!("{field} must be 64 hex digits")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    secret: String,
}

/// Reads a file holding one secret (`secret = "..."`): a node's local
/// secret, the coordinator's pepper.
pub fn read_secret(path: &Path) -> Result<[u8; 32], SecretFileError> {
    let f: SecretFile = read_toml(path)?;
    key32(path, "secret", &f.secret)
}

/// 32 random bytes.
pub fn random_key() -> Result<[u8; 32], SecretFileError> {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).map_err(|_| SecretFileError::Random)?;
    Ok(k)
}

/// Creates `dir` and any missing parents with mode 0700 (owner only): data
/// directories, key directories, reports and exports hold pseudonyms,
/// sealed details, names (in a force's inbox) or keys. A directory that
/// exists already keeps its mode; one that others can read is named in a
/// warning.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "directory is open to other users; 0700 is expected");
    }
    Ok(())
}

/// Writes `text` to a new file with mode 0600.
pub fn write_new(path: &Path, text: &str) -> Result<(), SecretFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SecretFileError::Exists(path.to_path_buf())
        } else {
            SecretFileError::Io { path: path.to_path_buf(), source }
        }
    })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| SecretFileError::Io { path: path.to_path_buf(), source })
}

/// Writes a new secret file (`secret = "..."`) with a comment saying what it is.
pub fn write_secret(path: &Path, what: &str, secret: &[u8; 32]) -> Result<(), SecretFileError> {
    write_new(path, &format!("# {what}\nsecret = \"{}\"\n", hex::encode(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_no_overwrite_and_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pepper.key");
        write_secret(&p, "pepper", &[7; 32]).unwrap();
        assert_eq!(read_secret(&p).unwrap(), [7; 32]);
        assert!(matches!(write_secret(&p, "pepper", &[8; 32]), Err(SecretFileError::Exists(_))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let sub = d.path().join("a/b");
        private_dir(&sub).unwrap();
        for x in [d.path().join("a"), sub] {
            assert_eq!(std::fs::metadata(&x).unwrap().permissions().mode() & 0o777, 0o700, "{}", x.display());
        }
    }

    #[test]
    fn malformed_files_say_what_is_wrong_without_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, "secret = \"abcd\"\n").unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(e.contains("64 hex digits") && !e.contains("abcd"), "{e}");
        std::fs::write(&p, "secret = \"00\"\nextra = 1\n").unwrap();
        assert!(read_secret(&p).unwrap_err().to_string().contains("extra"));
    }
}
