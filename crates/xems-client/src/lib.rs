//! An async client for an `xems serve` server, implementing
//! [`SessionStore`] so that application code cannot tell it from the
//! embedded engine.
//!
//! - URLs: `xems://host:port` (or `tcp://host:port`) and `unix:///path`;
//! - a pool of connections, each pipelined: many requests in flight, matched
//!   to responses by order (the server answers each connection in order);
//! - the `auth` handshake on every new connection when a token is set;
//! - a dead connection (server restarted, network error) is replaced on the
//!   next call; requests in flight on it fail with [`Error::Unavailable`]
//!   and are never replayed (a rotation must not run twice);
//! - server errors come back as [`Error::Remote`] with the server's stable
//!   code (or the matching `Error` variant where one can be rebuilt).
//!
//! ```no_run
//! # async fn demo() -> xems_core::Result<()> {
//! use xems_client::Client;
//! use xems_core::{CreateOptions, ResolveOptions, SessionStore};
//!
//! let store = Client::builder("xems://127.0.0.1:7379").auth_token("a-long-shared-token").connect().await?;
//! let created = store.create("active", br#"{"user":42}"#, CreateOptions::new()).await?;
//! let resolved = store.resolve("active", created.token.expose(), ResolveOptions::rotating()).await?;
//! # Ok(()) }
//! ```

mod conn;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use parking_lot::RwLock;
use xems_core::json_text::raw_bytes;
use xems_core::{
    CreateOptions, Created, Error, ResolveOptions, ResolveOutcome, Resolved, Result, SessionId, SessionMeta,
    SessionStore, Stats, Token, UpdateOutcome, Value, validate_sandbox,
};
use xems_protocol::{Response, Status};
use zeroize::Zeroizing;

use crate::conn::{Conn, unavailable};
use crate::wire::Req;

/// Where the server is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

fn parse_url(url: &str) -> Result<Target> {
    let bad = |why: &str| Error::InvalidArgument(format!("xems url {url:?}: {why}"));
    if let Some(rest) = url.strip_prefix("xems://").or_else(|| url.strip_prefix("tcp://")) {
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || !rest.contains(':') {
            return Err(bad("expected xems://host:port"));
        }
        Ok(Target::Tcp(rest.to_owned()))
    } else if let Some(path) = url.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(bad("expected unix:///path/to/xems.sock"));
        }
        Ok(Target::Unix(PathBuf::from(path)))
    } else {
        Err(bad("must start with xems://, tcp:// or unix://"))
    }
}

/// Settings for a [`Client`].
pub struct ClientBuilder {
    url: String,
    auth_token: Option<Zeroizing<String>>,
    pool_size: usize,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ClientBuilder {
    /// The shared token sent in the `auth` handshake (required by TCP
    /// listeners; optional on Unix sockets).
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(Zeroizing::new(token.into()));
        self
    }

    /// Number of pooled connections (default 4, at least 1). Requests are
    /// spread over them round-robin; each carries many in flight.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long to wait for any one response (default 30 s); `None` waits
    /// forever.
    pub fn request_timeout(mut self, d: Option<Duration>) -> Self {
        self.request_timeout = d;
        self
    }

    /// Builds the client and opens its first connection, so a wrong address
    /// or token fails here.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad URL; [`Error::Unavailable`] when
    /// the server cannot be reached; [`Error::Remote`] with code
    /// `unauthorized` for a wrong token.
    pub async fn connect(self) -> Result<Client> {
        let target = parse_url(&self.url)?;
        let slots = (0..self.pool_size).map(|_| Slot::default()).collect();
        let client = Client {
            inner: Arc::new(Inner {
                target,
                token: self.auth_token,
                slots,
                next: AtomicUsize::new(0),
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
            }),
        };
        client.inner.conn(0).await?;
        Ok(client)
    }
}

#[derive(Default)]
struct Slot {
    conn: RwLock<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
}

struct Inner {
    target: Target,
    token: Option<Zeroizing<String>>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

impl Inner {
    /// The live connection of slot `i`, reconnecting if it died.
    async fn conn(&self, i: usize) -> Result<Conn> {
        let slot = &self.slots[i];
        if let Some(c) = slot.conn.read().as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let _guard = slot.connecting.lock().await;
        if let Some(c) = slot.conn.read().as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| unavailable("timed out connecting to the xems server"))??;
        *slot.conn.write() = Some(c.clone());
        Ok(c)
    }

    async fn open(&self) -> Result<Conn> {
        let conn = match &self.target {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await.map_err(Error::unavailable)?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                Conn::start(r, w)
            }
            Target::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(Error::unavailable)?;
                let (r, w) = s.into_split();
                Conn::start(r, w)
            }
        };
        if let Some(token) = &self.token {
            let mut req = Req::new("auth");
            req.token = Some(token.as_str());
            let resp = conn.send(req.encode()).await.map_err(|_| unavailable("connection closed during auth"))??;
            check(resp)?;
        }
        tracing::debug!(target = ?self.target, "connected to xems server");
        Ok(conn)
    }

    async fn call(&self, req: Req<'_>) -> Result<Response> {
        let line = req.encode();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let conn = self.conn(i).await?;
        let rx = conn.send(line);
        let resp = match self.request_timeout {
            Some(t) => tokio::time::timeout(t, rx).await.map_err(|_| unavailable("xems request timed out"))?,
            None => rx.await,
        };
        resp.map_err(|_| unavailable("connection closed"))?
    }
}

/// A connection-pooled, pipelining client of an xems server. Cheap to
/// clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("target", &self.inner.target).field("pool", &self.inner.slots.len()).finish()
    }
}

impl Client {
    /// A builder for a client of the server at `url` (`xems://host:port`,
    /// `tcp://host:port` or `unix:///path`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            auth_token: None,
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Connects with default settings and no auth token.
    ///
    /// # Errors
    ///
    /// See [`ClientBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Client> {
        Self::builder(url).connect().await
    }

    /// `ping`: a round trip to the server.
    ///
    /// # Errors
    ///
    /// The server is unreachable.
    pub async fn ping(&self) -> Result<()> {
        check(self.inner.call(Req::new("ping")).await?).map(drop)
    }

    /// TEST ONLY: reclaims expired records now on a server started with
    /// `--unsafe-test-clock` (refused by any other server).
    ///
    /// # Errors
    ///
    /// The server refuses (`unknown_action`) or is unreachable.
    #[doc(hidden)]
    pub async fn debug_sweep(&self) -> Result<()> {
        check(self.inner.call(Req::new("debug_sweep")).await?).map(drop)
    }

    /// TEST ONLY: moves the clock of a server started with
    /// `--unsafe-test-clock` (refused by any other server).
    ///
    /// # Errors
    ///
    /// The server refuses (`unknown_action`) or is unreachable.
    #[doc(hidden)]
    pub async fn debug_advance_clock(&self, by: Duration) -> Result<()> {
        let mut req = Req::new("debug_advance_clock");
        req.by_ms = Some(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
        check(self.inner.call(req).await?).map(drop)
    }
}

/// An error response as an [`Error`]; the variants that carry no
/// server-side detail are rebuilt, the rest keep their code in
/// [`Error::Remote`].
fn to_error(resp: Response) -> Error {
    let code = resp.code.unwrap_or_else(|| "internal".to_owned());
    let message = resp.error.unwrap_or_else(|| format!("server error {code}"));
    match code.as_str() {
        "token_retired" => Error::TokenRetired,
        "integrity" => Error::Integrity,
        "invalid_argument" => {
            Error::InvalidArgument(message.strip_prefix("invalid argument: ").unwrap_or(&message).to_owned())
        }
        _ => Error::Remote { code, message },
    }
}

fn check(resp: Response) -> Result<Response> {
    match resp.status {
        Status::Ok => Ok(resp),
        Status::Error => Err(to_error(resp)),
    }
}

/// `Ok(None)` for `not_found`, the response otherwise.
fn check_found(resp: Response) -> Result<Option<Response>> {
    if resp.status == Status::Error && resp.code.as_deref() == Some("not_found") {
        return Ok(None);
    }
    check(resp).map(Some)
}

fn malformed(what: &str) -> Error {
    unavailable(&format!("malformed response from server: missing {what}"))
}

fn meta_of(resp: &mut Response) -> Result<SessionMeta> {
    resp.meta.take().map(|m| SessionMeta::from(*m)).ok_or_else(|| malformed("meta"))
}

/// Zero TTLs cannot be written in the TTL grammar; refuse them here the way
/// the engine does, so callers see the same error from every backend.
fn check_ttl(ttl: Option<Duration>) -> Result<()> {
    match ttl {
        Some(d) if d.is_zero() => Err(Error::InvalidArgument("a TTL must be greater than zero".into())),
        _ => Ok(()),
    }
}

fn check_create(o: &CreateOptions) -> Result<()> {
    check_ttl(o.ttl)?;
    check_ttl(o.absolute_ttl)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn value_of(resp: &mut Response) -> Result<Value> {
    let data = Zeroizing::new(resp.data.take().ok_or_else(|| malformed("data"))?);
    base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map(Value::from)
        .map_err(|_| unavailable("malformed response from server: data is not base64"))
}

fn created_of(mut resp: Response) -> Result<Created> {
    let token = resp.new_token.take().ok_or_else(|| malformed("new_token"))?;
    Ok(Created::new(Token::from_string(token), meta_of(&mut resp)?))
}

impl SessionStore for Client {
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        validate_sandbox(sandbox)?;
        check_create(&opts)?;
        // Values travel as base64 of their raw bytes (any bytes, one form).
        let value = raw_bytes(value, opts.value_form)?;
        let mut req = Req::new("create_session").sandbox(sandbox).value(b64(&value)).create_opts(&opts);
        req.verbose = Some(true);
        created_of(check(self.inner.call(req).await?)?)
    }

    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        validate_sandbox(sandbox)?;
        if let xems_core::Refresh::To(t) = opts.refresh {
            check_ttl(Some(t))?;
        }
        let req = Req::new("resolve").sandbox(sandbox).key(token).resolve_opts(&opts);
        let Some(mut resp) = check_found(self.inner.call(req).await?)? else { return Ok(None) };
        let value = value_of(&mut resp)?;
        let outcome = resp.outcome.map(ResolveOutcome::from).ok_or_else(|| malformed("outcome"))?;
        let token = resp.new_token.take().map(Token::from_string);
        Ok(Some(Resolved::new(value, token, outcome, meta_of(&mut resp)?)))
    }

    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        validate_sandbox(sandbox)?;
        check_create(&opts)?;
        let value = raw_bytes(value, opts.value_form)?;
        let mut req = Req::new("set").sandbox(sandbox).key(key).value(b64(&value)).create_opts(&opts);
        req.verbose = Some(true);
        meta_of(&mut check(self.inner.call(req).await?)?)
    }

    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        validate_sandbox(sandbox)?;
        let mut req = Req::new("del").sandbox(sandbox).key(key);
        req.verbose = Some(true);
        check(self.inner.call(req).await?)?.deleted.ok_or_else(|| malformed("deleted"))
    }

    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        validate_sandbox(sandbox)?;
        let req = Req::new("exists").sandbox(sandbox).key(key);
        check(self.inner.call(req).await?)?.exists.ok_or_else(|| malformed("exists"))
    }

    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        validate_sandbox(sandbox)?;
        check_ttl(ttl)?;
        let mut req = Req::new("touch").sandbox(sandbox).key(key);
        req.ttl = ttl.map(wire::duration);
        match check_found(self.inner.call(req).await?)? {
            Some(mut resp) => meta_of(&mut resp).map(Some),
            None => Ok(None),
        }
    }

    async fn update_if(&self, sandbox: &str, key: &str, expected_version: u64, value: &[u8]) -> Result<UpdateOutcome> {
        validate_sandbox(sandbox)?;
        let mut req = Req::new("update_if").sandbox(sandbox).key(key).value(b64(value));
        req.version = Some(expected_version);
        let resp = self.inner.call(req).await?;
        if resp.status == Status::Error {
            match resp.code.as_deref() {
                Some("not_found") => return Ok(UpdateOutcome::NotFound),
                Some("conflict") => {
                    let current_version = resp.current_version.ok_or_else(|| malformed("current_version"))?;
                    return Ok(UpdateOutcome::Conflict { current_version });
                }
                _ => return Err(to_error(resp)),
            }
        }
        let mut resp = resp;
        meta_of(&mut resp).map(UpdateOutcome::Updated)
    }

    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        validate_sandbox(from)?;
        validate_sandbox(to)?;
        check_create(&opts)?;
        let mut req = Req::new("migrate").sandbox(from).key(token).create_opts(&opts);
        req.to = Some(to);
        if let Some(v) = value {
            req = req.value(b64(&raw_bytes(v, opts.value_form)?));
        }
        check_found(self.inner.call(req).await?)?.map(created_of).transpose()
    }

    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        validate_sandbox(sandbox)?;
        let mut req = Req::new("list_subject").sandbox(sandbox);
        req.subject = Some(subject);
        let resp = check(self.inner.call(req).await?)?;
        Ok(resp.sessions.ok_or_else(|| malformed("sessions"))?.into_iter().map(SessionMeta::from).collect())
    }

    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        validate_sandbox(sandbox)?;
        let mut req = Req::new("revoke_subject").sandbox(sandbox);
        req.subject = Some(subject);
        req.except = except;
        let n = check(self.inner.call(req).await?)?.revoked.ok_or_else(|| malformed("revoked"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        validate_sandbox(sandbox)?;
        let mut req = Req::new("revoke_session").sandbox(sandbox);
        req.subject = Some(subject);
        req.session_id = Some(id.as_str());
        Ok(check(self.inner.call(req).await?)?.revoked.ok_or_else(|| malformed("revoked"))? > 0)
    }

    async fn stats(&self) -> Result<Stats> {
        check(self.inner.call(Req::new("stats")).await?)?.stats.map(|s| *s).ok_or_else(|| malformed("stats"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        xems_testkit::logs::capture();
        assert_eq!(parse_url("xems://127.0.0.1:7379").unwrap(), Target::Tcp("127.0.0.1:7379".into()));
        assert_eq!(parse_url("tcp://h:1/").unwrap(), Target::Tcp("h:1".into()));
        assert_eq!(parse_url("unix:///run/x.sock").unwrap(), Target::Unix("/run/x.sock".into()));
        for bad in ["http://x:1", "xems://nohost", "unix://", ""] {
            assert_eq!(parse_url(bad).unwrap_err().code(), "invalid_argument", "{bad}");
        }
    }

    #[test]
    fn error_mapping() {
        xems_testkit::logs::capture();
        let e = to_error(Response::error("token_retired", "x"));
        assert!(matches!(e, Error::TokenRetired));
        let e = to_error(Response::error("invalid_sandbox", "bad name"));
        assert_eq!(e.code(), "invalid_sandbox");
        assert_eq!(e.to_string(), "bad name");
        let e = to_error(Response::error("invalid_argument", "invalid argument: grace"));
        assert_eq!(e.to_string(), "invalid argument: grace");
    }
}
