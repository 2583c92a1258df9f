//! The encrypted xems vault: crash-safe persistence for the engine.
//!
//! A vault is a directory holding an append-only journal of AES-256-GCM
//! sealed records (every change the engine makes) and, after compaction, a
//! snapshot of every live record. The format is specified in
//! `docs/VAULT-FORMAT.md`; the byte layout is also in the `format` module.
//!
//! ```no_run
//! use xems_core::{Keyring, MasterSecret};
//! use xems_engine::Engine;
//! use xems_vault::{FsyncPolicy, Opened, VaultOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = MasterSecret::parse("0123456789abcdef0123456789abcdef")?;
//! let opts = VaultOptions::new(Keyring::new(secret.clone())).fsync(FsyncPolicy::Always);
//! let opened = Opened::open("/var/lib/xems".as_ref(), opts)?;
//! let engine = Engine::builder()
//!     .secret(secret)
//!     .key_root(opened.key_root())
//!     .shards(opened.shards())
//!     .journal(opened.journal())
//!     .build()?;
//! let (vault, recovery) = opened.recover(&engine)?;
//! println!("{} sessions restored", recovery.restored);
//! vault.spawn_auto_compaction(&engine)?;
//! // ... serve with `engine` ...
//! vault.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - A write is acknowledged (the engine's call returns) once its record
//!   is written to the file (`everysec`, `no`) and synced (`always`). A
//!   process crash never loses an acknowledged write; under `always`, a
//!   power cut does not either.
//! - Every record is authenticated with associated data binding the vault,
//!   the file, the file's kind and the record's position: records cannot be
//!   changed, swapped, reordered, duplicated or moved between files or
//!   vaults without the open failing.
//! - An incomplete last record (a crash in the middle of a write) is cut off
//!   with a warning; any other damage stops the open with an error naming
//!   the file and offset.
//! - One process owns a vault at a time (an exclusive lock).
//!
//! # Security
//!
//! Values and tokens are sealed before they reach the disk, and the
//! plaintext of a change lives only for the duration of the call that seals
//! it. Keys are wrapped under the master secret (and, with hardware binding,
//! a machine identity). A vault copied back from an older backup (a
//! rollback) cannot be detected: nothing outside the vault records how far
//! it had come.

mod codec;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod journal;
mod keys;
mod lock;
mod reader;
mod vault;

pub use error::{Result, VaultError};
pub use format::FileKind;
pub use journal::FsyncPolicy;
pub use keys::MachineId;
pub use vault::{
    Compaction, FileInfo, Opened, Recovery, Report, Rewritten, SandboxReport, TornTail, Vault, VaultOptions, inspect,
    rewrite,
};
