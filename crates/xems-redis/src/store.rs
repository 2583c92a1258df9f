//! The store: key layout, the operations and the `SessionStore`
//! implementation.
//!
//! # Key layout and why it works on a Cluster
//!
//! ```text
//! {P}:{rXX}:f:<sid>      hash    the record of one session (family), with its
//!                                last retired addresses
//! {P}:{rXX}:x:<sid>      zset    retired addresses beyond those, still in grace:
//!                                x|y<digest> -> end of grace (only after bursts)
//! {P}:{rXX}:t:<digest>   string  pointer: caller-key digest -> sid
//! {P}:{s:<sandbox>}:n    zset    the sandbox ledger: sid -> idle deadline
//! {P}:{s:<sandbox>}:p    zset    reservations made before their record exists
//! {P}:{s:<sandbox>}:u:<subject digest>  zset  subject index: sid -> created
//! {P}:sandboxes          set     sandbox names, for stats and the sweeper
//! ```
//!
//! `XX` is the **routing byte** of the session in hex. The session id
//! (`sid`, the public [`SessionId`]) is 64 bits whose top byte is the
//! routing byte. A token this store mints (see `keys`) is that byte, the
//! encrypted sid (the *selector*) and 256 random bits: it names its record
//! directly, so looking it up reads the record and nothing else, and
//! rotating it writes the successor into the record, with **no key per
//! token**. The last retired addresses (the retired-token window) are kept
//! in the record too; one leaving the window while still in its grace
//! window waits in `x:<sid>` until its grace ends (see `scripts` for the
//! details). A caller key (chosen by the application) carries no selector:
//! it is found through a pointer key named by its keyed digest, routes by
//! `route_of(key)`, and is retired as `y<digest>` (minted tokens as
//! `x<digest>`): its pointer lives as long as the family remembers it.
//! Rotating a caller key mints a token for its family, so from then on the
//! session's tokens carry selectors.
//!
//! So the slot of everything a session owns is computable from any of its
//! addresses, before any round trip: a resolve, a rotation with its grace
//! bookkeeping, a reuse revocation and a migration are each **one script in
//! one slot** (the first rotation of a caller key takes two: the first
//! learns which family the key names, so that the successor can name it).
//! `revoke_session` finds the slot from the id. 256 groups spread evenly
//! over any Cluster of up to a few dozen masters.
//!
//! A migration creates a session in another sandbox **in the same group**
//! (the new token keeps the routing byte), so one script deletes the old
//! family and creates the new one: there is no instant at which both exist.
//!
//! Per-sandbox bookkeeping (the record count, the soonest-expiring order and
//! the subject index) lives in the sandbox's own slot `{s:<sandbox>}`,
//! updated in a second step. See the crate docs for how exact that makes the
//! limits.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use futures::future::join_all;
use parking_lot::RwLock;
use redis::{Script, Value};
use xems_core::{
    AtomicCounters, Clock, CreateOptions, Created, DEFAULT_TTL, Error, Event, EventKind, EventSink, Fingerprint,
    Keyring, MAX_GRACE, MAX_SUBJECT_LEN, MAX_TTL, Refresh, ResolveOptions, ResolveOutcome, Resolved, Result, Rotation,
    SandboxStats, SessionId, SessionMeta, SessionStore, Stats, Timestamp, Token, UpdateOutcome, Value as Plain,
    cap_ttl, route_of, validate_key, validate_sandbox,
};
use zeroize::Zeroizing;

use crate::builder::RedisStoreBuilder;
use crate::conn::Conn;
use crate::keys::{SandboxKeys, Secrets, b64};
use crate::scripts::{SCRIPTS, code};
use xems_core::json_text::raw_bytes;
use xems_core::{LimitPolicy, ReusePolicy, SandboxLimits};

/// How many times a write evicts (or sweeps) and tries again.
const EVICTION_ROUNDS: usize = 64;
/// How many times an operation starts over after losing a race.
const RETRIES: usize = 16;
/// How long a reservation made before its record exists is protected from
/// being taken for a leftover.
const PENDING_WINDOW_MS: u64 = 60_000;

/// Settings decided by the builder.
pub(crate) struct Settings {
    pub(crate) prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) default_limits: SandboxLimits,
    pub(crate) sandbox_limits: HashMap<String, SandboxLimits>,
    pub(crate) reuse_policy: ReusePolicy,
    pub(crate) retired_window: usize,
    pub(crate) max_sandboxes: usize,
    pub(crate) slack_ms: u64,
    pub(crate) sweep_budget: usize,
    pub(crate) sinks: Vec<Arc<dyn EventSink>>,
}

/// The xems session store on Redis or Valkey, standalone or Cluster.
///
/// Cheap to clone: clones share the connection. See the crate docs for the
/// data layout and guarantees.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.inner.conn.is_cluster())
            .field("prefix", &self.inner.settings.prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    conn: Conn,
    secrets: Secrets,
    settings: Settings,
    sandboxes: RwLock<HashMap<String, Arc<Sandbox>>>,
    counters: AtomicCounters,
}

struct Sandbox {
    name: String,
    keys: SandboxKeys,
    limits: SandboxLimits,
    registered: AtomicBool,
    ledger: String,
    pending: String,
}

/// A script argument.
struct Arg(Vec<u8>);

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg(s.as_bytes().to_vec())
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg(s.as_bytes().to_vec())
    }
}
impl From<u64> for Arg {
    fn from(n: u64) -> Self {
        Arg(n.to_string().into_bytes())
    }
}
impl From<usize> for Arg {
    fn from(n: usize) -> Self {
        Arg(n.to_string().into_bytes())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(b: Vec<u8>) -> Self {
        Arg(b)
    }
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(Arg::from($a)),*] };
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        Some(Value::SimpleString(s)) => s.parse().unwrap_or(0),
        Some(Value::Double(d)) => *d as i64,
        _ => 0,
    }
}

fn uint(v: Option<&Value>) -> u64 {
    u64::try_from(int(v)).unwrap_or(0)
}

fn bytes(v: Option<Value>) -> Vec<u8> {
    match v {
        Some(Value::BulkString(b)) => b,
        Some(Value::SimpleString(s)) => s.into_bytes(),
        _ => Vec::new(),
    }
}

fn text(v: Option<Value>) -> String {
    String::from_utf8(bytes(v)).unwrap_or_default()
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

/// A record as the access script answers it (codes 1 to 3).
struct Found {
    code: i64,
    sid: String,
    sub: String,
    version: u64,
    created: u64,
    exp: u64,
    abs: u64,
    ttl: u64,
    sealed: Vec<u8>,
    ctok: Vec<u8>,
    cur: String,
    old_exp: u64,
    /// Fingerprint of the address used, for events.
    fp: Option<Fingerprint>,
}

impl Found {
    fn parse(reply: Vec<Value>) -> Self {
        let code = int(reply.first());
        let (version, created, exp, abs, ttl, old_exp) = (
            uint(reply.get(3)),
            uint(reply.get(4)),
            uint(reply.get(5)),
            uint(reply.get(6)),
            uint(reply.get(7)),
            uint(reply.get(11)),
        );
        let mut it = reply.into_iter();
        let sid = text(it.nth(1));
        let sub = text(it.next());
        let sealed = bytes(it.nth(5));
        let ctok = bytes(it.next());
        let cur = text(it.next());
        Found { code, sid, sub, version, created, exp, abs, ttl, sealed, ctok, cur, old_exp, fp: None }
    }

    fn meta(&self, capped: bool) -> SessionMeta {
        meta(&self.sid, self.version, self.created, self.exp, self.abs, self.ttl, capped)
    }
}

fn meta(sid: &str, version: u64, created: u64, exp: u64, abs: u64, ttl: u64, capped: bool) -> SessionMeta {
    SessionMeta::new(
        SessionId::new(sid).unwrap_or_else(|| SessionId::from_u64(0)),
        version,
        Timestamp::from_millis(created),
        Timestamp::from_millis(exp),
        Timestamp::from_millis(abs),
        Duration::from_millis(ttl),
        capped,
    )
}

/// A fresh session id in group `route`: 64 bits, the top byte the group;
/// its text and its bytes (which minted tokens carry, encrypted).
fn new_sid(route: u8) -> (String, [u8; 8]) {
    let mut r = [0u8; 8];
    xems_core::random_bytes(&mut r[1..]);
    r[0] = route;
    (sid_text(r), r)
}

fn sid_text(bytes: [u8; 8]) -> String {
    SessionId::from_u64(u64::from_be_bytes(bytes)).as_str().to_owned()
}

/// The bytes of a session id.
fn sid_bytes(sid: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 9];
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(sid, &mut out).ok()?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&out[..8]);
    (n == 8).then_some(b)
}

/// The group of a session id.
fn sid_route(sid: &str) -> Option<u8> {
    sid_bytes(sid).map(|b| b[0])
}

/// One run of the access script on an address: its mode, the options of
/// the resolution, and the digest and sealed text of the successor a
/// rotation would mint.
struct Access<'a> {
    mode: &'a str,
    opts: &'a ResolveOptions,
    successor: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Access<'a> {
    fn new(mode: &'a str, opts: &'a ResolveOptions) -> Self {
        Access { mode, opts, successor: None }
    }
}

/// How the access script finds an address's family (its `ARGV[16]`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Find {
    /// A token this store minted: it names its record (`x`).
    Minted,
    /// A caller key whose family is known (`y`).
    Caller,
    /// An address looked up through its pointers (`p`).
    Pointer,
}

impl Find {
    /// The script's name for it.
    fn tag(self) -> &'static str {
        match self {
            Find::Minted => "x",
            Find::Caller => "y",
            Find::Pointer => "p",
        }
    }
}

/// How the access script finds an address's family.
struct Addr {
    /// The script's KEYS: the record (`Minted`, `Caller`) or the pointer
    /// candidates (`Pointer`).
    keys: Vec<String>,
    how: Find,
    /// The address's digests (key-name text) for `Minted` and `Caller`.
    digests: Vec<String>,
    /// The key-name prefix of its group.
    base: String,
    /// Its fingerprint under the current secret, for events.
    fp: Fingerprint,
    /// The family, when known before asking Redis (`x`, `y`).
    sid: Option<[u8; 8]>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a "use" of an address found.
enum Used {
    Found(Found),
    /// Missing, expired, revoked or refused: nothing to return.
    Nothing,
    /// A rotated token past its grace (the caller decides what to answer).
    Replayed,
    /// A rotation is due, and the address (a caller key) did not say which
    /// family it names: here it is (sid, the key's digest), mint the
    /// successor for it and ask again.
    NeedsSuccessor([u8; 8], String),
}

impl RedisStore {
    /// Starts building a store for `url`: `redis://host:port[/db]`,
    /// `rediss://...` (TLS), or a Cluster as
    /// `redis+cluster://host1:port1,host2:port2` (`rediss+cluster://` with
    /// TLS). User and password go before the host(s) as usual.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url)
    }

    /// Connects with default settings and `secret`.
    ///
    /// # Errors
    ///
    /// A malformed URL or an unreachable server.
    pub async fn connect(url: &str, secret: xems_core::MasterSecret) -> Result<Self, crate::ConfigError> {
        Self::builder(url).secret(secret).connect().await
    }

    pub(crate) fn new(conn: Conn, keyring: &Keyring, settings: Settings) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                secrets: Secrets::new(keyring),
                settings,
                sandboxes: RwLock::new(HashMap::new()),
                counters: AtomicCounters::default(),
            }),
        }
    }

    pub(crate) fn spawn_sweeper(&self, every: Duration) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: the Redis store's sweeper is not running (call sweep_expired)");
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = inner.sweep_all(4).await {
                    tracing::debug!(error = %e, "expiry sweep failed; will try again");
                }
            }
        });
    }

    /// Sweeps every sandbox's ledger until no expired record is left in it:
    /// expired records leave the record counts and subject indexes, and their
    /// keys are deleted. Returns how many expired records were removed.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when Redis cannot be reached.
    pub async fn sweep_expired(&self) -> Result<usize> {
        self.inner.sweep_all(usize::MAX).await
    }

    /// Runs one plain command on the store's own connection (benchmarks
    /// compare scripted operations with hand-written round trips on the same
    /// connection).
    ///
    /// # Errors
    ///
    /// The command failed or Redis cannot be reached.
    #[doc(hidden)]
    pub async fn raw_command(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        let mut conn = self.inner.conn.clone();
        cmd.query_async(&mut conn).await
    }

    /// Whether this store talks to a Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.is_cluster()
    }
}

impl Inner {
    fn now(&self) -> u64 {
        self.settings.clock.now().as_millis()
    }

    fn base(&self, route: u8) -> String {
        format!("{}:{{r{route:02x}}}:", self.settings.prefix)
    }

    fn sandbox(&self, name: &str) -> Result<Arc<Sandbox>> {
        if let Some(s) = self.sandboxes.read().get(name) {
            return Ok(s.clone());
        }
        validate_sandbox(name)?;
        let mut map = self.sandboxes.write();
        if let Some(s) = map.get(name) {
            return Ok(s.clone());
        }
        if map.len() >= self.settings.max_sandboxes {
            return Err(Error::InvalidArgument(format!(
                "too many sandboxes (this store allows {})",
                self.settings.max_sandboxes
            )));
        }
        let limits = self.settings.sandbox_limits.get(name).unwrap_or(&self.settings.default_limits).clone();
        let p = &self.settings.prefix;
        let sb = Arc::new(Sandbox {
            name: name.to_owned(),
            keys: self.secrets.sandbox(name),
            limits,
            registered: AtomicBool::new(false),
            ledger: format!("{p}:{{s:{name}}}:n"),
            pending: format!("{p}:{{s:{name}}}:p"),
        });
        map.insert(name.to_owned(), sb.clone());
        Ok(sb)
    }

    fn subject_index(&self, sb: &Sandbox, digest: &str) -> String {
        format!("{}:{{s:{}}}:u:{digest}", self.settings.prefix, sb.name)
    }

    fn registry(&self) -> String {
        format!("{}:sandboxes", self.settings.prefix)
    }

    /// Records the sandbox's name so stats and sweepers of every node see it.
    async fn register(&self, sb: &Sandbox) -> Result<()> {
        if sb.registered.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("SADD")
            .arg(self.registry())
            .arg(&sb.name)
            .query_async(&mut conn)
            .await
            .map_err(Error::unavailable)?;
        sb.registered.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn eval(&self, script: &Script, keys: &[&str], args: Vec<Arg>) -> Result<Vec<Value>> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in &args {
            inv.arg(a.0.as_slice());
        }
        let mut conn = self.conn.clone();
        let v: Value = inv.invoke_async(&mut conn).await.map_err(Error::unavailable)?;
        Ok(array(v))
    }

    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(Error::unavailable)
    }

    fn emit(&self, kind: EventKind, sandbox: &str, fp: Option<Fingerprint>, detail: &'static str) {
        self.counters.add(kind, 1);
        if self.settings.sinks.is_empty() {
            return;
        }
        let event = Event::new(kind, sandbox, fp, self.settings.clock.now()).with_detail(detail);
        for sink in &self.settings.sinks {
            sink.on_event(&event);
        }
    }

    fn refuse(&self, sb: &Sandbox, error: Error) -> Error {
        let detail = match &error {
            Error::ValueTooLarge { .. } => "value too large",
            _ => "sandbox full",
        };
        self.emit(EventKind::Refused, &sb.name, None, detail);
        error
    }

    fn check_value(&self, sb: &Sandbox, value: &[u8]) -> Result<()> {
        if value.len() > sb.limits.max_value_bytes {
            return Err(self.refuse(sb, Error::ValueTooLarge { size: value.len(), max: sb.limits.max_value_bytes }));
        }
        Ok(())
    }

    fn full(&self, sb: &Sandbox) -> Error {
        let limit = format!("{} records (policy: {})", sb.limits.max_records, sb.limits.policy);
        self.refuse(sb, Error::SandboxFull { sandbox: sb.name.clone(), limit })
    }

    fn subject_digest(&self, subject: Option<&str>) -> Result<String> {
        match subject {
            None => Ok(String::new()),
            Some(s) if s.is_empty() || s.len() > MAX_SUBJECT_LEN => {
                Err(Error::InvalidKey("a subject must be 1 to 256 bytes"))
            }
            Some(s) => Ok(self.secrets.subject_digests(s).swap_remove(0)),
        }
    }

    /// Idle TTL, absolute deadline and whether either was capped.
    fn lifetimes(
        &self,
        sb: &Sandbox,
        now: u64,
        ttl: Option<Duration>,
        abs: Option<Duration>,
    ) -> Result<(u64, u64, bool)> {
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        let abs = abs.unwrap_or(MAX_TTL);
        if ttl.is_zero() || abs.is_zero() {
            return Err(Error::InvalidArgument("a TTL must be greater than zero".into()));
        }
        let (ttl, abs) = (cap_ttl(ttl), cap_ttl(abs));
        let capped = ttl.capped || abs.capped;
        if capped {
            tracing::info!(sandbox = %sb.name, "TTL capped at the 5-day retention limit");
        }
        Ok((ms(ttl.effective), now + ms(abs.effective), capped))
    }

    /// How to find an address: a token this store minted names its record
    /// (one digest, under the secret that minted it); anything else is
    /// looked up through its pointer under every secret, current first.
    fn addr(&self, sb: &Sandbox, address: &str) -> Addr {
        if let Some((sid, i)) = sb.keys.selected(address) {
            let base = self.base(sid[0]);
            let d = sb.keys.digest_under(i, address.as_bytes());
            let fp = if i == 0 { d.fingerprint() } else { sb.keys.current_digest(address.as_bytes()).fingerprint() };
            return Addr {
                keys: vec![format!("{base}f:{}", sid_text(sid))],
                how: Find::Minted,
                digests: vec![b64(&d.index())],
                base,
                fp,
                sid: Some(sid),
            };
        }
        let base = self.base(route_of(address));
        let digests = sb.keys.digests(address.as_bytes());
        Addr {
            keys: digests.iter().map(|d| format!("{base}t:{}", b64(&d.index()))).collect(),
            how: Find::Pointer,
            digests: Vec::new(),
            base,
            fp: digests[0].fingerprint(),
            sid: None,
        }
    }

    /// A caller key whose family is known: its record, and the digest its
    /// pointer is named by.
    fn caller_addr(&self, sid: [u8; 8], digest: String, fp: Fingerprint) -> Addr {
        let base = self.base(sid[0]);
        Addr {
            keys: vec![format!("{base}f:{}", sid_text(sid))],
            how: Find::Caller,
            digests: vec![digest],
            base,
            fp,
            sid: Some(sid),
        }
    }

    /// Mints a successor token for family `sid`: the token, its digest
    /// (key-name text) and the token sealed for grace hits.
    fn successor(&self, sb: &Sandbox, sid: [u8; 8]) -> (Token, String, Vec<u8>) {
        let t = sb.keys.mint(sid);
        let digest = b64(&sb.keys.current_digest(t.expose().as_bytes()).index());
        let sealed = sb.keys.seal_token(self.now(), &digest, &t);
        (t, digest, sealed)
    }

    // ----- ledger ----------------------------------------------------------

    /// Counts a record into its sandbox if the limit allows.
    #[allow(clippy::too_many_arguments)]
    async fn reserve(
        &self,
        sb: &Sandbox,
        sid: &str,
        exp: u64,
        created: u64,
        sub: &str,
        abs: u64,
        pending: bool,
    ) -> Result<bool> {
        let idx;
        let mut keys = vec![sb.ledger.as_str(), sb.pending.as_str()];
        if !sub.is_empty() {
            idx = self.subject_index(sb, sub);
            keys.push(&idx);
        }
        let pending = if pending { "1" } else { "0" };
        let slack = self.settings.slack_ms;
        let reply: i64 = {
            let mut inv = SCRIPTS.reserve.prepare_invoke();
            for k in &keys {
                inv.key(*k);
            }
            inv.arg(sb.limits.max_records).arg(sid).arg(exp).arg(created).arg(abs + slack).arg(pending).arg(self.now());
            let mut conn = self.conn.clone();
            inv.invoke_async(&mut conn).await.map_err(Error::unavailable)?
        };
        Ok(reply == 1)
    }

    /// Takes a record out of its sandbox's ledger (and subject index).
    /// `mode`: `d` deleted, `g` found gone, `c` confirm a reservation.
    async fn release(&self, sb: &Sandbox, sid: &str, mode: &str, sub: &str) -> Result<bool> {
        let idx;
        let mut keys = vec![sb.ledger.as_str(), sb.pending.as_str()];
        if !sub.is_empty() {
            idx = self.subject_index(sb, sub);
            keys.push(&idx);
        }
        let reply = {
            let mut inv = SCRIPTS.release.prepare_invoke();
            for k in &keys {
                inv.key(*k);
            }
            inv.arg(sid).arg(mode).arg(self.now()).arg(PENDING_WINDOW_MS);
            let mut conn = self.conn.clone();
            let r: i64 = inv.invoke_async(&mut conn).await.map_err(Error::unavailable)?;
            r
        };
        Ok(reply == 1)
    }

    /// Lowers a record's ledger score when its idle deadline moved earlier
    /// (the ledger score is never after the real deadline).
    async fn ledger_lower(&self, sb: &Sandbox, sid: &str, exp: u64) -> Result<()> {
        let _: i64 = self.cmd(redis::cmd("ZADD").arg(&sb.ledger).arg("XX").arg("LT").arg(exp).arg(sid)).await?;
        Ok(())
    }

    /// Makes room for one record under the sandbox's policy; whether it
    /// freed any.
    async fn make_room(&self, sb: &Sandbox, round: usize) -> Result<bool> {
        match sb.limits.policy {
            // Records that expired but were not swept yet do not count.
            LimitPolicy::Refuse => Ok(round == 0 && self.sweep_sandbox(sb, 64).await?.0 > 0),
            LimitPolicy::EvictSoonestExpiring => self.evict_one(sb).await,
        }
    }

    /// Counts a record into its sandbox, making room by the policy.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        sb: &Sandbox,
        sid: &str,
        exp: u64,
        created: u64,
        sub: &str,
        abs: u64,
        pending: bool,
    ) -> Result<bool> {
        for round in 0..EVICTION_ROUNDS {
            if self.reserve(sb, sid, exp, created, sub, abs, pending).await? {
                return Ok(true);
            }
            if !self.make_room(sb, round).await? {
                break;
            }
        }
        Ok(false)
    }

    /// Evicts the record of this sandbox whose idle deadline comes first.
    async fn evict_one(&self, sb: &Sandbox) -> Result<bool> {
        for _ in 0..EVICTION_ROUNDS {
            let first: Vec<(String, f64)> =
                self.cmd(redis::cmd("ZRANGE").arg(&sb.ledger).arg(0).arg(0).arg("WITHSCORES")).await?;
            let Some((sid, score)) = first.into_iter().next() else { return Ok(false) };
            let Some(route) = sid_route(&sid) else {
                self.release(sb, &sid, "d", "").await?;
                return Ok(true);
            };
            let base = self.base(route);
            let rk = format!("{base}f:{sid}");
            let reply =
                self.eval(&SCRIPTS.family, &[&rk], args![self.now(), &sb.name, &base, &sid, "e", score as u64]).await?;
            match int(reply.first()) {
                code::MISS => {
                    if self.release(sb, &sid, "g", "").await? {
                        return Ok(true);
                    }
                }
                c @ (code::EXPIRED | code::EVICTED) => {
                    let sub = text(reply.into_iter().nth(1));
                    self.release(sb, &sid, "d", &sub).await?;
                    if c == code::EXPIRED {
                        self.emit(EventKind::Expired, &sb.name, None, "expired");
                    } else {
                        self.emit(EventKind::Evicted, &sb.name, None, "sandbox full");
                    }
                    return Ok(true);
                }
                _ => {
                    // Refreshed since it was scored: file it at its real deadline.
                    let exp = uint(reply.get(1));
                    let _: i64 = self.cmd(redis::cmd("ZADD").arg(&sb.ledger).arg("XX").arg(exp).arg(&sid)).await?;
                }
            }
        }
        Ok(false)
    }

    /// One budgeted sweep step over a sandbox's ledger: (expired records
    /// removed, whether the step used its whole budget).
    async fn sweep_sandbox(&self, sb: &Sandbox, budget: usize) -> Result<(usize, bool)> {
        let now = self.now();
        let due: Vec<String> = self
            .cmd(redis::cmd("ZRANGEBYSCORE").arg(&sb.ledger).arg("-inf").arg(now).arg("LIMIT").arg(0).arg(budget))
            .await?;
        let full = due.len() >= budget;
        let checks = due.iter().map(|sid| async move {
            let Some(route) = sid_route(sid) else { return Ok::<_, Error>((sid, vec![Value::Int(code::MISS)])) };
            let base = self.base(route);
            let rk = format!("{base}f:{sid}");
            Ok((sid, self.eval(&SCRIPTS.family, &[&rk], args![now, &sb.name, &base, sid, "s", ""]).await?))
        });
        let mut expired = 0;
        for r in join_all(checks).await {
            let (sid, reply) = r?;
            match int(reply.first()) {
                code::MISS => {
                    if self.release(sb, sid, "g", "").await? {
                        expired += 1;
                        self.emit(EventKind::Expired, &sb.name, None, "expired");
                    }
                }
                code::EXPIRED => {
                    let sub = text(reply.into_iter().nth(1));
                    self.release(sb, sid, "d", &sub).await?;
                    expired += 1;
                    self.emit(EventKind::Expired, &sb.name, None, "expired");
                }
                _ => {
                    let exp = uint(reply.get(1));
                    let _: i64 = self.cmd(redis::cmd("ZADD").arg(&sb.ledger).arg("XX").arg(exp).arg(sid)).await?;
                }
            }
        }
        Ok((expired, full))
    }

    /// Every sandbox this node or the registry knows.
    async fn all_sandboxes(&self) -> Result<Vec<Arc<Sandbox>>> {
        let names: Vec<String> = self.cmd(redis::cmd("SMEMBERS").arg(self.registry())).await?;
        let mut out = Vec::new();
        for name in names {
            if let Ok(sb) = self.sandbox(&name) {
                out.push(sb);
            }
        }
        for sb in self.sandboxes.read().values() {
            if !out.iter().any(|s| s.name == sb.name) {
                out.push(sb.clone());
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn sweep_all(&self, max_steps: usize) -> Result<usize> {
        let mut total = 0;
        for sb in self.all_sandboxes().await? {
            for _ in 0..max_steps {
                let (n, more) = self.sweep_sandbox(&sb, self.settings.sweep_budget).await?;
                total += n;
                if !more {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Bookkeeping after a family script deleted a family.
    async fn dropped(&self, sb: &Sandbox, code: i64, sid: &str, sub: &str, fp: Option<Fingerprint>) -> Result<()> {
        self.release(sb, sid, "d", sub).await?;
        match code {
            code::EXPIRED => self.emit(EventKind::Expired, &sb.name, fp, "expired"),
            code::REUSE_REVOKED => self.emit(EventKind::Deleted, &sb.name, fp, "session revoked after token reuse"),
            _ => self.emit(EventKind::Deleted, &sb.name, fp, ""),
        }
        Ok(())
    }

    // ----- addresses -------------------------------------------------------

    /// Runs the access script (see `scripts::ACCESS`) on `addr`.
    async fn run_access(&self, sb: &Sandbox, addr: &Addr, access: Access<'_>) -> Result<Vec<Value>> {
        let Access { mode, opts, successor } = access;
        let (rot, age) = match opts.rotate {
            Rotation::Never => ("0", 0),
            Rotation::Always => ("1", 0),
            Rotation::OlderThan(d) => ("2", ms(d)),
        };
        let (rf, rttl) = match opts.refresh {
            Refresh::No => ("0", 0),
            Refresh::Idle => ("1", 0),
            Refresh::To(d) => ("2", ms(cap_ttl(d).effective)),
        };
        let (next, ctok) = successor.unwrap_or(("", Vec::new()));
        let reuse = if self.settings.reuse_policy == ReusePolicy::RevokeSession { "1" } else { "0" };
        let n = if addr.how == Find::Pointer { addr.keys.len() } else { addr.digests.len() };
        let now = self.now();
        let mut args = args![
            now,
            &sb.name,
            n,
            &addr.base,
            mode,
            reuse,
            self.settings.slack_ms,
            rot,
            age,
            // Fixed width: the script stores it in 36-character entries.
            &format!("{:013}", now + ms(opts.grace)),
            rf,
            rttl,
            next,
            ctok,
            self.settings.retired_window,
            addr.how.tag()
        ];
        args.extend(addr.digests.iter().map(Arg::from));
        let key_refs: Vec<&str> = addr.keys.iter().map(String::as_str).collect();
        self.eval(&SCRIPTS.access, &key_refs, args).await
    }

    /// Runs the access script in a mode that uses the address (`r`, `t`,
    /// `w`), handling replays, expiry and the ledger. `successor` is the
    /// digest and sealed text of the token a rotation would mint.
    async fn use_addr(&self, sb: &Sandbox, addr: &Addr, access: Access<'_>) -> Result<Used> {
        let fp = addr.fp;
        let reply = self.run_access(sb, addr, access).await?;
        match int(reply.first()) {
            code::CURRENT | code::ROTATED | code::GRACE => {
                let mut found = Found::parse(reply);
                found.fp = Some(fp);
                Ok(Used::Found(found))
            }
            code::REUSE => {
                self.emit(EventKind::ReuseDetected, &sb.name, Some(fp), "");
                Ok(Used::Replayed)
            }
            c @ code::REUSE_REVOKED => {
                self.emit(EventKind::ReuseDetected, &sb.name, Some(fp), "");
                let mut it = reply.into_iter().skip(1);
                let (sid, sub) = (text(it.next()), text(it.next()));
                self.dropped(sb, c, &sid, &sub, Some(fp)).await?;
                Ok(Used::Replayed)
            }
            c @ code::EXPIRED => {
                let mut it = reply.into_iter().skip(1);
                let (sid, sub) = (text(it.next()), text(it.next()));
                self.dropped(sb, c, &sid, &sub, Some(fp)).await?;
                Ok(Used::Nothing)
            }
            code::NEEDS_SUCCESSOR => {
                let mut it = reply.into_iter().skip(1);
                let (sid, digest) = (text(it.next()), text(it.next()));
                Ok(sid_bytes(&sid).map_or(Used::Nothing, |sid| Used::NeedsSuccessor(sid, digest)))
            }
            _ => Ok(Used::Nothing),
        }
    }

    /// Runs the access script in a mode that does not use the address
    /// (`e`, `d`, `k`): returns the code and, for `d`/`k`, the sid.
    async fn probe(&self, sb: &Sandbox, address: &str, mode: &str) -> Result<(i64, String)> {
        let addr = self.addr(sb, address);
        let opts = ResolveOptions::new().with_refresh(Refresh::No);
        let reply = self.run_access(sb, &addr, Access::new(mode, &opts)).await?;
        let c = int(reply.first());
        let mut it = reply.into_iter().skip(1);
        let (sid, sub) = (text(it.next()), text(it.next()));
        if c == code::EXPIRED || c == code::DELETED {
            self.dropped(sb, c, &sid, &sub, Some(addr.fp)).await?;
        }
        Ok((c, sid))
    }

    async fn ledger_after_write(&self, sb: &Sandbox, sid: &str, exp: u64, old_exp: u64) -> Result<()> {
        if exp < old_exp {
            self.ledger_lower(sb, sid, exp).await?;
        }
        Ok(())
    }

    fn open_found(&self, sb: &Sandbox, f: &Found) -> Result<Zeroizing<Vec<u8>>> {
        sb.keys.open_value(&f.sid, f.version, &f.sealed)
    }

    // ----- operations ------------------------------------------------------

    async fn create(&self, sandbox: &str, value: &[u8], opts: &CreateOptions) -> Result<Created> {
        let sb = self.sandbox(sandbox)?;
        self.check_value(&sb, value)?;
        let sub = self.subject_digest(opts.subject.as_deref())?;
        let now = self.now();
        let (ttl, abs, capped) = self.lifetimes(&sb, now, opts.ttl, opts.absolute_ttl)?;
        self.register(&sb).await?;
        for _ in 0..RETRIES {
            let mut route = [0u8; 1];
            xems_core::random_bytes(&mut route);
            let route = route[0];
            let (sid, sid_raw) = new_sid(route);
            // The token names its record: no pointer key.
            let token = sb.keys.mint(sid_raw);
            let base = self.base(route);
            let digest = sb.keys.current_digest(token.expose().as_bytes());
            let rk = format!("{base}f:{sid}");
            let sealed = sb.keys.seal_value(now, &sid, 1, value);
            let reply = self
                .eval(
                    &SCRIPTS.create,
                    &[&rk],
                    args![
                        now,
                        &sb.name,
                        &base,
                        &sid,
                        sealed,
                        ttl,
                        abs,
                        &sub,
                        self.settings.slack_ms,
                        &b64(&digest.index())
                    ],
                )
                .await?;
            if int(reply.first()) != 0 {
                continue;
            }
            let exp = uint(reply.get(1));
            self.count_new(&sb, &base, &rk, &sid, exp, now, &sub, abs).await?;
            self.emit(EventKind::Created, &sb.name, Some(digest.fingerprint()), "");
            return Ok(Created::new(token, meta(&sid, 1, now, exp, abs, ttl, capped)));
        }
        Err(Error::unavailable("could not find a free session id"))
    }

    /// Counts a just-created record in, or removes it and refuses.
    #[allow(clippy::too_many_arguments)]
    async fn count_new(
        &self,
        sb: &Sandbox,
        base: &str,
        rk: &str,
        sid: &str,
        exp: u64,
        now: u64,
        sub: &str,
        abs: u64,
    ) -> Result<()> {
        if self.admit(sb, sid, exp, now, sub, abs, false).await? {
            return Ok(());
        }
        self.eval(&SCRIPTS.family, &[rk], args![self.now(), &sb.name, base, sid, "z", ""]).await?;
        Err(self.full(sb))
    }

    async fn resolve(&self, sandbox: &str, token: &str, opts: &ResolveOptions) -> Result<Option<Resolved>> {
        validate_key(token)?;
        if opts.grace > MAX_GRACE {
            return Err(Error::InvalidArgument(format!(
                "grace period of {} ms is above the maximum of 55000 ms",
                opts.grace.as_millis()
            )));
        }
        let capped = match opts.refresh {
            Refresh::To(d) if d.is_zero() => {
                return Err(Error::InvalidArgument("a TTL must be greater than zero".into()));
            }
            Refresh::To(d) => cap_ttl(d).capped,
            _ => false,
        };
        let sb = self.sandbox(sandbox)?;
        let mut addr = self.addr(&sb, token);
        for _ in 0..RETRIES {
            // A rotating resolve brings its candidate successor, sealed: the
            // script keeps it only if it rotates. The successor names the
            // family, so it needs the family: a caller key learns it first
            // (`NeedsSuccessor`).
            let candidate = match addr.sid {
                Some(sid) if opts.rotate != Rotation::Never => Some(self.successor(&sb, sid)),
                _ => None,
            };
            let successor = candidate.as_ref().map(|(_, d, s)| (d.as_str(), s.clone()));
            let found = match self.use_addr(&sb, &addr, Access { mode: "r", opts, successor }).await? {
                Used::Found(f) => f,
                Used::NeedsSuccessor(sid, digest) => {
                    addr = self.caller_addr(sid, digest, addr.fp);
                    continue;
                }
                Used::Nothing | Used::Replayed => return Ok(None),
            };
            let fp = found.fp;
            let value = Plain::from(self.open_found(&sb, &found)?);
            let (next, outcome) = match found.code {
                code::ROTATED => {
                    self.emit(EventKind::Rotated, &sb.name, None, "");
                    self.emit(EventKind::Resolved, &sb.name, fp, "");
                    (candidate.map(|(t, _, _)| t), ResolveOutcome::Rotated)
                }
                code::GRACE => {
                    self.counters.add(EventKind::Resolved, 1);
                    self.emit(EventKind::GraceHit, &sb.name, fp, "");
                    (Some(sb.keys.open_token(&found.cur, &found.ctok)?), ResolveOutcome::Grace)
                }
                _ => {
                    self.emit(EventKind::Resolved, &sb.name, fp, "");
                    (None, ResolveOutcome::Current)
                }
            };
            self.ledger_after_write(&sb, &found.sid, found.exp, found.old_exp).await?;
            return Ok(Some(Resolved::new(value, next, outcome, found.meta(capped))));
        }
        Err(Error::unavailable("the session kept changing under this resolve"))
    }

    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: &CreateOptions) -> Result<SessionMeta> {
        validate_key(key)?;
        let sb = self.sandbox(sandbox)?;
        self.check_value(&sb, value)?;
        let sub = self.subject_digest(opts.subject.as_deref())?;
        let (ttl, abs, capped) = self.lifetimes(&sb, self.now(), opts.ttl, opts.absolute_ttl)?;
        self.register(&sb).await?;
        let route = route_of(key);
        let base = self.base(route);
        let addr = self.addr(&sb, key);
        for _ in 0..RETRIES {
            let now = self.now();
            match self.use_addr(&sb, &addr, Access::new("w", &ResolveOptions::new())).await? {
                Used::Replayed => return Err(Error::TokenRetired),
                Used::NeedsSuccessor(..) => continue,
                Used::Found(f) => {
                    let sealed = sb.keys.seal_value(now, &f.sid, f.version + 1, value);
                    let rk = format!("{base}f:{}", f.sid);
                    let reply = self
                        .eval(
                            &SCRIPTS.write,
                            &[&rk],
                            args![
                                now,
                                &sb.name,
                                &base,
                                &f.sid,
                                f.version,
                                sealed,
                                "s",
                                ttl,
                                abs,
                                &sub,
                                self.settings.slack_ms
                            ],
                        )
                        .await?;
                    if int(reply.first()) != 2 {
                        continue;
                    }
                    let (version, created, exp, abs, ttl, old_exp) = (
                        uint(reply.get(1)),
                        uint(reply.get(2)),
                        uint(reply.get(3)),
                        uint(reply.get(4)),
                        uint(reply.get(5)),
                        uint(reply.get(8)),
                    );
                    let mut it = reply.into_iter().skip(6);
                    let (old_sub, new_sub) = (text(it.next()), text(it.next()));
                    if old_sub != new_sub {
                        let old_idx = self.subject_index(&sb, if old_sub.is_empty() { &new_sub } else { &old_sub });
                        let new_idx = self.subject_index(&sb, &new_sub);
                        self.eval(
                            &SCRIPTS.resubject,
                            &[&old_idx, &new_idx],
                            args![&f.sid, created, abs + self.settings.slack_ms],
                        )
                        .await?;
                    }
                    self.ledger_after_write(&sb, &f.sid, exp, old_exp).await?;
                    return Ok(meta(&f.sid, version, created, exp, abs, ttl, capped));
                }
                Used::Nothing => {
                    // A caller key (or a token-shaped address that leads
                    // nowhere, as the engine does): found through a pointer.
                    let (sid, _) = new_sid(route);
                    let digest = b64(&sb.keys.current_digest(key.as_bytes()).index());
                    let ptr = format!("{base}t:{digest}");
                    let rk = format!("{base}f:{sid}");
                    let sealed = sb.keys.seal_value(now, &sid, 1, value);
                    let reply = self
                        .eval(
                            &SCRIPTS.create,
                            &[&rk, &ptr],
                            args![now, &sb.name, &base, &sid, sealed, ttl, abs, &sub, self.settings.slack_ms, &digest],
                        )
                        .await?;
                    if int(reply.first()) != 0 {
                        // Created by someone else meanwhile: replace it.
                        continue;
                    }
                    let exp = uint(reply.get(1));
                    self.count_new(&sb, &base, &rk, &sid, exp, now, &sub, abs).await?;
                    let fp = sb.keys.current_digest(key.as_bytes()).fingerprint();
                    self.emit(EventKind::Created, &sb.name, Some(fp), "");
                    return Ok(meta(&sid, 1, now, exp, abs, ttl, capped));
                }
            }
        }
        Err(Error::unavailable("the record kept changing under this write"))
    }

    async fn update_if(&self, sandbox: &str, key: &str, expected: u64, value: &[u8]) -> Result<UpdateOutcome> {
        validate_key(key)?;
        let sb = self.sandbox(sandbox)?;
        self.check_value(&sb, value)?;
        let addr = self.addr(&sb, key);
        let f = match self.use_addr(&sb, &addr, Access::new("w", &ResolveOptions::new())).await? {
            Used::Replayed => return Err(Error::TokenRetired),
            Used::Found(f) => f,
            Used::Nothing | Used::NeedsSuccessor(..) => return Ok(UpdateOutcome::NotFound),
        };
        let base = addr.base;
        if f.version != expected {
            return Ok(UpdateOutcome::Conflict { current_version: f.version });
        }
        let now = self.now();
        let sealed = sb.keys.seal_value(now, &f.sid, expected + 1, value);
        let rk = format!("{base}f:{}", f.sid);
        let reply = self
            .eval(
                &SCRIPTS.write,
                &[&rk],
                args![now, &sb.name, &base, &f.sid, expected, sealed, "u", 0u64, 0u64, "", self.settings.slack_ms],
            )
            .await?;
        Ok(match int(reply.first()) {
            2 => UpdateOutcome::Updated(meta(
                &f.sid,
                uint(reply.get(1)),
                uint(reply.get(2)),
                uint(reply.get(3)),
                uint(reply.get(4)),
                uint(reply.get(5)),
                false,
            )),
            1 => UpdateOutcome::Conflict { current_version: uint(reply.get(1)) },
            _ => UpdateOutcome::NotFound,
        })
    }

    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        validate_key(key)?;
        let refresh = match ttl {
            Some(d) if d.is_zero() => return Err(Error::InvalidArgument("a TTL must be greater than zero".into())),
            Some(d) => Refresh::To(d),
            None => Refresh::Idle,
        };
        let capped = ttl.is_some_and(|d| cap_ttl(d).capped);
        let sb = self.sandbox(sandbox)?;
        let opts = ResolveOptions::new().with_refresh(refresh);
        let addr = self.addr(&sb, key);
        match self.use_addr(&sb, &addr, Access::new("t", &opts)).await? {
            Used::Found(f) => {
                self.ledger_after_write(&sb, &f.sid, f.exp, f.old_exp).await?;
                Ok(Some(f.meta(capped)))
            }
            _ => Ok(None),
        }
    }

    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: &CreateOptions,
    ) -> Result<Option<Created>> {
        validate_key(token)?;
        let src = self.sandbox(from)?;
        let dst = self.sandbox(to)?;
        if let Some(v) = value {
            self.check_value(&dst, v)?;
        }
        let new_sub = self.subject_digest(opts.subject.as_deref())?;
        let (ttl, abs_ttl_probe, capped) = self.lifetimes(&dst, 0, opts.ttl, opts.absolute_ttl)?;
        self.register(&dst).await?;
        let addr = self.addr(&src, token);
        let base = addr.base.clone();
        for _ in 0..RETRIES {
            let f = match self.use_addr(&src, &addr, Access::new("w", &ResolveOptions::new())).await? {
                Used::Found(f) => f,
                Used::Nothing | Used::Replayed | Used::NeedsSuccessor(..) => return Ok(None),
            };
            let plaintext: Zeroizing<Vec<u8>> = match value {
                Some(v) => Zeroizing::new(v.to_vec()),
                None => self.open_found(&src, &f)?,
            };
            if value.is_none() {
                self.check_value(&dst, &plaintext)?;
            }
            let now = self.now();
            let abs = now + abs_ttl_probe;
            // The new session is in the same group, so one script in one
            // slot moves it; its token names its new record.
            let Some(route) = sid_route(&f.sid) else { return Ok(None) };
            let (sid, sid_raw) = new_sid(route);
            let new_token = dst.keys.mint(sid_raw);
            let digest = dst.keys.current_digest(new_token.expose().as_bytes());
            let new_rk = format!("{base}f:{sid}");
            let old_rk = format!("{base}f:{}", f.sid);
            let sealed = dst.keys.seal_value(now, &sid, 1, &plaintext);
            let sub = if new_sub.is_empty() { f.sub.clone() } else { new_sub.clone() };
            let exp = (now + ttl).min(abs);
            // Room in the target first: a full target refuses before the
            // source is touched.
            if !self.admit(&dst, &sid, exp, now, &sub, abs, true).await? {
                return Err(self.full(&dst));
            }
            let reply = self
                .eval(
                    &SCRIPTS.migrate,
                    &[&old_rk, &new_rk],
                    args![
                        now,
                        &src.name,
                        &base,
                        &f.sid,
                        f.version,
                        &dst.name,
                        &sid,
                        sealed,
                        ttl,
                        abs,
                        &new_sub,
                        self.settings.slack_ms,
                        &b64(&digest.index())
                    ],
                )
                .await?;
            match int(reply.first()) {
                2 => {
                    let old_sub = text(reply.get(1).cloned());
                    let exp = uint(reply.get(3));
                    self.release(&dst, &sid, "c", "").await?;
                    self.release(&src, &f.sid, "d", &old_sub).await?;
                    let fp = src.keys.current_digest(token.as_bytes()).fingerprint();
                    self.emit(EventKind::Migrated, &src.name, Some(fp), "");
                    self.emit(EventKind::Created, &dst.name, Some(digest.fingerprint()), "");
                    return Ok(Some(Created::new(new_token, meta(&sid, 1, now, exp, abs, ttl, capped))));
                }
                c => {
                    self.release(&dst, &sid, "d", &sub).await?;
                    if c == 0 {
                        return Ok(None);
                    }
                }
            }
        }
        Err(Error::unavailable("the session kept changing under this migration"))
    }

    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        let sb = self.sandbox(sandbox)?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidKey("a subject must be 1 to 256 bytes"));
        }
        let now = self.now();
        let mut out = Vec::new();
        for digest in self.secrets.subject_digests(subject) {
            let idx = self.subject_index(&sb, &digest);
            let sids: Vec<String> = self.cmd(redis::cmd("ZRANGE").arg(&idx).arg(0).arg(-1)).await?;
            let reads = sids.iter().map(|sid| async move {
                let Some(route) = sid_route(sid) else { return Ok::<_, Error>((sid, None)) };
                let rk = format!("{}f:{sid}", self.base(route));
                let fields: Vec<Option<String>> = self
                    .cmd(redis::cmd("HMGET").arg(&rk).arg(&["sb", "sub", "ver", "ct", "exp", "abs", "ttl"]))
                    .await?;
                Ok((sid, Some(fields)))
            });
            for r in join_all(reads).await {
                let (sid, fields) = r?;
                let n = |i: usize| fields.as_ref().and_then(|f| f[i].as_deref()).and_then(|s| s.parse::<u64>().ok());
                let live = fields
                    .as_ref()
                    .is_some_and(|f| f[0].as_deref() == Some(&sb.name) && f[1].as_deref() == Some(digest.as_str()))
                    && n(4).is_some_and(|exp| now < exp);
                if live {
                    out.push(meta(
                        sid,
                        n(2).unwrap_or(0),
                        n(3).unwrap_or(0),
                        n(4).unwrap_or(0),
                        n(5).unwrap_or(0),
                        n(6).unwrap_or(0),
                        false,
                    ));
                } else if fields.as_ref().is_none_or(|f| f[0].is_none() || f[1].as_deref() != Some(digest.as_str())) {
                    // Gone or moved to another subject: prune the index.
                    let _: i64 = self.cmd(redis::cmd("ZREM").arg(&idx).arg(sid)).await?;
                }
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes the family `sid` if its subject digest is `digest`; whether
    /// a live session was revoked.
    async fn revoke_sid(&self, sb: &Sandbox, sid: &str, digest: &str, detail: &'static str) -> Result<bool> {
        let Some(route) = sid_route(sid) else { return Ok(false) };
        let base = self.base(route);
        let rk = format!("{base}f:{sid}");
        let reply = self.eval(&SCRIPTS.family, &[&rk], args![self.now(), &sb.name, &base, sid, "r", digest]).await?;
        let c = int(reply.first());
        if c == code::MISS {
            return Ok(false);
        }
        let sub = text(reply.into_iter().nth(1));
        self.release(sb, sid, "d", &sub).await?;
        if c == code::EXPIRED {
            self.emit(EventKind::Expired, &sb.name, None, "expired");
            return Ok(false);
        }
        self.emit(EventKind::Deleted, &sb.name, None, detail);
        Ok(true)
    }

    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        let sb = self.sandbox(sandbox)?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidKey("a subject must be 1 to 256 bytes"));
        }
        let keep = match except {
            Some(t) => {
                validate_key(t)?;
                let (c, sid) = self.probe(&sb, t, "k").await?;
                (c == code::CURRENT || c == code::GRACE).then_some(sid)
            }
            None => None,
        };
        let mut revoked = 0;
        for digest in self.secrets.subject_digests(subject) {
            let idx = self.subject_index(&sb, &digest);
            let sids: Vec<String> = self.cmd(redis::cmd("ZRANGE").arg(&idx).arg(0).arg(-1)).await?;
            let doomed = sids.iter().filter(|s| keep.as_deref() != Some(s.as_str()));
            let results = join_all(doomed.map(|sid| self.revoke_sid(&sb, sid, &digest, "subject revoked"))).await;
            for r in results {
                revoked += usize::from(r?);
            }
        }
        Ok(revoked)
    }

    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        let sb = self.sandbox(sandbox)?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidKey("a subject must be 1 to 256 bytes"));
        }
        for digest in self.secrets.subject_digests(subject) {
            if self.revoke_sid(&sb, id.as_str(), &digest, "session revoked").await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn stats(&self) -> Result<Stats> {
        let sandboxes = self.all_sandboxes().await?;
        let counts = join_all(sandboxes.iter().map(|sb| async move {
            let mut c = redis::cmd("ZCARD");
            c.arg(&sb.ledger);
            self.cmd::<u64>(&c).await
        }))
        .await;
        let mut out = Vec::new();
        for (sb, n) in sandboxes.iter().zip(counts) {
            out.push(SandboxStats::new(sb.name.clone(), n?, 0, 0));
        }
        Ok(Stats::new(out, self.counters.snapshot()))
    }
}

impl SessionStore for RedisStore {
    // Redis records hold raw bytes (their format has no form flag; every
    // node must read them): a value given in its JSON form is read back to
    // bytes first, and values always come back raw.
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        let value = raw_bytes(value, opts.value_form)?;
        self.inner.create(sandbox, &value, &opts).await
    }

    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        self.inner.resolve(sandbox, token, &opts).await
    }

    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        let value = raw_bytes(value, opts.value_form)?;
        self.inner.set(sandbox, key, &value, &opts).await
    }

    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        let sb = self.inner.sandbox(sandbox)?;
        Ok(self.inner.probe(&sb, key, "d").await?.0 == code::DELETED)
    }

    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        validate_key(key)?;
        let sb = self.inner.sandbox(sandbox)?;
        let (c, _) = self.inner.probe(&sb, key, "e").await?;
        Ok(c == code::CURRENT || c == code::GRACE)
    }

    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        self.inner.touch(sandbox, key, ttl).await
    }

    async fn update_if(&self, sandbox: &str, key: &str, expected_version: u64, value: &[u8]) -> Result<UpdateOutcome> {
        self.inner.update_if(sandbox, key, expected_version, value).await
    }

    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        let value = value.map(|v| raw_bytes(v, opts.value_form)).transpose()?;
        self.inner.migrate(from, token, to, value.as_deref(), &opts).await
    }

    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        self.inner.list_subject(sandbox, subject).await
    }

    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        self.inner.revoke_subject(sandbox, subject, except).await
    }

    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        self.inner.revoke_session(sandbox, subject, id).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.inner.stats().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_carry_their_group() {
        xems_testkit::logs::capture();
        for route in [0u8, 1, 0x3f, 0x80, 0xff] {
            let (sid, raw) = new_sid(route);
            assert_eq!(sid.len(), 11);
            assert_eq!(sid_bytes(&sid), Some(raw));
            assert_eq!(sid_route(&sid), Some(route));
            assert!(SessionId::new(&sid).is_some());
        }
        assert_eq!(sid_route("not an id!"), None);
    }
}
