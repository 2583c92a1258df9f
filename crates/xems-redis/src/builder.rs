//! The builder of a [`RedisStore`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use xems_core::{Clock, EventSink, Keyring, MasterSecret, SystemClock, TracingAudit, validate_sandbox};

use crate::config::{ConfigError, Target};
use crate::conn::{Conn, Timeouts};
use crate::store::{RedisStore, Settings};
use xems_core::{ReusePolicy, SandboxLimits};

/// Builds a [`RedisStore`]: the URL, the secret (required), limits,
/// policies, clock and timeouts.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use xems_core::MasterSecret;
/// use xems_redis::{LimitPolicy, RedisStore, SandboxLimits};
///
/// let secret = MasterSecret::parse(&std::env::var("XEMS_SECRET")?)?;
/// let store = RedisStore::builder("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
///     .secret(secret)
///     .sandbox_limits("cache", SandboxLimits::default().with_max_records(100_000).with_policy(LimitPolicy::EvictSoonestExpiring))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    keyring: Option<Keyring>,
    prefix: String,
    clock: Option<Arc<dyn Clock>>,
    default_limits: SandboxLimits,
    sandbox_limits: HashMap<String, SandboxLimits>,
    reuse_policy: ReusePolicy,
    retired_window: usize,
    max_sandboxes: usize,
    expiry_slack: Duration,
    sweep_interval: Option<Duration>,
    sweep_budget: usize,
    timeouts: Timeouts,
    sinks: Vec<Arc<dyn EventSink>>,
    audit: bool,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &crate::config::redact(&self.url))
            .field("secret", &self.keyring.as_ref().map(|k| k.current().key_id()))
            .field("prefix", &self.prefix)
            .field("default_limits", &self.default_limits)
            .field("reuse_policy", &self.reuse_policy)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    pub(crate) fn new(url: &str) -> Self {
        RedisStoreBuilder {
            url: url.to_owned(),
            keyring: None,
            prefix: "xems".into(),
            clock: None,
            default_limits: SandboxLimits::default(),
            sandbox_limits: HashMap::new(),
            reuse_policy: ReusePolicy::default(),
            retired_window: 4,
            max_sandboxes: 1024,
            expiry_slack: Duration::from_secs(60),
            sweep_interval: Some(Duration::from_secs(1)),
            sweep_budget: 256,
            timeouts: Timeouts { connect: Duration::from_secs(2), response: Duration::from_secs(2) },
            sinks: Vec::new(),
            audit: true,
        }
    }

    /// The master secret (required). Every application node sharing the
    /// store must use the same one.
    pub fn secret(mut self, secret: MasterSecret) -> Self {
        self.keyring = Some(Keyring::new(secret));
        self
    }

    /// A keyring: new records are sealed under its current secret, records
    /// sealed under a previous one stay readable, and tokens indexed under a
    /// previous one still resolve.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The prefix of every key name (default `xems`), to share one Redis
    /// between applications.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The clock every expiry decision uses (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Limits for sandboxes without limits of their own.
    pub fn default_limits(mut self, limits: SandboxLimits) -> Self {
        self.default_limits = limits;
        self
    }

    /// Limits for one sandbox. Every node should configure the same limits.
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
    /// and reuse detection (default 4, as the engine; 1 to 1024). Tokens
    /// still in their grace window are remembered beyond it, up to 1024.
    ///
    /// The window is kept inside the session's record, 36 bytes per token,
    /// and every rotation rewrites it: a window of hundreds makes each
    /// rotation copy kilobytes in Redis. Keep it small.
    pub fn retired_tokens_per_session(mut self, n: usize) -> Self {
        self.retired_window = n;
        self
    }

    /// Most sandboxes this process keeps keys for (default 1024).
    pub fn max_sandboxes(mut self, n: usize) -> Self {
        self.max_sandboxes = n;
        self
    }

    /// How long after its logical expiry Redis may still hold a record
    /// (default 60 s, at least 1 s). Logical expiry is decided by the
    /// store's clock in every script; Redis's own expiry, set this much
    /// later, reclaims memory and absorbs clock differences between
    /// application nodes and the server.
    pub fn expiry_slack(mut self, slack: Duration) -> Self {
        self.expiry_slack = slack;
        self
    }

    /// How often this process sweeps expired records out of the per-sandbox
    /// ledgers (default 1 s); `None` runs no background task (call
    /// [`RedisStore::sweep_expired`]). Expired records are never returned
    /// either way, and Redis reclaims their memory on its own.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Ledger entries one sweep step looks at per sandbox (default 256).
    pub fn sweep_budget(mut self, n: usize) -> Self {
        self.sweep_budget = n;
        self
    }

    /// How long to wait for a connection (default 2 s).
    pub fn connection_timeout(mut self, t: Duration) -> Self {
        self.timeouts.connect = t;
        self
    }

    /// How long to wait for an answer before failing with
    /// [`xems_core::Error::Unavailable`] (default 2 s).
    pub fn response_timeout(mut self, t: Duration) -> Self {
        self.timeouts.response = t;
        self
    }

    /// Adds an event plugin. Events are those of this process's calls.
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

    /// Checks the settings, connects and starts the background sweeper (when
    /// called inside a Tokio runtime).
    ///
    /// # Errors
    ///
    /// No secret, a malformed URL, a setting out of range, or a server that
    /// cannot be reached.
    pub async fn connect(self) -> Result<RedisStore, ConfigError> {
        let keyring = self.keyring.ok_or(ConfigError::MissingSecret)?;
        let target = Target::parse(&self.url)?;
        if !(1..=1024).contains(&self.retired_window) {
            return Err(ConfigError::Invalid(format!(
                "retired tokens per session must be 1 to 1024, got {}",
                self.retired_window
            )));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::Invalid("the key prefix must be non-empty and contain no braces".into()));
        }
        if self.expiry_slack < Duration::from_secs(1) || self.sweep_budget == 0 || self.max_sandboxes == 0 {
            return Err(ConfigError::Invalid(
                "expiry slack must be at least 1 s; sweep budget and max sandboxes must be positive".into(),
            ));
        }
        for (name, limits) in
            self.sandbox_limits.iter().map(|(n, l)| (n.as_str(), l)).chain([("(default)", &self.default_limits)])
        {
            if name != "(default)" {
                validate_sandbox(name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
            if limits.max_records == 0 || limits.max_value_bytes == 0 {
                return Err(ConfigError::Invalid(format!("limits of sandbox {name} must be positive")));
            }
        }
        let conn = Conn::open(&target, self.timeouts).await?;
        let mut sinks = self.sinks;
        if self.audit {
            sinks.insert(0, Arc::new(TracingAudit));
        }
        let settings = Settings {
            prefix: self.prefix,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            default_limits: self.default_limits,
            sandbox_limits: self.sandbox_limits,
            reuse_policy: self.reuse_policy,
            retired_window: self.retired_window,
            max_sandboxes: self.max_sandboxes,
            slack_ms: u64::try_from(self.expiry_slack.as_millis()).unwrap_or(u64::MAX / 4),
            sweep_budget: self.sweep_budget,
            sinks,
        };
        let store = RedisStore::new(conn, &keyring, settings);
        if let Some(every) = self.sweep_interval {
            store.spawn_sweeper(every);
        }
        Ok(store)
    }
}
