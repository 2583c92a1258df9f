//! The xems portal: the MFA workflow of the XyPriss XEMS tutorial as a small
//! web application, on top of `xems-axum`.
//!
//! 1. Log in with email and password (argon2id): a temporary session is
//!    linked in the `otp-pending` sandbox (2 minutes, at most 5 OTP
//!    attempts, counted with compare-and-set). Its token travels only in the
//!    HttpOnly cookie.
//! 2. Enter the TOTP code (RFC 6238; the demo user's current code is shown
//!    on the page): the session migrates atomically to the `active` sandbox
//!    and the new cookie is set (xLink). The temporary token is dead at once.
//! 3. The dashboard loads 12 widgets concurrently and refreshes them in
//!    bursts; the token rotates on every request.
//! 4. "Your sessions" lists the user's live sessions, with "log out
//!    everywhere else"; logout is xUnlink.
//!
//! Every page has a JSON twin under `/api`. The binary `xems-portal` serves
//! [`app`] with the embedded engine or a remote `xems serve`.

mod pages;
mod users;
mod web;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use xems_axum::{ConfigError, XemsLayer};
use xems_core::DynSessionStore;

pub use users::{DEMO_EMAIL, DEMO_PASSWORD, TOTP_STEP, TotpRefusal, User, Users};

/// The sandbox of signed-in sessions.
pub const ACTIVE: &str = "active";
/// The sandbox of sessions waiting for their OTP.
pub const PENDING: &str = "otp-pending";
/// How long a password-checked session waits for its OTP.
pub const PENDING_TTL: Duration = Duration::from_secs(120);
/// OTP attempts allowed per password-checked session.
pub const MAX_OTP_ATTEMPTS: u32 = 5;
/// Idle TTL of a signed-in session (it slides on every request).
pub const ACTIVE_TTL: &str = "15m";
/// Absolute lifetime of a signed-in session.
pub const ACTIVE_MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Widgets on the dashboard.
pub const WIDGETS: usize = 12;

/// How the portal is run.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PortalOptions {
    /// Drop the cookie's `Secure` attribute (and its `__Host-` prefix), for
    /// browsers that refuse secure cookies from plain `http://` even on
    /// localhost.
    pub insecure_cookies: bool,
    /// A label of the store, shown in the footer (`memory`, `xems://...`).
    pub store_label: String,
}

impl PortalOptions {
    /// Defaults: secure cookies, store label `memory`.
    pub fn new() -> Self {
        PortalOptions { insecure_cookies: false, store_label: "memory".to_owned() }
    }

    /// Sets [`insecure_cookies`](Self::insecure_cookies).
    pub fn with_insecure_cookies(mut self, on: bool) -> Self {
        self.insecure_cookies = on;
        self
    }

    /// Sets the store label.
    pub fn with_store_label(mut self, label: impl Into<String>) -> Self {
        self.store_label = label.into();
        self
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.insecure_cookies { "xems_token" } else { "__Host-xems_token" }
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) users: Users,
    pub(crate) store: Arc<dyn DynSessionStore>,
    pub(crate) options: PortalOptions,
    pub(crate) started: Instant,
}

/// The portal's router: pages, JSON API and static files, behind the xems
/// layer (sandbox `active`, 15 minutes idle, rotation on every request,
/// 1 s grace).
///
/// # Errors
///
/// The layer's configuration is refused (it is not, with these constants).
pub fn app(store: Arc<dyn DynSessionStore>, options: PortalOptions) -> Result<Router, ConfigError> {
    let layer = XemsLayer::builder(store.clone())
        .with_sandbox(ACTIVE)
        .with_ttl(ACTIVE_TTL)
        .with_auto_rotation(true)
        .with_grace_period(Duration::from_secs(1))
        .with_cookie_name(options.cookie_name())
        .with_secure(!options.insecure_cookies)
        .build()?;
    let state = Arc::new(AppState { users: Users::with_demo_user(), store, options, started: Instant::now() });
    Ok(web::routes(state).layer(layer).layer(axum::middleware::map_response(web::security_headers)))
}
