//! xems: an encrypted memory store for web sessions and short-lived secrets.
//!
//! This facade re-exports the pieces most applications need:
//!
//! - [`SessionStore`], the trait every backend implements, with its request
//!   and answer types (from `xems-core`);
//! - [`Engine`], the embedded store (feature `engine`, on by default).
//!
//! ```
//! use xems::{CreateOptions, Engine, ResolveOptions, SessionStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Engine::new();
//! let session = store.create("active", br#"{"user":42}"#, CreateOptions::new()).await?;
//! let next = store.resolve("active", session.token.expose(), ResolveOptions::rotating()).await?;
//! assert!(next.is_some());
//! # Ok::<(), xems::Error>(())
//! # }).unwrap();
//! ```

pub use xems_core::*;
#[cfg(feature = "engine")]
pub use xems_engine::{Census, ConfigError, Engine, EngineBuilder, LimitPolicy, ReusePolicy, Sandbox, SandboxLimits};
