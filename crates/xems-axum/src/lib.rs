//! xems for axum and tower: encrypted sessions with per-request token
//! rotation, the xLink / xUnlink of XyPriss, and MFA migration between
//! sandboxes.
//!
//! Add an [`XemsLayer`] to a router, then take [`Session`] (the session's
//! data; `401` without one, `Option<Session>` for optional sessions) and
//! [`Xems`] (link, unlink, migrate, revoke) in handlers:
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use xems_axum::{LinkOptions, Session, Xems, XemsError, XemsLayer};
//!
//! async fn login(xems: Xems) -> Result<&'static str, XemsError> {
//!     // ... the password is right ...
//!     xems.link_json(&serde_json::json!({"user": 42}), LinkOptions::new().with_subject("42")).await?;
//!     Ok("welcome")
//! }
//!
//! async fn dashboard(session: Session) -> Result<String, XemsError> {
//!     let v: serde_json::Value = session.json()?;
//!     Ok(format!("user {}", v["user"]))
//! }
//!
//! let layer = XemsLayer::builder(xems_engine::Engine::new())
//!     .with_sandbox("active")
//!     .with_ttl("15m")
//!     .with_auto_rotation(true)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/dashboard", get(dashboard))
//!     .layer(layer);
//! # Ok::<(), xems_axum::ConfigError>(())
//! ```
//!
//! # Behaviour
//!
//! - **Reading the token**: the cookie (`xems_token`) first, then the header
//!   (`x-xypriss-token`).
//! - **Resolving**: once per request, when a handler first asks for the
//!   session, in the layer's sandbox; the idle expiry slides, and the token
//!   rotates per `auto_rotation` (every request by default, never, or when
//!   older than an interval) with the configured grace period.
//! - **Handing out tokens**: when the token changed (a rotation, a grace hit
//!   that returns the session's current token, a link, a migration) the
//!   response carries it the way the client sent its own: `Set-Cookie` for
//!   cookie clients, the header for header clients. Responses that set or
//!   clear the cookie, or carry a token, are `Cache-Control: no-store`. A
//!   rotated token is delivered whatever the handler's status code.
//! - **Failures**: an unavailable store answers `503` with one log line
//!   under the `xems::axum` target, and never clears the cookie: a store
//!   outage is not a logout. A token that resolves to nothing is a `401`
//!   (the cookie is left alone, so a client in the middle of an MFA step
//!   keeps its `otp-pending` session).
//!
//! # Security
//!
//! The cookie defaults to `HttpOnly; Secure; SameSite=Strict; Path=/`. The
//! `__Host-` prefix is supported and checked when the layer is built
//! (`Secure`, `Path=/`, no `Domain`), as are `__Secure-` and
//! `SameSite=None` (both need `Secure`): options a browser would silently
//! refuse are a [`ConfigError`], not a fleet of logged-out users. Tokens and
//! session values are never logged.

mod config;
mod context;
mod error;
mod extract;
mod layer;

pub use config::{
    AutoRotation, ConfigError, CookieOptions, DEFAULT_COOKIE_NAME, DEFAULT_HEADER_NAME, DEFAULT_SANDBOX,
    DurationSetting, SameSite, XemsConfig, XemsLayerBuilder,
};
#[doc(hidden)]
pub use context::fuzz_read_token;
pub use error::XemsError;
pub use extract::{Delivery, LinkOptions, Session, Xems};
pub use layer::{ResponseFuture, XemsLayer, XemsService};
