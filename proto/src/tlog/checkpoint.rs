//! C2SP checkpoints (https://c2sp.org/tlog-checkpoint): the signed body
//! `<origin>\n<tree size>\n<base64 root hash>\n[extension lines]`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::merkle::Hash;
use super::note::{self, NoteError, Signer, Verifier};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The body is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The origin line is not the expected one.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    Origin {
        /// Origin found.
        found: String,
        /// Origin expected.
        expected: String,
    },
    /// The signed note did not open.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines, without newlines.
    pub extensions: Vec<String>,
}

/// Formats a checkpoint body from any hash bytes (the lenient form).
pub fn format_body(origin: &str, size: u64, hash: &[u8], extensions: &[String]) -> String {
    let mut s = format!("{origin}\n{size}\n{}\n", B64.encode(hash));
    for e in extensions {
        s.push_str(e);
        s.push('\n');
    }
    s
}

/// Parses a body, accepting a root hash of any length (the lenient form).
pub fn parse_body_lenient(text: &str) -> Result<(String, u64, Vec<u8>, Vec<String>), CheckpointError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.len() < 4 || lines.pop() != Some("") {
        return Err(CheckpointError::Malformed("fewer than three lines, or no final newline"));
    }
    let origin = lines[0];
    if origin.is_empty() {
        return Err(CheckpointError::Malformed("empty origin"));
    }
    let size_line = lines[1];
    if size_line.is_empty()
        || !size_line.bytes().all(|b| b.is_ascii_digit())
        || (size_line.len() > 1 && size_line.starts_with('0'))
    {
        return Err(CheckpointError::Malformed("tree size is not a decimal number"));
    }
    let size: u64 = size_line.parse().map_err(|_| CheckpointError::Malformed("tree size out of range"))?;
    let hash = B64.decode(lines[2]).map_err(|_| CheckpointError::Malformed("root hash is not base64"))?;
    let ext = lines[3..].iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if ext.iter().any(String::is_empty) {
        return Err(CheckpointError::Malformed("empty extension line"));
    }
    Ok((origin.to_string(), size, hash, ext))
}

/// The extension line that dates a Vigil checkpoint:
/// `vigil-time <RFC 3339 UTC>`, signed with the rest of the body.
pub const TIME_EXTENSION: &str = "vigil-time";

impl Checkpoint {
    /// The time the checkpoint was signed, from its [`TIME_EXTENSION`]
    /// line, as milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> Option<i64> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix(TIME_EXTENSION)?.strip_prefix(' '))
            .and_then(crate::time::parse_rfc3339)
    }

    /// The signed body.
    pub fn body(&self) -> String {
        format_body(&self.origin, self.size, &self.root, &self.extensions)
    }

    /// Parses a body strictly (32-byte root hash).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let (origin, size, hash, extensions) = parse_body_lenient(text)?;
        let root: Hash = hash.try_into().map_err(|_| CheckpointError::Malformed("root hash is not 32 bytes"))?;
        Ok(Checkpoint { origin, size, root, extensions })
    }

    /// Signs the checkpoint into a signed note.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.body())?)
    }

    /// Opens a signed checkpoint: the log's key must have signed it and the
    /// origin must be `origin`.
    pub fn open(signed: &str, origin: &str, log_key: &Verifier) -> Result<Checkpoint, CheckpointError> {
        let n = note::open(signed.as_bytes(), std::slice::from_ref(log_key))?;
        let cp = Checkpoint::parse_body(&n.text)?;
        if cp.origin != origin {
            return Err(CheckpointError::Origin { found: cp.origin, expected: origin.to_string() });
        }
        Ok(cp)
    }
}
