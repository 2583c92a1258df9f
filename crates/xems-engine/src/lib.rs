//! The embedded xems engine: an encrypted, sandboxed, in-memory session
//! store with atomic token rotation.
//!
//! ```
//! use xems_core::{CreateOptions, ResolveOptions};
//!
//! let engine = xems_engine::Engine::new();
//! let pending = engine.sandbox("otp-pending")?;
//! let active = engine.sandbox("active")?;
//!
//! // Password checked: a short-lived session waits for the OTP.
//! let temp = pending.create(br#"{"user":42}"#, CreateOptions::new().with_ttl(std::time::Duration::from_secs(120)))?;
//! // OTP checked: the data moves to a new session; the temporary token dies.
//! let session = pending.migrate(temp.token.expose(), &active, None, CreateOptions::new().with_subject("42"))?.unwrap();
//! assert!(pending.get(temp.token.expose())?.is_none());
//! // Every request rotates the token; concurrent requests with the old one
//! // get the same successor during the grace period.
//! let next = active.resolve(session.token.expose(), ResolveOptions::rotating())?.unwrap();
//! assert!(next.token.is_some());
//! # Ok::<(), xems_core::Error>(())
//! ```
//!
//! # Semantics
//!
//! - **Sandboxes** are created on first use. Each has its own keys, limits and
//!   counters; its index and its sealing keys are derived from the master
//!   secret with the sandbox name, so nothing crosses sandboxes.
//! - **Addresses**: store-minted tokens and caller keys live in one keyed-hash
//!   index (HMAC-SHA256); the raw text is never stored. Any operation on a key
//!   works on a token and vice versa (the XyPriss host rotates its own keys).
//! - **Lifetimes**: an idle TTL (default 15 min) and an absolute deadline
//!   (default and cap 5 days from creation). A record is expired from the
//!   exact millisecond `now >= deadline`. `set` on an existing key restarts the
//!   idle TTL and keeps the absolute deadline.
//! - **Rotation**: resolving the current token with rotation mints one
//!   successor and retires the old token with a grace window. A retired token
//!   within its window resolves to the session and returns its *current* token
//!   (never minting again), so concurrent requests converge on one successor.
//!   After its window a retired token is a replay: it is refused and, under
//!   [`ReusePolicy::RevokeSession`] (the default), its whole session is
//!   revoked. A session remembers its last 4 retired tokens past their grace
//!   (configurable), and every one still in its grace window.
//! - **Migration** removes the session from the source before creating it in
//!   the target, with room reserved in the target first: at no moment do both
//!   exist, and a full target refuses without losing the session.
//! - **Limits**: per sandbox, records and sealed bytes, with the `refuse`
//!   (default) or `evict-soonest-expiring` policy acting on that sandbox only;
//!   per value, 10 MiB by default.
//! - **Expiry**: expired records are never returned; a background sweeper
//!   reclaims them through a timing wheel in bounded steps.
//!
//! # Security
//!
//! Values are sealed with AES-256-GCM under per-sandbox keys derived with a
//! per-process salt; the nonce is the record's family id and version, and the
//! associated data binds the sandbox, family and version, so a sealed value
//! moved to another record, version or sandbox fails to open. While a grace
//! window is open the session's current token is kept sealed under a separate
//! key, so grace hits can return it; no token is ever stored in clear.

mod config;
mod engine;
#[doc(hidden)]
pub mod fuzzing;
mod hints;
mod keyindex;
mod memo;
mod persist;
mod prefetch;
mod retired;
mod sandbox;
mod shard;
mod slab;
mod wheel;

pub use config::ConfigError;
pub use engine::{Engine, EngineBuilder};
pub use persist::{Change, Image, Journal, JournalError, Put, RetiredKey, Ticket};
pub use sandbox::{Census, Sandbox};
pub use xems_core::{LimitPolicy, ReusePolicy, SandboxLimits};
