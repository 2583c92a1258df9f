//! What a persistence layer (the vault) sees of the engine: the changes it
//! must record, the images it snapshots and restores.
//!
//! Every change describes a *state* ("record F now has value V, version 7",
//! "F's current key is K, the old one is retired until T"), never a delta, so
//! replaying a journal on top of a snapshot taken at any later moment yields
//! the same final state: a snapshot can be taken while the engine runs.
//! Records are identified by `(sandbox, family)`; family ids are never
//! reused within a vault's life (the engine continues after the largest
//! restored one).
//!
//! Expiry is not journaled: an expired record is dropped at restore because
//! its deadline is in its image.

use std::fmt;

use xems_core::{BoxFuture, Token};
use zeroize::Zeroizing;

/// A position in the journal: waiting on it waits for everything appended
/// before it to be durable (per the journal's fsync policy).
pub type Ticket = u64;

/// A record's full state at creation (or migration into a sandbox).
#[derive(Clone, Copy, Debug)]
pub struct Put<'a> {
    /// Its sandbox.
    pub sandbox: &'a str,
    /// Its family id (stable across rotations).
    pub family: u64,
    /// The routing byte of its address (selects the shard).
    pub route: u8,
    /// The index digest of its current address.
    pub key: [u8; 16],
    /// Its version.
    pub version: u32,
    /// The plaintext value: the journal must seal it before it is written.
    pub value: &'a [u8],
    /// Creation time, ms since the UNIX epoch.
    pub created_at: u64,
    /// Idle deadline, ms.
    pub idle_deadline: u64,
    /// Absolute deadline, ms.
    pub abs_deadline: u64,
    /// Idle TTL, ms.
    pub idle_ttl_ms: u32,
    /// Keyed hash of its subject.
    pub subject: Option<[u8; 16]>,
}

/// One change to record, in order.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Change<'a> {
    /// A new record.
    Put(Put<'a>),
    /// A new value for an existing record (`set` on an existing key,
    /// `update_if`), with its lifetimes and subject after the write.
    Replace {
        /// Its sandbox.
        sandbox: &'a str,
        /// Its family.
        family: u64,
        /// The new version.
        version: u32,
        /// The new plaintext value.
        value: &'a [u8],
        /// Idle deadline after the write.
        idle_deadline: u64,
        /// Absolute deadline after the write.
        abs_deadline: u64,
        /// Idle TTL after the write.
        idle_ttl_ms: u32,
        /// Subject after the write.
        subject: Option<[u8; 16]>,
    },
    /// The idle deadline moved (refresh, touch).
    Touch {
        /// Its sandbox.
        sandbox: &'a str,
        /// Its family.
        family: u64,
        /// The new idle deadline.
        idle_deadline: u64,
        /// The idle TTL.
        idle_ttl_ms: u32,
    },
    /// A rotation: `new_key` is current; `old_key` is retired until
    /// `grace_until`; while a grace window is open the current token is
    /// `current` (the journal must seal it).
    Rotate {
        /// Its sandbox.
        sandbox: &'a str,
        /// Its family.
        family: u64,
        /// The retired key.
        old_key: [u8; 16],
        /// Until when the retired key is in grace.
        grace_until: u64,
        /// The new current key.
        new_key: [u8; 16],
        /// When the new token was minted.
        token_born: u64,
        /// The new current token and until when a grace hit may need it.
        current: Option<(&'a Token, u64)>,
    },
    /// A record and all its tokens are gone (delete, revocation, eviction,
    /// migration out).
    Remove {
        /// Its sandbox.
        sandbox: &'a str,
        /// Its family.
        family: u64,
    },
}

impl fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print values or tokens.
        match self {
            Change::Put(p) => write!(f, "Put({}/{} v{})", p.sandbox, p.family, p.version),
            Change::Replace { sandbox, family, version, .. } => write!(f, "Replace({sandbox}/{family} v{version})"),
            Change::Touch { sandbox, family, idle_deadline, .. } => {
                write!(f, "Touch({sandbox}/{family} until {idle_deadline})")
            }
            Change::Rotate { sandbox, family, .. } => write!(f, "Rotate({sandbox}/{family})"),
            Change::Remove { sandbox, family } => write!(f, "Remove({sandbox}/{family})"),
        }
    }
}

/// The journal failed (a write or fsync error): the change it refers to may
/// not be durable.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

/// Receives every change of the engine, in order.
///
/// `append` is called under a shard lock: it must be quick and must not
/// call back into the engine. Durability is awaited afterwards, outside any
/// lock, with the returned ticket.
pub trait Journal: Send + Sync + 'static {
    /// Records a change; returns its ticket.
    fn append(&self, change: &Change<'_>) -> Ticket;

    /// Blocks until `ticket` is durable.
    ///
    /// # Errors
    ///
    /// The journal could not write or sync.
    fn wait_blocking(&self, ticket: Ticket) -> Result<(), JournalError>;

    /// Waits until `ticket` is durable.
    fn wait(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), JournalError>>;
}

/// The full state of one record, as snapshotted or restored.
#[derive(Clone)]
#[non_exhaustive]
pub struct Image {
    /// Its sandbox.
    pub sandbox: String,
    /// Its family id.
    pub family: u64,
    /// The routing byte of its address (in a snapshot: the shard index,
    /// which routes identically as long as the shard count is unchanged).
    pub route: u8,
    /// The index digest of its current address.
    pub key: [u8; 16],
    /// Its version.
    pub version: u32,
    /// The plaintext value.
    pub value: Zeroizing<Vec<u8>>,
    /// Creation time, ms.
    pub created_at: u64,
    /// When the current token was minted, ms.
    pub token_born: u64,
    /// Idle deadline, ms.
    pub idle_deadline: u64,
    /// Absolute deadline, ms.
    pub abs_deadline: u64,
    /// Idle TTL, ms.
    pub idle_ttl_ms: u32,
    /// Keyed hash of its subject.
    pub subject: Option<[u8; 16]>,
    /// Retired keys, oldest first, with their grace deadlines.
    pub retired: Vec<([u8; 16], u64)>,
    /// The current token while a grace window is open, and until when.
    pub current: Option<(Token, u64)>,
}

impl Image {
    /// An image with no retired tokens (for journal replay).
    pub fn from_put(p: &Put<'_>) -> Self {
        Image {
            sandbox: p.sandbox.to_owned(),
            family: p.family,
            route: p.route,
            key: p.key,
            version: p.version,
            value: Zeroizing::new(p.value.to_vec()),
            created_at: p.created_at,
            token_born: p.created_at,
            idle_deadline: p.idle_deadline,
            abs_deadline: p.abs_deadline,
            idle_ttl_ms: p.idle_ttl_ms,
            subject: p.subject,
            retired: Vec::new(),
            current: None,
        }
    }

    /// Applies a later change to this record's image (journal replay).
    /// Changes of other records and `Put`/`Remove` are the caller's to
    /// handle.
    pub fn apply(&mut self, change: &Change<'_>) {
        match *change {
            Change::Replace { version, value, idle_deadline, abs_deadline, idle_ttl_ms, subject, .. } => {
                self.version = version;
                self.value = Zeroizing::new(value.to_vec());
                self.idle_deadline = idle_deadline;
                self.abs_deadline = abs_deadline;
                self.idle_ttl_ms = idle_ttl_ms;
                self.subject = subject;
            }
            Change::Touch { idle_deadline, idle_ttl_ms, .. } => {
                self.idle_deadline = idle_deadline;
                self.idle_ttl_ms = idle_ttl_ms;
            }
            Change::Rotate { old_key, grace_until, new_key, token_born, current, .. } => {
                if self.key == new_key {
                    return; // already applied (a snapshot taken after it)
                }
                if !self.retired.iter().any(|(k, _)| *k == old_key) {
                    self.retired.push((old_key, grace_until));
                }
                self.key = new_key;
                self.token_born = token_born;
                self.current = current.map(|(t, until)| (t.clone(), until));
            }
            Change::Put(_) | Change::Remove { .. } => {}
        }
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("sandbox", &self.sandbox)
            .field("family", &self.family)
            .field("version", &self.version)
            .field("value", &format_args!("{} bytes", self.value.len()))
            .field("retired", &self.retired.len())
            .finish_non_exhaustive()
    }
}
