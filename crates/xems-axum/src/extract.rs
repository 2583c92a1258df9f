//! The extractors: [`Session`] (the session's data) and [`Xems`] (the handle
//! that links, unlinks, migrates and revokes).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use xems_core::{CreateOptions, ResolveOptions, ResolveOutcome, SessionId, SessionMeta, UpdateOutcome, Value};

use crate::config::XemsConfig;
use crate::context::RequestCtx;
use crate::error::XemsError;

/// The request extension the layer installs.
#[derive(Clone)]
pub(crate) struct XemsContext(pub(crate) Arc<RequestCtx>);

fn context(parts: &Parts) -> Result<Arc<RequestCtx>, XemsError> {
    parts.extensions.get::<XemsContext>().map(|c| c.0.clone()).ok_or(XemsError::MissingLayer)
}

/// The session of the request, in the layer's sandbox.
///
/// As an extractor it answers `401` when there is no session and `503` when
/// the store is unavailable; `Option<Session>` gives `None` instead of the
/// `401`. The session is resolved once per request, on first use, with the
/// layer's rotation and grace settings, and its idle expiry slides.
///
/// ```
/// use axum::{Router, routing::get};
/// use xems_axum::{Session, XemsError};
///
/// async fn me(session: Session) -> Result<String, XemsError> {
///     let user: serde_json::Value = session.json()?;
///     Ok(format!("hello {}", user["name"]))
/// }
///
/// async fn home(session: Option<Session>) -> &'static str {
///     if session.is_some() { "welcome back" } else { "please log in" }
/// }
///
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .route("/", get(home))
///     .layer(xems_axum::XemsLayer::builder(xems_engine::Engine::new()).build().unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct Session(Arc<SessionInner>);

#[derive(Debug)]
struct SessionInner {
    value: Value,
    meta: SessionMeta,
    outcome: ResolveOutcome,
}

impl Session {
    pub(crate) fn new(value: Value, meta: SessionMeta, outcome: ResolveOutcome) -> Self {
        Session(Arc::new(SessionInner { value, meta, outcome }))
    }

    /// The session's value, as stored.
    pub fn value(&self) -> &Value {
        &self.0.value
    }

    /// The session's value, parsed as JSON.
    ///
    /// # Errors
    ///
    /// [`XemsError::Json`] (a `500`) when the value is not JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, XemsError> {
        self.0.value.json().map_err(XemsError::Json)
    }

    /// The session's metadata: its public id, version and lifetimes.
    pub fn meta(&self) -> &SessionMeta {
        &self.0.meta
    }

    /// The session's public id: stable across rotations, safe to show.
    pub fn id(&self) -> SessionId {
        self.0.meta.id
    }

    /// How the token was answered: kept, rotated by this request, or a grace
    /// hit (an older token of the session, within its grace period).
    pub fn outcome(&self) -> ResolveOutcome {
        self.0.outcome
    }
}

impl<St: Send + Sync> FromRequestParts<St> for Session {
    type Rejection = XemsError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        context(parts)?.session().await?.ok_or(XemsError::NoSession)
    }
}

impl<St: Send + Sync> OptionalFromRequestParts<St> for Session {
    type Rejection = XemsError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Option<Self>, Self::Rejection> {
        context(parts)?.session().await
    }
}

/// How a new token reaches the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Like the client's current token: in the header if it sent its token
    /// in the header, otherwise in the cookie (the default).
    #[default]
    Auto,
    /// In the cookie only: page scripts can never read it.
    Cookie,
    /// In the response header only, for API clients that keep the token
    /// themselves.
    Header,
    /// Both.
    CookieAndHeader,
}

/// Options of [`Xems::link`] and [`Xems::migrate`].
///
/// ```
/// use std::time::Duration;
/// use xems_axum::{Delivery, LinkOptions};
///
/// let opts = LinkOptions::new().with_subject("user-42").with_ttl(Duration::from_secs(120));
/// assert_eq!(opts.delivery, Delivery::Auto);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkOptions {
    /// Idle TTL; the layer's `ttl` when unset.
    pub ttl: Option<Duration>,
    /// Absolute lifetime; the store's default (5 days) when unset.
    pub absolute_ttl: Option<Duration>,
    /// The user the session belongs to, for listing and revoking a user's
    /// sessions. [`Xems::migrate`] keeps the old session's subject when unset.
    pub subject: Option<String>,
    /// How the new token reaches the client.
    pub delivery: Delivery,
}

impl LinkOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the idle TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the absolute lifetime.
    pub fn with_absolute_ttl(mut self, ttl: Duration) -> Self {
        self.absolute_ttl = Some(ttl);
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets how the new token reaches the client.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    fn create_options(&self, config: &XemsConfig) -> CreateOptions {
        let mut opts = CreateOptions::new().with_ttl(self.ttl.unwrap_or(config.ttl));
        if let Some(abs) = self.absolute_ttl {
            opts = opts.with_absolute_ttl(abs);
        }
        if let Some(subject) = &self.subject {
            opts = opts.with_subject(subject.clone());
        }
        opts
    }
}

/// The session handle of a request: xLink, xUnlink, migration between
/// sandboxes, and a user's other sessions.
///
/// Every operation acts on the token the client holds *now*: after a
/// rotation, a link or a migration earlier in the same request, that is the
/// new token. New tokens reach the client with the response (see
/// [`Delivery`]); the handler never sees a token.
///
/// ```
/// use axum::{Router, routing::post};
/// use xems_axum::{LinkOptions, Session, Xems, XemsError};
///
/// async fn login(xems: Xems) -> Result<&'static str, XemsError> {
///     // ... check the password ...
///     xems.link(br#"{"user":42}"#, LinkOptions::new().with_subject("42")).await?;
///     Ok("logged in") // the response carries Set-Cookie: xems_token=...
/// }
///
/// async fn logout(xems: Xems) -> Result<&'static str, XemsError> {
///     xems.unlink().await?;
///     Ok("bye") // the response clears the cookie
/// }
///
/// async fn elsewhere(xems: Xems, session: Session) -> Result<String, XemsError> {
///     let subject = "42"; // from the session's value, in a real app
///     let n = xems.revoke_others(subject).await?;
///     Ok(format!("{n} other sessions of {} revoked", session.id()))
/// }
///
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/logout", post(logout))
///     .route("/logout-elsewhere", post(elsewhere))
///     .layer(xems_axum::XemsLayer::builder(xems_engine::Engine::new()).build().unwrap());
/// ```
#[derive(Clone)]
pub struct Xems {
    ctx: Arc<RequestCtx>,
}

impl fmt::Debug for Xems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xems").field("sandbox", &self.ctx.config().sandbox()).finish_non_exhaustive()
    }
}

impl<St: Send + Sync> FromRequestParts<St> for Xems {
    type Rejection = XemsError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        Ok(Xems { ctx: context(parts)? })
    }
}

impl Xems {
    /// The layer's configuration.
    pub fn config(&self) -> &XemsConfig {
        self.ctx.config()
    }

    /// The session in the layer's sandbox (the same one the [`Session`]
    /// extractor gives, resolved at most once per request).
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] when the store fails.
    pub async fn session(&self) -> Result<Option<Session>, XemsError> {
        self.ctx.session().await
    }

    /// Whether the client presented a token (valid or not).
    pub fn has_token(&self) -> bool {
        self.ctx.presented().is_some()
    }

    /// xLink: creates a session in the layer's sandbox with `value` and
    /// hands its token to the client. See [`link_in`](Self::link_in).
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn link(&self, value: &[u8], opts: LinkOptions) -> Result<SessionMeta, XemsError> {
        let sandbox = self.ctx.config().sandbox.clone();
        self.link_in(&sandbox, value, opts).await
    }

    /// [`link`](Self::link) with a value serialized as JSON.
    ///
    /// # Errors
    ///
    /// As [`link`](Self::link), and [`XemsError::Json`] if `value` does not
    /// serialize.
    pub async fn link_json<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        opts: LinkOptions,
    ) -> Result<SessionMeta, XemsError> {
        // `Value` zeroizes the serialized copy when dropped.
        let bytes = Value::from(serde_json::to_vec(value).map_err(XemsError::Json)?);
        self.link(bytes.as_bytes(), opts).await
    }

    /// xLink into any sandbox (for instance a short-lived `otp-pending`
    /// session). If the client already held a session in that sandbox, it is
    /// deleted first: a login never keeps a session whose token the client
    /// had before (session fixation).
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn link_in(&self, sandbox: &str, value: &[u8], opts: LinkOptions) -> Result<SessionMeta, XemsError> {
        let store = self.ctx.store();
        if let Some(old) = self.ctx.current_token() {
            match store.dyn_del(sandbox, old.expose()).await {
                Ok(_) | Err(xems_core::Error::InvalidKey(_)) => {}
                Err(e) => return Err(XemsError::store("link", e)),
            }
        }
        let created = store
            .dyn_create(sandbox, value, opts.create_options(self.ctx.config()))
            .await
            .map_err(|e| XemsError::store("link", e))?;
        self.ctx.replace_token(created.token, opts.delivery);
        Ok(created.meta)
    }

    /// xUnlink: deletes the session from the layer's sandbox and clears the
    /// cookie. `true` if a session was deleted.
    ///
    /// # Errors
    ///
    /// When the store fails the session is not deleted and the cookie is
    /// kept: the client is told the logout failed rather than believing it
    /// worked.
    pub async fn unlink(&self) -> Result<bool, XemsError> {
        let sandbox = self.ctx.config().sandbox.clone();
        self.unlink_in(&sandbox).await
    }

    /// xUnlink in any sandbox.
    ///
    /// # Errors
    ///
    /// As [`unlink`](Self::unlink).
    pub async fn unlink_in(&self, sandbox: &str) -> Result<bool, XemsError> {
        let deleted = match self.ctx.current_token() {
            Some(token) => match self.ctx.store().dyn_del(sandbox, token.expose()).await {
                Ok(deleted) => deleted,
                Err(xems_core::Error::InvalidKey(_)) => false,
                Err(e) => return Err(XemsError::store("unlink", e)),
            },
            None => false,
        };
        self.ctx.clear_token();
        Ok(deleted)
    }

    /// Reads the client's session in another sandbox, without rotating it or
    /// sliding its expiry (for instance the `otp-pending` session during an
    /// MFA step).
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn get_in(&self, sandbox: &str) -> Result<Option<Session>, XemsError> {
        let Some(token) = self.ctx.current_token() else { return Ok(None) };
        match self.ctx.store().dyn_resolve(sandbox, token.expose(), ResolveOptions::new()).await {
            Ok(r) => Ok(r.map(|r| Session::new(r.value, r.meta, r.outcome))),
            Err(xems_core::Error::InvalidKey(_)) => Ok(None),
            Err(e) => Err(XemsError::store("get", e)),
        }
    }

    /// Replaces the value of the client's session in `sandbox` if its
    /// version is still `expected_version` (compare-and-set: concurrent
    /// requests never silently lose each other's writes).
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn update_in(
        &self,
        sandbox: &str,
        expected_version: u64,
        value: &[u8],
    ) -> Result<UpdateOutcome, XemsError> {
        let Some(token) = self.ctx.current_token() else { return Ok(UpdateOutcome::NotFound) };
        match self.ctx.store().dyn_update_if(sandbox, token.expose(), expected_version, value).await {
            Ok(outcome) => Ok(outcome),
            Err(xems_core::Error::InvalidKey(_)) => Ok(UpdateOutcome::NotFound),
            Err(e) => Err(XemsError::store("update", e)),
        }
    }

    /// Moves the client's session from sandbox `from` into a new session in
    /// the layer's sandbox, atomically, and hands the new token to the
    /// client (the MFA step `otp-pending` -> `active`). The old token is dead
    /// when this returns. `value` replaces the value if given. `None` if the
    /// client has no session in `from`.
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store
    /// fails; the old session is then untouched.
    pub async fn migrate(
        &self,
        from: &str,
        value: Option<&[u8]>,
        opts: LinkOptions,
    ) -> Result<Option<SessionMeta>, XemsError> {
        let to = self.ctx.config().sandbox.clone();
        self.migrate_to(from, &to, value, opts).await
    }

    /// [`migrate`](Self::migrate) into any sandbox.
    ///
    /// # Errors
    ///
    /// As [`migrate`](Self::migrate).
    pub async fn migrate_to(
        &self,
        from: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: LinkOptions,
    ) -> Result<Option<SessionMeta>, XemsError> {
        let Some(token) = self.ctx.current_token() else { return Ok(None) };
        let created = match self
            .ctx
            .store()
            .dyn_migrate(from, token.expose(), to, value, opts.create_options(self.ctx.config()))
            .await
        {
            Ok(created) => created,
            Err(xems_core::Error::InvalidKey(_)) => None,
            Err(e) => return Err(XemsError::store("migrate", e)),
        };
        Ok(created.map(|c| {
            self.ctx.replace_token(c.token, opts.delivery);
            c.meta
        }))
    }

    /// The live sessions of `subject` in the layer's sandbox.
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn list_sessions(&self, subject: &str) -> Result<Vec<SessionMeta>, XemsError> {
        self.ctx
            .store()
            .dyn_list_subject(&self.ctx.config().sandbox, subject)
            .await
            .map_err(|e| XemsError::store("list_sessions", e))
    }

    /// "Log out everywhere else": revokes every session of `subject` in the
    /// layer's sandbox except the client's own. Revokes nothing (and returns
    /// 0) when the client holds no token, so it can never log out the caller.
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn revoke_others(&self, subject: &str) -> Result<usize, XemsError> {
        let Some(token) = self.ctx.current_token() else { return Ok(0) };
        self.ctx
            .store()
            .dyn_revoke_subject(&self.ctx.config().sandbox, subject, Some(token.expose()))
            .await
            .map_err(|e| XemsError::store("revoke_others", e))
    }

    /// Revokes one session of `subject` by its public id (for a "sign out
    /// this device" button). `true` if it existed.
    ///
    /// # Errors
    ///
    /// [`XemsError::Unavailable`] or [`XemsError::Store`] when the store fails.
    pub async fn revoke_session(&self, subject: &str, id: &SessionId) -> Result<bool, XemsError> {
        self.ctx
            .store()
            .dyn_revoke_session(&self.ctx.config().sandbox, subject, id)
            .await
            .map_err(|e| XemsError::store("revoke_session", e))
    }
}
