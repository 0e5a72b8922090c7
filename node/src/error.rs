//! The node library's error: what kind of failure it was, and what to tell
//! the user. The binary maps each kind to an exit code in one place
//! (`main.rs`, documented in docs/operations.md). Messages name files,
//! lines, fields and counts, never identity data, tokens or keys.

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration, a key or a certificate is wrong, or TLS refused
    /// one of them, or the caller's role may not do this.
    #[error("{0}")]
    Config(String),
    /// Input was refused: a file, the rows of a file, or a request the
    /// coordinator found invalid.
    #[error("{0}")]
    Input(String),
    /// The coordinator could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The audit log failed verification: a bad proof or a split view.
    #[error("{0}")]
    Audit(String),
    /// Anything else: the local store, a conflicting sender, an internal
    /// failure.
    #[error("{0}")]
    Failed(String),
}

impl NodeError {
    /// [`NodeError::Config`].
    pub fn config(m: impl Into<String>) -> NodeError {
        NodeError::Config(m.into())
    }

    /// [`NodeError::Input`].
    pub fn input(m: impl Into<String>) -> NodeError {
        NodeError::Input(m.into())
    }

    /// [`NodeError::Unavailable`].
    pub fn unavailable(m: impl Into<String>) -> NodeError {
        NodeError::Unavailable(m.into())
    }

    /// [`NodeError::Audit`].
    pub fn audit(m: impl Into<String>) -> NodeError {
        NodeError::Audit(m.into())
    }

    /// [`NodeError::Failed`].
    pub fn failed(m: impl Into<String>) -> NodeError {
        NodeError::Failed(m.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            NodeError::Config(m)
            | NodeError::Input(m)
            | NodeError::Unavailable(m)
            | NodeError::Audit(m)
            | NodeError::Failed(m) => m,
        }
    }

    /// The same kind of error with another message.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> NodeError {
        match self {
            NodeError::Config(m) => NodeError::Config(f(m)),
            NodeError::Input(m) => NodeError::Input(f(m)),
            NodeError::Unavailable(m) => NodeError::Unavailable(f(m)),
            NodeError::Audit(m) => NodeError::Audit(f(m)),
            NodeError::Failed(m) => NodeError::Failed(f(m)),
        }
    }
}

impl From<crate::local::LocalError> for NodeError {
    fn from(e: crate::local::LocalError) -> NodeError {
        NodeError::Failed(e.to_string())
    }
}

impl From<crate::input::InputError> for NodeError {
    fn from(e: crate::input::InputError) -> NodeError {
        NodeError::Input(e.to_string())
    }
}
