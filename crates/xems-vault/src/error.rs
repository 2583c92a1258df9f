//! Why a vault operation failed.
//!
//! Configuration and usage errors (a wrong secret, a vault in use, a
//! hardware-binding mismatch) are separate from integrity errors (a damaged
//! or tampered file). A record that fails authentication is reported as one
//! opaque "failed authentication", never with detail about why.

use std::path::PathBuf;

/// A vault error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// None of the given secrets opens the vault.
    #[error(
        "wrong secret or not a xems vault: {file} is wrapped under the secret with key id {found:08x}; \
         the given secret(s) have key id(s) {given} (pass the old secret with --previous-secret after a rotation)"
    )]
    WrongSecret {
        /// The file whose keys did not unwrap.
        file: String,
        /// The key id recorded in its header.
        found: u32,
        /// The key ids of the secrets tried.
        given: String,
    },
    /// The file does not start like a vault file.
    #[error("wrong secret or not a xems vault: {file} does not start with the xems vault magic")]
    NotAVault {
        /// The file.
        file: String,
    },
    /// The path is not empty and holds no vault.
    #[error("not a xems vault: {0} is not empty and holds no vault file (refusing to write into it)")]
    NotAVaultDir(PathBuf),
    /// A file of a format version this build does not read.
    #[error(
        "{file}: vault format version {found} is not supported (this xems reads version {supported}); \
         use the xems release that wrote it"
    )]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// Its version.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The vault is bound to another machine.
    #[error(
        "{file}: the vault is hardware-bound to another machine and cannot be opened here \
         (open it on its machine and run `xems vault rekey` without --hardware-bind to move it)"
    )]
    OtherMachine {
        /// The file.
        file: String,
    },
    /// Another process holds the vault.
    #[error("vault in use by PID {pid} ({path}): one process owns a vault; share it through `xems serve`")]
    InUse {
        /// The owner's PID (0 when it could not be read).
        pid: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// Damage or tampering.
    #[error("vault corrupted: {file} at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        file: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A setting does not fit the vault or the request.
    #[error("{0}")]
    Config(String),
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The vault's writer failed earlier (a write or fsync error); it accepts
    /// nothing more until it is reopened.
    #[error("the vault failed and accepts no more writes: {0}")]
    Failed(String),
}

impl VaultError {
    pub(crate) fn corrupt(file: &str, offset: u64, what: impl Into<String>) -> Self {
        VaultError::Corrupt { file: file.to_owned(), offset, what: what.into() }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| VaultError::Io { context, source }
    }

    /// Whether this is an integrity error (damage or tampering).
    pub fn is_corruption(&self) -> bool {
        matches!(self, VaultError::Corrupt { .. })
    }
}

/// `Result` with [`VaultError`].
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
