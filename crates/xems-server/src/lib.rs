//! The `xems` server: the XyPriss-compatible stdio sidecar and the shared
//! network server, generic over any [`xems_core::SessionStore`].
//!
//! - [`handle`] maps one decoded request to one response over any store;
//! - [`serve_connection`] runs one byte stream (stdin/stdout or a socket):
//!   line splitting, the `auth` handshake, ordered answers in batches;
//! - [`serve`] binds TCP and Unix listeners, limits connections and shuts
//!   down gracefully.
//!
//! The wire format is specified in `docs/PROTOCOL.md` and implemented in
//! `xems-protocol`.

pub mod cli;
mod conn;
mod handler;
pub mod harden;
mod net;
pub mod vault_cmd;

pub use conn::{ConnConfig, TestHooks, serve_connection};
pub use handler::handle;
pub use net::{ListenAddr, ServeConfig, ServeError, serve};
