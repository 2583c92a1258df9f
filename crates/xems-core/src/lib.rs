//! Core of xems, the encrypted memory store for sessions and short-lived
//! secrets: the [`SessionStore`] trait every backend implements, its request
//! and answer types, the TTL grammar, tokens, secrets, key derivation and
//! sealing.
//!
//! Backends (`xems-engine`, `xems-client`, `xems-redis`) and integrations
//! (`xems-axum`) depend on this crate and never on each other.

mod clock;
mod crypto;
mod duration;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod json_text;
mod limits;
mod rng;
mod secret;
mod store;
mod token;
mod value;

pub use clock::{Clock, MockClock, SystemClock, Timestamp};
pub use crypto::{Fingerprint, IndexDigest, IndexKey, KeyDeriver, OpenError, SealKey};
pub use duration::{
    CappedTtl, DEFAULT_GRACE, DEFAULT_TTL, DurationError, MAX_GRACE, MAX_TTL, Ttl, cap_ttl, format_duration,
    parse_duration,
};
pub use error::{Error, Result, validate_sandbox};
pub use event::{AtomicCounters, Counters, Event, EventKind, EventSink, TracingAudit};
pub use limits::{LimitPolicy, PolicyError, ReusePolicy, SandboxLimits};
pub use rng::random_bytes;
pub use secret::{KeyId, Keyring, MasterSecret, SecretError};
pub use store::{
    BoxFuture, CreateOptions, Created, DynSessionStore, Refresh, ResolveOptions, ResolveOutcome, Resolved, Rotation,
    SandboxStats, SessionId, SessionMeta, SessionStore, Stats, UpdateOutcome,
};
pub use token::{MAX_KEY_LEN, TOKEN_LEN, TOKEN_RANDOM_BYTES, Token, route_of, validate_key};
pub use value::{Value, ValueForm};

/// The longest accepted subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
