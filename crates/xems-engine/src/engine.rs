//! The engine: a registry of sandboxes, its builder, the background sweeper
//! and the `SessionStore` implementation.

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::HashMap;
use parking_lot::Mutex;
use xems_core::{
    Clock, Counters, CreateOptions, Created, Error, EventSink, KeyDeriver, MasterSecret, ResolveOptions, Resolved,
    Result, SessionId, SessionMeta, SessionStore, Stats, SystemClock, TracingAudit, UpdateOutcome, validate_sandbox,
};
use xems_locked::Locked;

use crate::config::ConfigError;
use crate::hints::Step;
use crate::persist::{Image, Journal};
use crate::sandbox::{Sandbox, SandboxCore, SandboxKeys, Shared, with_ticket};
use crate::shard::HintTarget;
use smallvec::SmallVec;
use xems_core::{ReusePolicy, SandboxLimits};

/// The embedded xems store: sealed, sandboxed, in memory.
///
/// Cheap to clone (clones share the store). Create one per process with
/// [`Engine::new`] or [`Engine::builder`], then use it through the
/// [`SessionStore`] trait or, synchronously, through [`Sandbox`] handles.
///
/// ```
/// use xems_core::{CreateOptions, ResolveOptions, SessionStore};
///
/// # tokio_test_block(async {
/// let engine = xems_engine::Engine::new();
/// let created = engine.create("otp-pending", br#"{"email":"a@example.com"}"#, CreateOptions::new()).await?;
/// let resolved = engine.resolve("otp-pending", created.token.expose(), ResolveOptions::rotating()).await?;
/// assert!(resolved.unwrap().token.is_some(), "rotation hands out a new token");
/// # Ok::<(), xems_core::Error>(())
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this engine's entries in a thread's staged prefetches
    /// ([`crate::hints`]) from another engine's.
    id: u64,
    shared: Arc<Shared>,
    sandboxes: ArcSwap<Registry>,
    create_lock: Mutex<()>,
    /// Derives keys that must be the same for the same secret (the index).
    /// Key material lives in locked, non-dumpable pages.
    stable: Locked<KeyDeriver>,
    /// Derives keys unique to this process (value sealing).
    process: Locked<KeyDeriver>,
    default_limits: SandboxLimits,
    sandbox_limits: StdHashMap<String, SandboxLimits>,
    max_sandboxes: usize,
    shards: usize,
    sweep_budget: usize,
}

/// The sandboxes in order of creation, and their positions by name (a
/// staged prefetch names a sandbox by its position). Replaced as a whole
/// when a sandbox is created, which is rare; never shrinks.
#[derive(Default)]
struct Registry {
    in_order: Vec<Sandbox>,
    by_name: HashMap<Box<str>, u32>,
}

impl Registry {
    fn get(&self, name: &str) -> Option<&Sandbox> {
        self.find(name).map(|(_, s)| s)
    }

    /// A sandbox and its position.
    fn find(&self, name: &str) -> Option<(u32, &Sandbox)> {
        let &position = self.by_name.get(name)?;
        Some((position, self.in_order.get(position as usize)?))
    }

    fn core_at(&self, position: u32) -> Option<&SandboxCore> {
        self.in_order.get(position as usize).map(|s| &*s.core)
    }
}

/// Numbers engines for [`Inner::id`].
static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("sandboxes", &self.inner.sandboxes.load().in_order.len())
            .field("clock", &self.inner.shared.clock)
            .finish_non_exhaustive()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An ephemeral engine with default settings: a random key (nothing
    /// outlives the process), the system clock, a sweeper thread, the
    /// `tracing` audit log.
    pub fn new() -> Self {
        Self::builder().build().expect("the default configuration is valid")
    }

    /// A builder for everything else.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The handle of a sandbox, created on first use.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSandbox`] for a bad name, [`Error::InvalidArgument`]
    /// when the engine already has its maximum number of sandboxes.
    pub fn sandbox(&self, name: &str) -> Result<Sandbox> {
        if let Some(s) = self.inner.sandboxes.load().get(name) {
            return Ok(s.clone());
        }
        validate_sandbox(name)?;
        let _guard = self.inner.create_lock.lock();
        let current = self.inner.sandboxes.load();
        if let Some(s) = current.get(name) {
            return Ok(s.clone());
        }
        if current.in_order.len() >= self.inner.max_sandboxes {
            return Err(Error::InvalidArgument(format!(
                "too many sandboxes (this engine allows {})",
                self.inner.max_sandboxes
            )));
        }
        let limits = self.inner.sandbox_limits.get(name).unwrap_or(&self.inner.default_limits).clone();
        let keys = SandboxKeys::derive(name, &self.inner.stable, &self.inner.process);
        // Below `max_sandboxes`, a `usize`; positions are `u32` to keep a
        // staged prefetch's entry small.
        let position =
            u32::try_from(current.in_order.len()).map_err(|_| Error::InvalidArgument("too many sandboxes".into()))?;
        let core = SandboxCore::new(name, keys, limits, self.inner.shared.clone(), self.inner.shards);
        let sandbox = Sandbox { core: Arc::new(core) };
        let mut in_order = current.in_order.clone();
        in_order.push(sandbox.clone());
        let mut by_name = current.by_name.clone();
        by_name.insert(name.into(), position);
        self.inner.sandboxes.store(Arc::new(Registry { in_order, by_name }));
        Ok(sandbox)
    }

    /// Runs `op` on a sandbox without cloning its handle: the hot path of the
    /// `SessionStore` implementation, where two threads bumping one shared
    /// reference count would bounce its cache line between cores.
    fn with_core<T>(&self, name: &str, op: impl FnOnce(&SandboxCore) -> Result<T>) -> Result<T> {
        if let Some(s) = self.inner.sandboxes.load().get(name) {
            return op(&s.core);
        }
        op(&self.sandbox(name)?.core)
    }

    /// Starts loading the records that operations on these `(sandbox, key)`
    /// addresses will read (see [`SessionStore::prefetch`]).
    ///
    /// A lookup in a large store is a chain of dependent cache misses (a
    /// caller key's index bucket, the record, its sealed value); done one
    /// request at a time, they follow one another. Here each pass over the
    /// batch starts every address's next fetch before the next pass reads
    /// any: the keyed digests (computation only), the index buckets, the
    /// records, the sealed values. The misses of a pass overlap, and the
    /// operations that follow find their bytes in the cache (and a caller
    /// key's digest, computed once and kept for it). Unknown
    /// sandboxes are skipped (a hint never creates one).
    ///
    /// A lone address has nothing in its batch to overlap with: its first
    /// fetch starts now and each later step on one of the thread's next
    /// calls, so a caller that hints one request and lets others hint
    /// theirs before answering it finds it fetched (the engine's `hints` module).
    pub fn prefetch(&self, addresses: &[(&str, &str)]) {
        let sandboxes = self.inner.sandboxes.load();
        crate::hints::advance(self.inner.id, |position| sandboxes.core_at(position));
        let hints: SmallVec<[(u32, &SandboxCore, u8, HintTarget); 32]> = addresses
            .iter()
            .filter_map(|(sandbox, key)| {
                let (position, sandbox) = sandboxes.find(sandbox)?;
                let (route, target) = sandbox.core.hint(key)?;
                Some((position, &*sandbox.core, route, target))
            })
            .collect();
        for (_, core, route, target) in &hints {
            core.hint_fetch(*route, target);
        }
        if let [(position, _, route, target)] = hints.as_slice() {
            crate::hints::stage(self.inner.id, *position, *route, *target);
            return;
        }
        // Each step of every address before the next step of any, so the
        // fetches of one step overlap (the steps: `hints::Step`).
        let mut chains: SmallVec<[(&SandboxCore, u8, Step); 32]> =
            hints.iter().map(|&(_, core, route, target)| (core, route, Step::Slot(target))).collect();
        while !chains.is_empty() {
            chains.retain_mut(|(core, route, step)| match step.take(core, *route) {
                Some(next) => {
                    *step = next;
                    true
                }
                None => false,
            });
        }
    }

    /// Reclaims every expired record now, however many (tests, and callers
    /// that turned the sweeper off). Returns how many sweep passes it took.
    pub fn sweep_expired(&self) -> usize {
        let mut passes = 0;
        loop {
            passes += 1;
            if !self.inner.sweep_once() {
                return passes;
            }
        }
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.shared.clock
    }

    fn stats_now(&self) -> Stats {
        let mut counters = Counters::default();
        let mut sandboxes: Vec<_> = self
            .inner
            .sandboxes
            .load()
            .in_order
            .iter()
            .map(|s| {
                let (stats, c) = s.core.stats();
                counters.merge(&c);
                stats
            })
            .collect();
        sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
        Stats::new(sandboxes, counters)
    }
}

impl Inner {
    /// One budgeted pass over every sandbox; whether work remains.
    fn sweep_once(&self) -> bool {
        let sandboxes = self.sandboxes.load();
        let mut more = false;
        for s in &sandboxes.in_order {
            more |= s.core.sweep(self.sweep_budget);
        }
        more
    }
}

/// Builds an [`Engine`].
///
/// ```
/// use std::time::Duration;
/// use xems_core::{MasterSecret, MockClock, Timestamp};
/// use xems_engine::{Engine, LimitPolicy, ReusePolicy, SandboxLimits};
///
/// let clock = MockClock::new(Timestamp::from_millis(1_700_000_000_000));
/// let engine = Engine::builder()
///     .secret(MasterSecret::parse("0123456789abcdef0123456789abcdef")?)
///     .clock(clock.clone())
///     .sandbox_limits("cache", SandboxLimits::default().with_max_records(1000).with_policy(LimitPolicy::EvictSoonestExpiring))
///     .reuse_policy(ReusePolicy::RevokeSession)
///     .sweep_interval(None)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct EngineBuilder {
    secret: Option<MasterSecret>,
    clock: Option<Arc<dyn Clock>>,
    default_limits: SandboxLimits,
    sandbox_limits: StdHashMap<String, SandboxLimits>,
    reuse_policy: ReusePolicy,
    retired_window: usize,
    max_sandboxes: usize,
    shards: usize,
    sweep_interval: Option<Duration>,
    sweep_budget: usize,
    sinks: Vec<Arc<dyn EventSink>>,
    audit: bool,
    journal: Option<Arc<dyn Journal>>,
    key_root: Option<zeroize::Zeroizing<[u8; 32]>>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            secret: None,
            clock: None,
            default_limits: SandboxLimits::default(),
            sandbox_limits: StdHashMap::new(),
            reuse_policy: ReusePolicy::default(),
            retired_window: 4,
            max_sandboxes: 1024,
            shards: 64,
            sweep_interval: Some(Duration::from_millis(100)),
            sweep_budget: 512,
            sinks: Vec::new(),
            audit: true,
            journal: None,
            key_root: None,
        }
    }
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("secret", &self.secret.as_ref().map(|s| s.key_id()))
            .field("default_limits", &self.default_limits)
            .field("reuse_policy", &self.reuse_policy)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The master secret. Tokens are indexed under keys derived from it, so
    /// with the same secret (and a vault) they resolve across restarts.
    /// Without one, a random secret is used.
    pub fn secret(mut self, secret: MasterSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Limits for sandboxes without limits of their own.
    pub fn default_limits(mut self, limits: SandboxLimits) -> Self {
        self.default_limits = limits;
        self
    }

    /// Limits for one sandbox.
    pub fn sandbox_limits(mut self, sandbox: impl Into<String>, limits: SandboxLimits) -> Self {
        self.sandbox_limits.insert(sandbox.into(), limits);
        self
    }

    /// What a replayed rotated token does (default: revoke the session).
    pub fn reuse_policy(mut self, policy: ReusePolicy) -> Self {
        self.reuse_policy = policy;
        self
    }

    /// How many rotated-away tokens each session remembers for grace hits
    /// and reuse detection (default 4, at most 1024). Older ones are
    /// forgotten: presenting them is then a plain miss.
    pub fn retired_tokens_per_session(mut self, n: usize) -> Self {
        self.retired_window = n;
        self
    }

    /// Most sandboxes (default 1024): sandboxes are created on first use, so
    /// this bounds what a stream of made-up names can allocate.
    pub fn max_sandboxes(mut self, n: usize) -> Self {
        self.max_sandboxes = n;
        self
    }

    /// Lock shards per sandbox: a power of two from 1 to 256 (default 64).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// How often the background sweeper reclaims expired records (default
    /// 100 ms); `None` runs no thread (call [`Engine::sweep_expired`]).
    /// Expired records are never returned either way.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Wheel entries each sweep visits per shard and tick (default 512):
    /// bounds the time a shard lock is held by the sweeper.
    pub fn sweep_budget(mut self, n: usize) -> Self {
        self.sweep_budget = n;
        self
    }

    /// Adds an event plugin.
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Whether to log events through `tracing` (target `xems::audit`;
    /// default on).
    pub fn audit_log(mut self, on: bool) -> Self {
        self.audit = on;
        self
    }

    /// Records every change in `journal` (the vault), and waits for its
    /// durability before answering.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The root of the keys that must survive restarts (the token index,
    /// session ids). By default it is derived from the secret; the vault
    /// supplies its own (wrapped under the secret), so that rotating the
    /// secret does not change how tokens are indexed.
    pub fn key_root(mut self, root: zeroize::Zeroizing<[u8; 32]>) -> Self {
        self.key_root = Some(root);
        self
    }

    /// Builds the engine and starts its sweeper.
    ///
    /// # Errors
    ///
    /// A setting out of range, or limits for an invalid sandbox name.
    pub fn build(self) -> Result<Engine, ConfigError> {
        if !self.shards.is_power_of_two() || self.shards > 256 {
            return Err(ConfigError(format!("shards must be a power of two from 1 to 256, got {}", self.shards)));
        }
        if !(1..=1024).contains(&self.retired_window) {
            return Err(ConfigError(format!(
                "retired tokens per session must be 1 to 1024, got {}",
                self.retired_window
            )));
        }
        if self.sweep_budget == 0 || self.max_sandboxes == 0 {
            return Err(ConfigError("sweep budget and max sandboxes must be positive".into()));
        }
        for (name, limits) in
            self.sandbox_limits.iter().map(|(n, l)| (n.as_str(), l)).chain([("(default)", &self.default_limits)])
        {
            if name != "(default)" {
                validate_sandbox(name).map_err(|e| ConfigError(e.to_string()))?;
            }
            if limits.max_records == 0 || limits.max_bytes == 0 || limits.max_value_bytes == 0 {
                return Err(ConfigError(format!("limits of sandbox {name} must be positive")));
            }
        }
        let secret = self.secret.unwrap_or_else(MasterSecret::generate);
        // The per-process salt comes straight from the kernel (a key, not a
        // token): see `xems_core::MasterSecret::generate`.
        let salt = *MasterSecret::generate().expose_secret();
        let stable = match &self.key_root {
            Some(root) => KeyDeriver::from_root(root, b"xems/v1/engine"),
            None => KeyDeriver::new(&secret, b"xems/v1/engine"),
        };
        let process = KeyDeriver::new(&secret, &salt);
        let mut sinks = self.sinks;
        if self.audit {
            sinks.insert(0, Arc::new(TracingAudit));
        }
        let shared = Arc::new(Shared {
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            sinks,
            reuse_policy: self.reuse_policy,
            retired_window: self.retired_window,
            journal: self.journal,
            subject_key: Locked::new(stable.index_key("subject", "*")),
        });
        let inner = Arc::new(Inner {
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            shared,
            sandboxes: ArcSwap::from_pointee(Registry::default()),
            create_lock: Mutex::new(()),
            stable: Locked::new(stable),
            process: Locked::new(process),
            default_limits: self.default_limits,
            sandbox_limits: self.sandbox_limits,
            max_sandboxes: self.max_sandboxes,
            shards: self.shards,
            sweep_budget: self.sweep_budget,
        });
        if let Some(every) = self.sweep_interval {
            spawn_sweeper(Arc::downgrade(&inner), every);
        }
        Ok(Engine { inner })
    }
}

/// The sweeper holds only a weak reference: it stops within one interval of
/// the last `Engine` clone being dropped.
fn spawn_sweeper(inner: Weak<Inner>, every: Duration) {
    let spawned = std::thread::Builder::new().name("xems-sweeper".into()).spawn(move || {
        loop {
            std::thread::sleep(every);
            let Some(inner) = inner.upgrade() else { return };
            // A few passes at most per tick: bounded work, then yield.
            for _ in 0..4 {
                if !inner.sweep_once() {
                    break;
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the expiry sweeper; expired records are still never returned");
    }
}

impl Engine {
    /// Runs a synchronous operation, then waits (asynchronously) until what
    /// it journaled is durable.
    async fn durable<T>(&self, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let (out, ticket) = with_ticket(op);
        if let (Some(ticket), Some(journal)) = (ticket, self.inner.shared.journal.as_ref()) {
            journal.wait(ticket).await.map_err(Error::unavailable)?;
        }
        out
    }

    /// Images of every live record (for a snapshot). Each shard is read
    /// under its own lock, so the images are those of some moment between
    /// the start and the end of the call; replaying the journal written
    /// since the call started brings them up to date.
    pub fn images(&self) -> Vec<Image> {
        self.inner.sandboxes.load().in_order.iter().flat_map(|s| s.core.images()).collect()
    }

    /// Puts records back as they were (start-up, before serving). Expired
    /// images are dropped. Returns how many records were restored.
    ///
    /// # Errors
    ///
    /// An image names an invalid sandbox, or more sandboxes than allowed.
    pub fn restore(&self, images: impl IntoIterator<Item = Image>) -> Result<usize> {
        let mut restored = 0;
        for img in images {
            if self.sandbox(&img.sandbox)?.core.restore(&img) {
                restored += 1;
            }
        }
        Ok(restored)
    }
}

impl SessionStore for Engine {
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        self.durable(|| self.with_core(sandbox, |c| c.create(value, &opts))).await
    }

    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        self.durable(|| self.with_core(sandbox, |c| c.resolve(token, &opts))).await
    }

    async fn resolve_into(
        &self,
        sandbox: &str,
        token: &str,
        opts: ResolveOptions,
        out: &mut Vec<u8>,
    ) -> Result<Option<Resolved>> {
        let start = out.len();
        let found = self.durable(|| self.with_core(sandbox, |c| c.resolve_into(token, &opts, &mut *out))).await;
        if found.is_err() {
            // The journal failed after the value was read: take it back.
            zeroize::Zeroize::zeroize(&mut out[start..]);
            out.truncate(start);
        }
        found
    }

    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        self.durable(|| self.with_core(sandbox, |c| c.set(key, value, &opts))).await
    }

    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        self.durable(|| self.with_core(sandbox, |c| c.del(key))).await
    }

    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        self.durable(|| self.with_core(sandbox, |c| c.exists(key))).await
    }

    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        self.durable(|| self.with_core(sandbox, |c| c.touch(key, ttl))).await
    }

    async fn update_if(&self, sandbox: &str, key: &str, expected_version: u64, value: &[u8]) -> Result<UpdateOutcome> {
        self.durable(|| self.with_core(sandbox, |c| c.update_if(key, expected_version, value))).await
    }

    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        let target = self.sandbox(to)?;
        let source = self.sandbox(from)?;
        self.durable(|| source.core.migrate(token, &target.core, value, &opts)).await
    }

    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        self.with_core(sandbox, |c| c.list_subject(subject))
    }

    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        self.durable(|| self.with_core(sandbox, |c| c.revoke_subject(subject, except))).await
    }

    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        self.durable(|| self.with_core(sandbox, |c| c.revoke_session(subject, id))).await
    }

    async fn stats(&self) -> Result<Stats> {
        Ok(self.stats_now())
    }

    fn prefetch(&self, addresses: &[(&str, &str)]) {
        Engine::prefetch(self, addresses);
    }
}
