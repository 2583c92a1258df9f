//! The one error type every store returns.

use crate::duration::DurationError;

/// What went wrong in a store operation.
///
/// Each variant has a stable [`code`](Error::code) that crosses process
/// boundaries unchanged (the protocol sends it; the client maps it back).
/// Misuse (bad names, bad durations, oversized values, full sandboxes) is
/// separated from integrity failures and from an unreachable backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sandbox name outside 1-64 characters of `[A-Za-z0-9._:-]`.
    #[error("invalid sandbox name {name:?}: {reason}")]
    InvalidSandbox {
        /// The name given (at most 80 characters of it).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A malformed, zero or negative duration.
    #[error(transparent)]
    InvalidDuration(#[from] DurationError),
    /// An empty or oversized key, token or subject.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Another argument out of range (a grace period above 55 s, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A value above the per-value limit.
    #[error("value of {size} bytes is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The sandbox is at its record or byte limit and its policy refuses.
    #[error("sandbox {sandbox:?} is full: {limit}")]
    SandboxFull {
        /// The sandbox.
        sandbox: String,
        /// Which limit, with its value.
        limit: String,
    },
    /// A write named a token that was rotated away; the session must be
    /// addressed by its current token.
    #[error("this token was rotated; use the session's current token")]
    TokenRetired,
    /// Stored data failed authentication: wrong key, or tampering.
    #[error("stored data failed authentication (wrong key or tampering)")]
    Integrity,
    /// The backend (remote server, Redis) cannot be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An error reported by a remote store, with its code.
    #[error("{message}")]
    Remote {
        /// The stable code sent by the server.
        code: String,
        /// The server's message.
        message: String,
    },
}

impl Error {
    /// The stable code of this error, as sent over the protocol.
    ///
    /// ```
    /// use xems_core::Error;
    /// assert_eq!(Error::InvalidKey("empty").code(), "invalid_key");
    /// ```
    pub fn code(&self) -> &str {
        match self {
            Error::InvalidSandbox { .. } => "invalid_sandbox",
            Error::InvalidDuration(_) => "invalid_duration",
            Error::InvalidKey(_) => "invalid_key",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::ValueTooLarge { .. } => "value_too_large",
            Error::SandboxFull { .. } => "sandbox_full",
            Error::TokenRetired => "token_retired",
            Error::Integrity => "integrity",
            Error::Unavailable(_) => "unavailable",
            Error::Remote { code, .. } => code,
        }
    }

    /// Whether the store itself is failing (as opposed to the request being
    /// wrong): a web layer answers 503 for these, never a logout.
    pub fn is_unavailable(&self) -> bool {
        self.code() == "unavailable" || self.code() == "internal"
    }

    /// Wraps any error as [`Error::Unavailable`].
    pub fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Unavailable(e.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks a sandbox name: 1 to 64 characters of `[A-Za-z0-9._:-]`.
///
/// # Errors
///
/// [`Error::InvalidSandbox`] saying what is wrong.
///
/// ```
/// use xems_core::validate_sandbox;
/// assert!(validate_sandbox("otp-pending").is_ok());
/// assert!(validate_sandbox("a/b").is_err());
/// assert!(validate_sandbox("").is_err());
/// ```
pub fn validate_sandbox(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 64 {
        "longer than 64 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
        "only A-Z a-z 0-9 . _ : - are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSandbox { name: name.chars().take(80).collect(), reason })
}
