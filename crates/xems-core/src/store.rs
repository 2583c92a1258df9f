//! The `SessionStore` trait and the types of its requests and answers.
//!
//! This trait is the only thing integrations depend on. The embedded engine,
//! the network client and the Redis backend implement it, and one conformance
//! suite (in `xems-testkit`) runs against each of them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::duration::DEFAULT_GRACE;
use crate::error::Result;
use crate::event::Counters;
use crate::token::Token;
use crate::value::{Value, ValueForm};

/// How a record is written: its lifetimes and its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Idle TTL: the record expires this long after its last refresh.
    /// Default 15 minutes; capped at 5 days.
    pub ttl: Option<Duration>,
    /// Absolute lifetime from creation, never extended. Default and maximum
    /// 5 days.
    pub absolute_ttl: Option<Duration>,
    /// The user the session belongs to, for listing and revoking a user's
    /// sessions. Stored only as a keyed hash.
    pub subject: Option<String>,
    /// The form the value is given in (default raw bytes). A store may keep
    /// a value in its JSON form so, or turn it into raw bytes.
    pub value_form: ValueForm,
}

impl CreateOptions {
    /// Defaults: 15 minutes idle, 5 days absolute, no subject.
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

    /// Sets the form the value is given in.
    pub fn with_value_form(mut self, form: ValueForm) -> Self {
        self.value_form = form;
        self
    }
}

/// When `resolve` mints a successor token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// Never rotate.
    #[default]
    Never,
    /// Rotate on every resolve of the current token.
    Always,
    /// Rotate when the current token is older than this (measured by the
    /// store's clock, never the client's).
    OlderThan(Duration),
}

/// Whether `resolve` slides the idle expiry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refresh {
    /// Leave the expiry alone.
    #[default]
    No,
    /// Push the idle expiry to now + the record's idle TTL.
    Idle,
    /// Set a new idle TTL and push the expiry to now + that TTL.
    To(Duration),
}

/// How to resolve a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolveOptions {
    /// When to rotate.
    pub rotate: Rotation,
    /// How long a rotated-away token keeps resolving (default 1 s, maximum
    /// 55 s, zero disables).
    pub grace: Duration,
    /// Whether to slide the idle expiry.
    pub refresh: Refresh,
    /// The form the caller can take the value in. With
    /// [`ValueForm::Json`], a record kept in its JSON form is returned so,
    /// untouched, and a raw one raw ([`Value::form`] says which); with
    /// [`ValueForm::Raw`] (the default) values always come back raw.
    pub value_form: ValueForm,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            rotate: Rotation::Never,
            grace: DEFAULT_GRACE,
            refresh: Refresh::No,
            value_form: ValueForm::Raw,
        }
    }
}

impl ResolveOptions {
    /// No rotation, no refresh: a plain read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rotation on every resolve with the default grace period.
    pub fn rotating() -> Self {
        Self::default().with_rotation(Rotation::Always)
    }

    /// Sets the rotation policy.
    pub fn with_rotation(mut self, rotate: Rotation) -> Self {
        self.rotate = rotate;
        self
    }

    /// Sets the grace period.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets the refresh policy.
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets the form the caller can take the value in.
    pub fn with_value_form(mut self, form: ValueForm) -> Self {
        self.value_form = form;
        self
    }
}

/// The public identifier of a session: safe to show to its user and to log,
/// useless as a credential. Stable across rotations. At most 31 ASCII
/// characters, stored inline (no allocation on the hot path).
///
/// ```
/// use xems_core::SessionId;
///
/// let id = SessionId::from_u64(42);
/// assert_eq!(id.as_str().len(), 11);
/// assert_eq!(SessionId::new(id.as_str()), Some(id));
/// assert_eq!(SessionId::new(""), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    len: u8,
    bytes: [u8; 31],
}

impl SessionId {
    /// The longest id.
    pub const MAX_LEN: usize = 31;

    /// An id from its text: 1 to 31 printable ASCII characters.
    pub fn new(id: &str) -> Option<Self> {
        let b = id.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; 31];
        bytes[..b.len()].copy_from_slice(b);
        Some(SessionId { len: b.len() as u8, bytes })
    }

    /// The id of a 64-bit value: 11 URL-safe base64 characters.
    pub fn from_u64(v: u64) -> Self {
        use base64::Engine as _;
        let mut bytes = [0u8; 31];
        let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(v.to_be_bytes(), &mut bytes)
            .expect("11 characters fit in 31");
        SessionId { len: len as u8, bytes }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("ids are ASCII")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SessionId::new(&s).ok_or_else(|| serde::de::Error::custom("a session id is 1 to 31 printable ASCII characters"))
    }
}

/// What a store knows about a record, without its value or token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionMeta {
    /// The session's public id (stable across rotations).
    pub id: SessionId,
    /// Bumped by every write of the value; starts at 1.
    pub version: u64,
    /// When the record (its family) was created.
    pub created_at: Timestamp,
    /// When it expires if not refreshed.
    pub expires_at: Timestamp,
    /// When it expires whatever happens.
    pub absolute_deadline: Timestamp,
    /// The effective idle TTL.
    pub ttl: Duration,
    /// Whether the TTL asked for in this call was cut to the 5-day cap.
    pub ttl_capped: bool,
}

impl SessionMeta {
    /// Assembles a meta (for store implementations).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: SessionId,
        version: u64,
        created_at: Timestamp,
        expires_at: Timestamp,
        absolute_deadline: Timestamp,
        ttl: Duration,
        ttl_capped: bool,
    ) -> Self {
        SessionMeta { id, version, created_at, expires_at, absolute_deadline, ttl, ttl_capped }
    }
}

/// A new session.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Created {
    /// Its token: hand it to the client, never log it.
    pub token: Token,
    /// Its metadata.
    pub meta: SessionMeta,
}

impl Created {
    /// Assembles a result (for store implementations).
    pub fn new(token: Token, meta: SessionMeta) -> Self {
        Created { token, meta }
    }
}

/// How a resolve was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveOutcome {
    /// The token is current and was kept.
    Current,
    /// The token was current and this call minted its successor.
    Rotated,
    /// The token was rotated away moments ago and is within its grace
    /// period: the value is returned with the session's current token; no
    /// token was minted.
    Grace,
}

/// A resolved session.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Resolved {
    /// The plaintext value.
    pub value: Value,
    /// The token the client must use from now on, when it differs from the
    /// one presented (after a rotation, or on a grace hit).
    pub token: Option<Token>,
    /// What happened.
    pub outcome: ResolveOutcome,
    /// The record's metadata after the call.
    pub meta: SessionMeta,
}

impl Resolved {
    /// Assembles a result (for store implementations).
    pub fn new(value: Value, token: Option<Token>, outcome: ResolveOutcome, meta: SessionMeta) -> Self {
        Resolved { value, token, outcome, meta }
    }
}

/// The answer to a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written; the new metadata.
    Updated(SessionMeta),
    /// Someone wrote in between: nothing was changed.
    Conflict {
        /// The version now stored.
        current_version: u64,
    },
    /// No such record.
    NotFound,
}

/// Per-sandbox figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SandboxStats {
    /// The sandbox.
    pub name: String,
    /// Live records.
    pub records: u64,
    /// Sealed bytes held.
    pub bytes: u64,
    /// Rotated-away tokens remembered for grace and reuse detection.
    pub retired_tokens: u64,
}

impl SandboxStats {
    /// Assembles figures (for store implementations).
    pub fn new(name: String, records: u64, bytes: u64, retired_tokens: u64) -> Self {
        SandboxStats { name, records, bytes, retired_tokens }
    }
}

/// A store's figures and event counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Per-sandbox figures, sorted by name.
    pub sandboxes: Vec<SandboxStats>,
    /// Lifecycle event counters since start.
    pub counters: Counters,
}

impl Stats {
    /// Assembles stats (for store implementations).
    pub fn new(sandboxes: Vec<SandboxStats>, counters: Counters) -> Self {
        Stats { sandboxes, counters }
    }

    /// The figures of one sandbox, if it holds anything.
    pub fn sandbox(&self, name: &str) -> Option<&SandboxStats> {
        self.sandboxes.iter().find(|s| s.name == name)
    }
}

/// An encrypted session store.
///
/// Sandboxes are named namespaces (1-64 characters of `[A-Za-z0-9._:-]`); a
/// token or key from one never resolves in another. Records are addressed by
/// store-minted tokens ([`create`](Self::create) / [`resolve`](Self::resolve))
/// or by caller keys ([`set`](Self::set) / [`get`](Self::get)); both kinds of
/// address behave the same way afterwards, rotation included (that is how the
/// XyPriss host uses its sidecar).
///
/// Operations that take a key treat a rotated-away token within its grace
/// period as its session, and a rotated-away token past its grace as a replay
/// (see the crate docs of `xems-engine`).
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session and mints its token.
    fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> impl Future<Output = Result<Created>> + Send;

    /// Resolves a token, rotating it if asked. `Ok(None)` when the token is
    /// unknown, expired, revoked, or replayed after its grace period.
    fn resolve(
        &self,
        sandbox: &str,
        token: &str,
        opts: ResolveOptions,
    ) -> impl Future<Output = Result<Option<Resolved>>> + Send;

    /// [`resolve`](Self::resolve), with the value appended to `out` instead
    /// of returned: the result's `value` is empty, in the form of the bytes
    /// appended. A server writing answers saves the value's allocation and
    /// a copy (the engine opens the value in place in `out`). On `Ok(None)`
    /// or an error nothing is appended.
    ///
    /// ```
    /// # async fn demo(store: impl xems_core::SessionStore) -> xems_core::Result<()> {
    /// use xems_core::{CreateOptions, ResolveOptions};
    ///
    /// store.set("s", "k", b"v", CreateOptions::new()).await?;
    /// let mut out = b"data: ".to_vec();
    /// let r = store.resolve_into("s", "k", ResolveOptions::new(), &mut out).await?.unwrap();
    /// assert!(r.value.is_empty());
    /// assert_eq!(out, b"data: v");
    /// # Ok(()) }
    /// ```
    fn resolve_into(
        &self,
        sandbox: &str,
        token: &str,
        opts: ResolveOptions,
        out: &mut Vec<u8>,
    ) -> impl Future<Output = Result<Option<Resolved>>> + Send {
        async move {
            let Some(mut r) = self.resolve(sandbox, token, opts).await? else { return Ok(None) };
            out.extend_from_slice(r.value.as_bytes());
            r.value = Value::in_form(Vec::new(), r.value.form());
            Ok(Some(r))
        }
    }

    /// Reads a record without rotating or refreshing it.
    fn get(&self, sandbox: &str, key: &str) -> impl Future<Output = Result<Option<Resolved>>> + Send {
        self.resolve(sandbox, key, ResolveOptions::new())
    }

    /// Writes a record under a caller key, replacing any value (the version
    /// is bumped, the lifetime restarts from `opts`).
    fn set(
        &self,
        sandbox: &str,
        key: &str,
        value: &[u8],
        opts: CreateOptions,
    ) -> impl Future<Output = Result<SessionMeta>> + Send;

    /// Deletes a record and every token of its session. `true` if it existed.
    fn del(&self, sandbox: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Whether a key or token resolves, without reading the value.
    fn exists(&self, sandbox: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Slides the idle expiry (to `ttl` if given, else the record's TTL),
    /// never past the absolute deadline.
    fn touch(
        &self,
        sandbox: &str,
        key: &str,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Option<SessionMeta>>> + Send;

    /// Replaces the value only if the stored version is `expected_version`.
    fn update_if(
        &self,
        sandbox: &str,
        key: &str,
        expected_version: u64,
        value: &[u8],
    ) -> impl Future<Output = Result<UpdateOutcome>> + Send;

    /// Moves a record from sandbox `from` into a new session in `to`,
    /// atomically: the old token is dead when this returns, and at no moment
    /// do both exist. `value` replaces the value if given; the subject is
    /// kept unless `opts` sets one. `Ok(None)` if the token does not resolve.
    fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> impl Future<Output = Result<Option<Created>>> + Send;

    /// The live sessions of a subject in a sandbox.
    fn list_subject(&self, sandbox: &str, subject: &str) -> impl Future<Output = Result<Vec<SessionMeta>>> + Send;

    /// Revokes every session of a subject in a sandbox, except the one `except`
    /// resolves to. Returns how many were revoked.
    fn revoke_subject(
        &self,
        sandbox: &str,
        subject: &str,
        except: Option<&str>,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Revokes one session of a subject by its public id.
    fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId)
    -> impl Future<Output = Result<bool>> + Send;

    /// Figures and counters.
    fn stats(&self) -> impl Future<Output = Result<Stats>> + Send;

    /// Hints that operations on these `(sandbox, key)` addresses follow
    /// soon. A store may start loading what they will read, so that the
    /// memory misses of a batch of independent requests overlap instead of
    /// following one another (`xems serve` calls it for each batch of
    /// pipelined requests before answering them). A store may also take a
    /// lone address's fetches in steps over the thread's next calls, so a
    /// caller serving many clients gains by hinting each client's request
    /// and answering it after the others have hinted theirs (`xems serve`
    /// does, for a connection's lone request).
    ///
    /// Only a hint: it changes no state and no result, creates nothing, and
    /// may do nothing at all (the default).
    fn prefetch(&self, addresses: &[(&str, &str)]) {
        let _ = addresses;
    }
}

/// A boxed future, for [`DynSessionStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe twin of [`SessionStore`], for choosing a backend at run
/// time: every `SessionStore` is a `DynSessionStore`, and
/// `Arc<dyn DynSessionStore>` is a `SessionStore` again.
///
/// ```
/// # async fn demo(store: impl xems_core::SessionStore) {
/// use std::sync::Arc;
/// use xems_core::{DynSessionStore, SessionStore, CreateOptions};
/// let shared: Arc<dyn DynSessionStore> = Arc::new(store);
/// let created = shared.create("active", b"{}", CreateOptions::new()).await;
/// # }
/// ```
#[allow(missing_docs)]
pub trait DynSessionStore: Send + Sync + 'static {
    fn dyn_create<'a>(
        &'a self,
        sandbox: &'a str,
        value: &'a [u8],
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<Created>>;
    fn dyn_resolve<'a>(
        &'a self,
        sandbox: &'a str,
        token: &'a str,
        opts: ResolveOptions,
    ) -> BoxFuture<'a, Result<Option<Resolved>>>;
    fn dyn_set<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        value: &'a [u8],
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<SessionMeta>>;
    fn dyn_del<'a>(&'a self, sandbox: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool>>;
    fn dyn_exists<'a>(&'a self, sandbox: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool>>;
    fn dyn_touch<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<SessionMeta>>>;
    fn dyn_update_if<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        expected_version: u64,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<UpdateOutcome>>;
    fn dyn_migrate<'a>(
        &'a self,
        from: &'a str,
        token: &'a str,
        to: &'a str,
        value: Option<&'a [u8]>,
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<Option<Created>>>;
    fn dyn_list_subject<'a>(&'a self, sandbox: &'a str, subject: &'a str) -> BoxFuture<'a, Result<Vec<SessionMeta>>>;
    fn dyn_revoke_subject<'a>(
        &'a self,
        sandbox: &'a str,
        subject: &'a str,
        except: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize>>;
    fn dyn_revoke_session<'a>(
        &'a self,
        sandbox: &'a str,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool>>;
    fn dyn_stats(&self) -> BoxFuture<'_, Result<Stats>>;
    fn dyn_prefetch(&self, addresses: &[(&str, &str)]);
}

impl<S: SessionStore> DynSessionStore for S {
    fn dyn_create<'a>(
        &'a self,
        sandbox: &'a str,
        value: &'a [u8],
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<Created>> {
        Box::pin(self.create(sandbox, value, opts))
    }
    fn dyn_resolve<'a>(
        &'a self,
        sandbox: &'a str,
        token: &'a str,
        opts: ResolveOptions,
    ) -> BoxFuture<'a, Result<Option<Resolved>>> {
        Box::pin(self.resolve(sandbox, token, opts))
    }
    fn dyn_set<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        value: &'a [u8],
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<SessionMeta>> {
        Box::pin(self.set(sandbox, key, value, opts))
    }
    fn dyn_del<'a>(&'a self, sandbox: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.del(sandbox, key))
    }
    fn dyn_exists<'a>(&'a self, sandbox: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.exists(sandbox, key))
    }
    fn dyn_touch<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<SessionMeta>>> {
        Box::pin(self.touch(sandbox, key, ttl))
    }
    fn dyn_update_if<'a>(
        &'a self,
        sandbox: &'a str,
        key: &'a str,
        expected_version: u64,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<UpdateOutcome>> {
        Box::pin(self.update_if(sandbox, key, expected_version, value))
    }
    fn dyn_migrate<'a>(
        &'a self,
        from: &'a str,
        token: &'a str,
        to: &'a str,
        value: Option<&'a [u8]>,
        opts: CreateOptions,
    ) -> BoxFuture<'a, Result<Option<Created>>> {
        Box::pin(self.migrate(from, token, to, value, opts))
    }
    fn dyn_list_subject<'a>(&'a self, sandbox: &'a str, subject: &'a str) -> BoxFuture<'a, Result<Vec<SessionMeta>>> {
        Box::pin(self.list_subject(sandbox, subject))
    }
    fn dyn_revoke_subject<'a>(
        &'a self,
        sandbox: &'a str,
        subject: &'a str,
        except: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize>> {
        Box::pin(self.revoke_subject(sandbox, subject, except))
    }
    fn dyn_revoke_session<'a>(
        &'a self,
        sandbox: &'a str,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.revoke_session(sandbox, subject, id))
    }
    fn dyn_stats(&self) -> BoxFuture<'_, Result<Stats>> {
        Box::pin(self.stats())
    }
    fn dyn_prefetch(&self, addresses: &[(&str, &str)]) {
        self.prefetch(addresses);
    }
}

impl SessionStore for Arc<dyn DynSessionStore> {
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        (**self).dyn_create(sandbox, value, opts).await
    }
    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        (**self).dyn_resolve(sandbox, token, opts).await
    }
    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        (**self).dyn_set(sandbox, key, value, opts).await
    }
    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        (**self).dyn_del(sandbox, key).await
    }
    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        (**self).dyn_exists(sandbox, key).await
    }
    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        (**self).dyn_touch(sandbox, key, ttl).await
    }
    async fn update_if(&self, sandbox: &str, key: &str, expected_version: u64, value: &[u8]) -> Result<UpdateOutcome> {
        (**self).dyn_update_if(sandbox, key, expected_version, value).await
    }
    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        (**self).dyn_migrate(from, token, to, value, opts).await
    }
    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        (**self).dyn_list_subject(sandbox, subject).await
    }
    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        (**self).dyn_revoke_subject(sandbox, subject, except).await
    }
    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        (**self).dyn_revoke_session(sandbox, subject, id).await
    }
    async fn stats(&self) -> Result<Stats> {
        (**self).dyn_stats().await
    }
    fn prefetch(&self, addresses: &[(&str, &str)]) {
        (**self).dyn_prefetch(addresses);
    }
}
