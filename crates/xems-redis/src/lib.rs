//! The xems session store on Redis or Valkey, standalone or Cluster.
//!
//! Same semantics as the embedded engine (the conformance suite of
//! `xems-testkit` runs unchanged against a standalone server and a
//! three-master Cluster), for deployments where sessions must outlive one
//! machine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use xems_core::{CreateOptions, MasterSecret, ResolveOptions, SessionStore};
//! use xems_redis::RedisStore;
//!
//! // Every application node uses the same secret (XEMS_SECRET), so every
//! // node derives the same keys.
//! let secret = MasterSecret::parse(&std::env::var("XEMS_SECRET")?)?;
//! let store = RedisStore::connect("redis://127.0.0.1:6379", secret).await?;
//! let session = store.create("active", br#"{"user":42}"#, CreateOptions::new()).await?;
//! let next = store.resolve("active", session.token.expose(), ResolveOptions::rotating()).await?;
//! # Ok(()) }
//! ```
//!
//! # What Redis sees
//!
//! Only keyed digests and ciphertext. Values are sealed in this process with
//! AES-256-GCM (random nonces, per-hour keys derived from the master secret
//! with HKDF-SHA256, associated data binding the sandbox, the session id and
//! the version); tokens and caller keys appear only as HMAC-SHA256 digests
//! (a caller key's in the name of its pointer key, a token's inside its
//! session's record); while a grace window is open the session's current
//! token is kept sealed (never in clear) so grace hits can return it.
//! Subjects are stored as keyed digests. Sandbox names and session ids
//! appear in key names.
//!
//! A token this store mints is 66 characters: the session's routing byte,
//! its session id encrypted with AES-256 under a key of the sandbox
//! (derived from the secret), and 256 random bits. The encrypted id lets a
//! lookup read the session's record directly: a rotation writes no key for
//! the new token and keeps none for the old one, only a few fields of the
//! record. Every token of one session carries the same encrypted id (as the
//! embedded engine's tokens do): someone who sees two tokens can tell they
//! belong to one session, and nothing more without the secret.
//!
//! # Atomicity and Cluster
//!
//! Every operation on a session is one Lua script (EVALSHA) over keys of one
//! hash slot: the slot of the session's group, `{rXX}`, where `XX` is the
//! routing byte every token of the session shares (see the `store` module
//! source for the full key layout). Rotation, grace hits, convergence of
//! concurrent resolves, reuse detection with family revocation, version
//! compare-and-set and migration are therefore atomic on a Cluster as on a
//! single server. A migration creates the new session in the same group, so
//! one script removes the old session and creates the new one.
//!
//! # Time
//!
//! Scripts take `now` (milliseconds) from the store's [`Clock`](xems_core::Clock)
//! (`xems_core::SystemClock` by default, a `MockClock` in tests) and decide
//! every expiry against it, to the millisecond. Redis's own expiry is set
//! [`expiry_slack`](RedisStoreBuilder::expiry_slack) later (default 60 s) on
//! every key of a session and reclaims memory even when no application node
//! is running; it never decides whether a session is alive. TTLs are capped
//! at 5 days.
//!
//! # Limits, and how exact they are
//!
//! Each sandbox has a ledger (a sorted set of its session ids by idle
//! deadline) in its own slot `{s:<sandbox>}`; the record limit is its size.
//! Creating a session writes the session, then counts it into the ledger
//! (a second round trip); when the ledger is full the new session is removed
//! again and the write refused, or, under `evict-soonest-expiring`, the
//! session with the soonest idle deadline **of that sandbox** is evicted
//! first. Consequences, on a single server and on a Cluster alike:
//!
//! - the limit is never exceeded by concurrent writers (the ledger check is
//!   atomic in its slot);
//! - a process that dies between the two steps leaves a session that is not
//!   counted (it expires normally), or a ledger entry without a session
//!   (counted until the next sweep notices it): the count can be off by the
//!   number of such crashes, never by concurrency;
//! - records that expired but were not swept yet still count: a full sandbox
//!   sweeps itself once before refusing; the background sweeper (every
//!   second by default, on every node) removes them otherwise;
//! - eviction order is exact: ledger scores are never later than a
//!   session's real deadline, and a candidate refreshed since it was scored
//!   is re-filed before anything is evicted.
//!
//! Per-value size limits are exact. Byte limits per sandbox are not counted
//! (Redis's `maxmemory` bounds memory); `SandboxStats::bytes` and
//! `retired_tokens` are reported as 0.
//!
//! # Counters
//!
//! `stats()` returns the record count of every sandbox known to the store
//! (from Redis, all nodes included) and the event counters of **this
//! process** (each node counts its own calls).
//!
//! # Failures
//!
//! An unreachable or failing server gives [`xems_core::Error::Unavailable`]
//! (a web layer answers 503) after at most the response timeout; the
//! connection is re-established on its own when the server is back.

mod builder;
mod config;
mod conn;
mod keys;
mod scripts;
mod store;
pub mod testing;

pub use builder::RedisStoreBuilder;
pub use config::{ConfigError, is_store_url, redact_url};
pub use store::RedisStore;
pub use xems_core::{LimitPolicy, ReusePolicy, SandboxLimits};
