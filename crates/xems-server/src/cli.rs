//! The command line, the environment and the optional TOML file, merged into
//! one configuration. Precedence: flags, then `XEMS_*` variables, then the
//! file, then defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;
use xems_core::MasterSecret;
use xems_engine::{Engine, EngineBuilder, LimitPolicy, ReusePolicy, SandboxLimits};
use xems_protocol::DEFAULT_MAX_LINE;
use xems_vault::FsyncPolicy;
use zeroize::Zeroizing;

use crate::net::ListenAddr;

const ABOUT: &str = "xems: an encrypted memory store for sessions, OTP state and other short-lived secrets.";

const LONG_ABOUT: &str = "\
xems: an encrypted memory store for sessions, OTP state and other short-lived secrets.

With no subcommand (or `xems stdio`) it is a drop-in XyPriss XEMS sidecar: newline-delimited
JSON requests on stdin, one response line per request on stdout, logs on stderr, exit 0 when
stdin closes. `xems serve` shares one store with many clients over TCP and Unix sockets.

The protocol is specified in docs/PROTOCOL.md.";

const AFTER_HELP: &str = "\
Configuration comes from flags, then XEMS_* environment variables, then the TOML file given
with --config (keys are the long flag names with '_' for '-'), then defaults.

Examples:
  xems                                   # stdio sidecar, ephemeral store
  XEMS_SECRET_FILE=/run/secrets/xems xems stdio
  XEMS_AUTH_TOKEN_FILE=/run/secrets/xems-token \\
    xems serve --listen tcp://127.0.0.1:7379 --listen unix:///run/xems/xems.sock";

/// The `xems` command line.
#[derive(Debug, Parser)]
#[command(name = "xems", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options of every mode.
    #[command(flatten, next_help_heading = "Store and logging (every mode)")]
    pub common: CommonArgs,
    /// The mode; `stdio` when absent.
    #[command(subcommand)]
    pub command: Option<Mode>,
}

/// Options shared by every mode (accepted before or after the subcommand).
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Keep the store in the encrypted vault at PATH (a directory, created if missing): sessions
    /// survive restarts. Needs a secret (--secret, XEMS_SECRET or --secret-file).
    #[arg(long, global = true, value_name = "PATH", env = "XEMS_PERSIST")]
    pub persist: Option<PathBuf>,

    /// When the vault syncs to disk: always (before answering; a power cut loses nothing
    /// acknowledged), everysec (once a second; a crash of xems loses nothing acknowledged, a power
    /// cut at most about a second) or no [default: everysec].
    #[arg(long, global = true, value_name = "POLICY", env = "XEMS_FSYNC")]
    pub fsync: Option<String>,

    /// The previous master secret after a rotation: files written under it stay readable; new
    /// writes use --secret. `xems vault rekey` rewrites the vault so it can be retired.
    #[arg(long, global = true, value_name = "SECRET", env = "XEMS_PREVIOUS_SECRET", hide_env_values = true)]
    pub previous_secret: Option<String>,

    /// Read the previous master secret from FILE.
    #[arg(long, global = true, value_name = "FILE", env = "XEMS_PREVIOUS_SECRET_FILE")]
    pub previous_secret_file: Option<PathBuf>,

    /// Bind a new vault to this machine (its keys mix in /etc/machine-id): a copy of the vault
    /// cannot be opened elsewhere, even with the secret.
    #[arg(long, global = true, env = "XEMS_HARDWARE_BIND")]
    pub hardware_bind: bool,

    /// The master secret: exactly 32 bytes, or hex:<64 digits>, or base64:<44 chars>. Visible to
    /// other users in the process list: prefer --secret-file or XEMS_SECRET.
    #[arg(long, global = true, value_name = "SECRET", env = "XEMS_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Read the master secret from FILE (one trailing newline is ignored).
    #[arg(long, global = true, value_name = "FILE", env = "XEMS_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,

    /// Resource hint from the host: expected records per sandbox.
    #[arg(long, global = true, value_name = "N", env = "XEMS_CACHE_SIZE")]
    pub cache_size: Option<u64>,

    /// Longest accepted request line in bytes [default: 16777216].
    #[arg(long, global = true, value_name = "BYTES", env = "XEMS_MAX_LINE_BYTES")]
    pub max_line_bytes: Option<usize>,

    /// Log filter for stderr, e.g. `info`, `debug`, `xems=trace` [default: info].
    #[arg(long, global = true, value_name = "FILTER", env = "XEMS_LOG")]
    pub log: Option<String>,

    /// What a rotated token replayed after its grace period does: revoke-session (default) or
    /// refuse-token.
    #[arg(long, global = true, value_name = "POLICY", env = "XEMS_REUSE_POLICY")]
    pub reuse_policy: Option<String>,

    /// Limits of one sandbox (repeatable; NAME `*` sets the default for all):
    /// NAME:max_records=N,max_bytes=N,max_value_bytes=N,policy=refuse|evict-soonest-expiring
    #[arg(long, global = true, value_name = "SPEC")]
    pub sandbox_limit: Vec<String>,

    /// Read further settings from a TOML file.
    #[arg(long, global = true, value_name = "FILE", env = "XEMS_CONFIG")]
    pub config: Option<PathBuf>,

    /// TEST ONLY, never in production: run the store on a mock clock that the
    /// `debug_advance_clock` action moves.
    #[arg(long, global = true, hide = true)]
    pub unsafe_test_clock: bool,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// The XyPriss sidecar: JSON lines on stdin/stdout (the default).
    Stdio,
    /// Serve one store to many clients over TCP and Unix sockets.
    #[command(after_help = "\
TCP clients must send {\"action\":\"auth\",\"token\":\"...\"} before anything else; the token is read
from --auth-token-file or XEMS_AUTH_TOKEN (never from the command line). Unix sockets are created
with mode 0600, so only their owner can connect, and may skip the handshake.
SIGTERM or SIGINT stops accepting, lets open connections finish, and exits 0.")]
    Serve(ServeArgs),
    /// Check, inspect, compact or rekey a vault (not while a server has it open).
    Vault(VaultArgs),
}

/// `xems vault`.
#[derive(Debug, Args)]
pub struct VaultArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VaultCommand,
}

/// The vault tools. The vault is PATH, or --persist / XEMS_PERSIST.
#[derive(Clone, Debug, Subcommand)]
pub enum VaultCommand {
    /// Read and authenticate every record; exit 1 if anything is damaged.
    Verify {
        /// The vault directory.
        path: Option<PathBuf>,
    },
    /// Show files, key ids and record counts per sandbox (never values or tokens).
    Inspect {
        /// The vault directory.
        path: Option<PathBuf>,
    },
    /// Rewrite the vault as one snapshot of its live records.
    Compact {
        /// The vault directory.
        path: Option<PathBuf>,
    },
    /// Rewrite the whole vault under --secret only (fresh file keys), so that --previous-secret can
    /// be retired; with --hardware-bind, bind it to this machine (without, unbind it).
    Rekey {
        /// The vault directory.
        path: Option<PathBuf>,
    },
}

impl VaultCommand {
    fn path(&self) -> Option<&PathBuf> {
        match self {
            VaultCommand::Verify { path }
            | VaultCommand::Inspect { path }
            | VaultCommand::Compact { path }
            | VaultCommand::Rekey { path } => path.as_ref(),
        }
    }
}

/// Options of `xems serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on ADDR: tcp://HOST:PORT or unix:///PATH (repeatable) [default: tcp://127.0.0.1:7379].
    #[arg(long, value_name = "ADDR", env = "XEMS_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,

    /// Read the shared auth token for network clients from FILE (XEMS_AUTH_TOKEN also works).
    #[arg(long, value_name = "FILE", env = "XEMS_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Most client connections open at once [default: 1024].
    #[arg(long, value_name = "N", env = "XEMS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Where the sessions live: `memory` (the embedded engine, the default), or Redis / Valkey at
    /// `redis://USER:PASS@HOST:PORT/DB` (user, password and database optional; `rediss://` with
    /// TLS) or a Cluster at `redis+cluster://HOST1:PORT1,HOST2:PORT2`. A Redis store needs the master secret that every
    /// node sharing it uses (--secret-file, XEMS_SECRET or --secret); it keeps its data in Redis,
    /// so --persist does not apply.
    #[arg(long, value_name = "STORE", env = "XEMS_STORE")]
    pub store: Option<String>,
    /// Worker threads serving connections [default: one per CPU].
    #[arg(long, value_name = "N", env = "XEMS_THREADS")]
    pub threads: Option<usize>,
}

/// The TOML configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `persist`.
    pub persist: Option<PathBuf>,
    /// `fsync`.
    pub fsync: Option<String>,
    /// `previous_secret_file`.
    pub previous_secret_file: Option<PathBuf>,
    /// `hardware_bind`.
    pub hardware_bind: Option<bool>,
    /// `secret_file`.
    pub secret_file: Option<PathBuf>,
    /// `cache_size`.
    pub cache_size: Option<u64>,
    /// `max_line_bytes`.
    pub max_line_bytes: Option<usize>,
    /// `log`.
    pub log: Option<String>,
    /// `listen`.
    pub listen: Option<Vec<String>>,
    /// `auth_token_file`.
    pub auth_token_file: Option<PathBuf>,
    /// `max_connections`.
    pub max_connections: Option<usize>,
    /// `store` (of `serve`).
    pub store: Option<String>,
    /// `threads`.
    pub threads: Option<usize>,
    /// `reuse_policy`.
    pub reuse_policy: Option<String>,
    /// `[sandboxes.NAME]` tables (`[sandboxes."*"]` for the default).
    #[serde(default)]
    pub sandboxes: std::collections::BTreeMap<String, LimitTable>,
}

/// One `[sandboxes.NAME]` table of the TOML file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTable {
    /// Most live records.
    pub max_records: Option<u64>,
    /// Most sealed bytes.
    pub max_bytes: Option<u64>,
    /// Largest value.
    pub max_value_bytes: Option<usize>,
    /// `refuse` or `evict-soonest-expiring`.
    pub policy: Option<String>,
}

impl LimitTable {
    /// Parses `max_records=N,max_bytes=N,max_value_bytes=N,policy=P`.
    fn parse(spec: &str) -> Result<Self, String> {
        let mut t = LimitTable::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("expected key=value, got {part:?}"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{k} must be a non-negative integer, got {v:?}"));
            match k {
                "max_records" => t.max_records = Some(num(v)?),
                "max_bytes" => t.max_bytes = Some(num(v)?),
                "max_value_bytes" => t.max_value_bytes = Some(usize::try_from(num(v)?).map_err(|e| e.to_string())?),
                "policy" => t.policy = Some(v.to_owned()),
                other => {
                    return Err(format!(
                        "unknown limit {other:?} (expected max_records, max_bytes, max_value_bytes or policy)"
                    ));
                }
            }
        }
        Ok(t)
    }

    fn apply(&self, mut l: SandboxLimits) -> Result<SandboxLimits, String> {
        if let Some(n) = self.max_records {
            l = l.with_max_records(n);
        }
        if let Some(n) = self.max_bytes {
            l = l.with_max_bytes(n);
        }
        if let Some(n) = self.max_value_bytes {
            l = l.with_max_value_bytes(n);
        }
        if let Some(p) = &self.policy {
            l = l.with_policy(p.parse::<LimitPolicy>().map_err(|e| e.to_string())?);
        }
        Ok(l)
    }
}

/// Where the secret came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `--secret` on the command line (visible in the process list).
    Argv,
    /// `XEMS_SECRET`.
    Env,
    /// A file.
    File,
    /// None given: a random ephemeral key.
    Ephemeral,
}

/// The merged configuration.
#[derive(Debug)]
pub struct Config {
    /// Stdio or serve.
    pub serve: Option<ServeSettings>,
    /// `--persist`.
    pub persist: Option<PathBuf>,
    /// `xems vault ...`: the tool and the vault's path.
    pub vault_tool: Option<(VaultCommand, PathBuf)>,
    /// `--fsync`.
    pub fsync: FsyncPolicy,
    /// `--previous-secret`.
    pub previous_secret: Option<MasterSecret>,
    /// `--hardware-bind`.
    pub hardware_bind: bool,
    /// The master secret, if one was given.
    pub secret: Option<MasterSecret>,
    /// Where it came from.
    pub secret_source: SecretSource,
    /// `--cache-size`.
    pub cache_size: Option<u64>,
    /// Longest line.
    pub max_line: usize,
    /// Log filter.
    pub log: String,
    /// `--unsafe-test-clock`.
    pub unsafe_test_clock: bool,
    /// What a replay after grace does.
    pub reuse_policy: ReusePolicy,
    /// Limits for every sandbox without its own.
    pub default_limits: SandboxLimits,
    /// Per-sandbox limits.
    pub sandbox_limits: Vec<(String, SandboxLimits)>,
}

/// Where `xems serve` keeps the sessions.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded engine (optionally with the vault).
    Memory,
    /// Redis or Valkey, standalone or Cluster, at this URL (see
    /// [`xems_redis::RedisStore::builder`]).
    Redis(String),
}

impl std::fmt::Debug for StoreKind {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory => f.write_str("Memory"),
            StoreKind::Redis(url) => write!(f, "Redis({})", xems_redis::redact_url(url)),
        }
    }
}

impl StoreKind {
    /// Parses `memory` or a Redis URL (the syntax the portal's `--store`
    /// accepts too, decided by [`xems_redis::is_store_url`]).
    ///
    /// # Errors
    ///
    /// Anything else.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if s == "memory" {
            Ok(StoreKind::Memory)
        } else if xems_redis::is_store_url(s) {
            Ok(StoreKind::Redis(s.to_owned()))
        } else {
            Err(ConfigError(format!(
                "--store {:?}: expected memory, redis://HOST:PORT, rediss://HOST:PORT or \
                 redis+cluster://HOST1:PORT1,HOST2:PORT2",
                xems_redis::redact_url(s)
            )))
        }
    }
}

/// The settings of `serve`.
#[derive(Debug)]
pub struct ServeSettings {
    /// Where the sessions live.
    pub store: StoreKind,
    /// Listeners.
    pub listen: Vec<ListenAddr>,
    /// Auth token for TCP clients.
    pub auth_token: Option<Zeroizing<Vec<u8>>>,
    /// Connection limit.
    pub max_connections: usize,
    /// Worker threads (`None`: one per CPU).
    pub threads: Option<usize>,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
}

/// A configuration error: printed, then exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses the process's arguments and environment.
    ///
    /// # Errors
    ///
    /// A bad file, secret, listener or combination. (Clap itself exits on
    /// `--help` and syntax errors.)
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_matches(&Cli::command().get_matches(), |k| std::env::var(k).ok())
    }

    /// Builds the configuration from parsed arguments; `env` reads variables
    /// not handled by clap (`XEMS_AUTH_TOKEN`).
    ///
    /// # Errors
    ///
    /// See [`from_env`](Self::from_env).
    pub fn from_matches(m: &ArgMatches, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let cli = Cli::from_arg_matches(m).map_err(|e| ConfigError(e.to_string()))?;
        let c = cli.common;
        let file = match &c.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let secret_from_argv = m.value_source("secret") == Some(ValueSource::CommandLine);
        let secret_file = c.secret_file.or(file.secret_file);
        let (secret, secret_source) = match (c.secret, secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "give the secret once: --secret / XEMS_SECRET or --secret-file, not both".into(),
                ));
            }
            (Some(s), None) => {
                let s = Zeroizing::new(s);
                let secret = MasterSecret::parse(&s).map_err(|e| ConfigError(format!("--secret: {e}")))?;
                (Some(secret), if secret_from_argv { SecretSource::Argv } else { SecretSource::Env })
            }
            (None, Some(path)) => {
                let secret = MasterSecret::from_file(&path).map_err(|e| ConfigError(format!("--secret-file: {e}")))?;
                (Some(secret), SecretSource::File)
            }
            (None, None) => (None, SecretSource::Ephemeral),
        };
        let previous_secret_file = c.previous_secret_file.or(file.previous_secret_file);
        let previous_secret = match (c.previous_secret, previous_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "give the previous secret once: --previous-secret or --previous-secret-file, not both".into(),
                ));
            }
            (Some(s), None) => {
                let s = Zeroizing::new(s);
                Some(MasterSecret::parse(&s).map_err(|e| ConfigError(format!("--previous-secret: {e}")))?)
            }
            (None, Some(path)) => {
                Some(MasterSecret::from_file(&path).map_err(|e| ConfigError(format!("--previous-secret-file: {e}")))?)
            }
            (None, None) => None,
        };
        let fsync = match c.fsync.or(file.fsync) {
            None => FsyncPolicy::default(),
            Some(p) => p.parse::<FsyncPolicy>().map_err(|e| ConfigError(format!("--fsync: {e}")))?,
        };
        let hardware_bind = c.hardware_bind || file.hardware_bind.unwrap_or(false);
        let persist = c.persist.or(file.persist);
        let store = match &cli.command {
            Some(Mode::Serve(s)) => match s.store.as_deref().or(file.store.as_deref()) {
                Some(text) => StoreKind::parse(text)?,
                None => StoreKind::Memory,
            },
            _ => StoreKind::Memory,
        };
        if let StoreKind::Redis(url) = &store {
            let shown = xems_redis::redact_url(url);
            if persist.is_some() {
                return Err(ConfigError(format!(
                    "--persist keeps the embedded store in an encrypted vault; with --store {shown} the sessions \
                     live in Redis (use its own persistence, AOF or RDB): drop --persist"
                )));
            }
            if secret.is_none() {
                return Err(ConfigError(format!(
                    "--store {shown} needs the master secret that every node sharing the Redis uses: set \
                     --secret-file FILE, XEMS_SECRET or --secret (a random ephemeral key would make the sessions \
                     unreadable to the other nodes and after a restart)"
                )));
            }
            if hardware_bind {
                return Err(ConfigError("--hardware-bind only applies to a vault, not to a Redis store".into()));
            }
            if c.unsafe_test_clock {
                return Err(ConfigError("--unsafe-test-clock only works with the memory store".into()));
            }
        }
        let redis_store = matches!(store, StoreKind::Redis(_));
        let vault_tool = match &cli.command {
            Some(Mode::Vault(v)) => {
                let path = v.command.path().cloned().or_else(|| persist.clone()).ok_or_else(|| {
                    ConfigError("which vault? give its directory: xems vault <command> PATH (or --persist PATH)".into())
                })?;
                Some((v.command.clone(), path))
            }
            _ => None,
        };
        if persist.is_some() || vault_tool.is_some() {
            if secret.is_none() {
                return Err(ConfigError(
                    "the vault needs a secret: set --secret-file FILE, XEMS_SECRET or --secret (a random \
                     ephemeral key could never open the vault again)"
                        .into(),
                ));
            }
        } else if (previous_secret.is_some() && !redis_store) || hardware_bind {
            return Err(ConfigError(
                "--previous-secret and --hardware-bind only apply to a vault (--persist PATH); \
                 --previous-secret also to a Redis store (--store redis://...)"
                    .into(),
            ));
        }
        let max_line = c.max_line_bytes.or(file.max_line_bytes).unwrap_or(DEFAULT_MAX_LINE);
        if max_line < 1024 {
            return Err(ConfigError(format!("--max-line-bytes {max_line} is too small (at least 1024)")));
        }
        let serve = match cli.command {
            None | Some(Mode::Stdio) | Some(Mode::Vault(_)) => None,
            Some(Mode::Serve(s)) => {
                let listen = if !s.listen.is_empty() {
                    s.listen
                } else {
                    file.listen.unwrap_or_else(|| vec!["tcp://127.0.0.1:7379".to_owned()])
                };
                let listen =
                    listen.iter().map(|l| ListenAddr::parse(l).map_err(ConfigError)).collect::<Result<Vec<_>, _>>()?;
                let token = match (s.auth_token_file.or(file.auth_token_file), env("XEMS_AUTH_TOKEN")) {
                    (Some(path), _) => Some(read_token(&path)?),
                    (None, Some(t)) => Some(Zeroizing::new(t.into_bytes())),
                    (None, None) => None,
                };
                if let Some(t) = &token
                    && t.len() < 16
                {
                    return Err(ConfigError(format!(
                        "the auth token must be at least 16 bytes, got {} (generate one with: head -c 32 /dev/urandom | base64)",
                        t.len()
                    )));
                }
                if token.is_none() && listen.iter().any(|l| matches!(l, ListenAddr::Tcp(_))) {
                    return Err(ConfigError(
                        "TCP listeners need a shared auth token: set --auth-token-file FILE or XEMS_AUTH_TOKEN \
                         (or listen only on a unix:// socket)"
                            .into(),
                    ));
                }
                let max_connections = s.max_connections.or(file.max_connections).unwrap_or(1024);
                if max_connections == 0 {
                    return Err(ConfigError("--max-connections must be at least 1".into()));
                }
                let threads = s.threads.or(file.threads);
                if threads == Some(0) {
                    return Err(ConfigError("--threads must be at least 1".into()));
                }
                Some(ServeSettings {
                    store,
                    listen,
                    auth_token: token,
                    max_connections,
                    threads,
                    shutdown_grace: Duration::from_secs(10),
                })
            }
        };
        let reuse_policy = match c.reuse_policy.or(file.reuse_policy).as_deref() {
            None | Some("revoke-session") => ReusePolicy::RevokeSession,
            Some("refuse-token") => ReusePolicy::RefuseToken,
            Some(other) => {
                return Err(ConfigError(format!("--reuse-policy {other:?}: expected revoke-session or refuse-token")));
            }
        };
        // File tables first, flags on top (a flag for the same sandbox wins).
        let mut tables: Vec<(String, LimitTable)> = file.sandboxes.into_iter().collect();
        for spec in &c.sandbox_limit {
            let (name, rest) = spec
                .split_once(':')
                .ok_or_else(|| ConfigError(format!("--sandbox-limit {spec:?}: expected NAME:key=value,...")))?;
            let t = LimitTable::parse(rest).map_err(|e| ConfigError(format!("--sandbox-limit {spec:?}: {e}")))?;
            tables.push((name.to_owned(), t));
        }
        let mut default_limits = SandboxLimits::default();
        for (name, t) in tables.iter().filter(|(n, _)| n == "*") {
            default_limits = t.apply(default_limits).map_err(|e| ConfigError(format!("limits of {name}: {e}")))?;
        }
        let mut sandbox_limits: Vec<(String, SandboxLimits)> = Vec::new();
        for (name, t) in tables.iter().filter(|(n, _)| n != "*") {
            let base = match sandbox_limits.iter().position(|(n, _)| n == name) {
                Some(i) => sandbox_limits.remove(i).1,
                None => default_limits.clone(),
            };
            let l = t.apply(base).map_err(|e| ConfigError(format!("limits of sandbox {name:?}: {e}")))?;
            sandbox_limits.push((name.clone(), l));
        }
        Ok(Config {
            reuse_policy,
            default_limits,
            sandbox_limits,
            serve,
            persist,
            vault_tool,
            fsync,
            previous_secret,
            hardware_bind,
            secret,
            secret_source,
            cache_size: c.cache_size.or(file.cache_size),
            max_line,
            log: c.log.or(file.log).unwrap_or_else(|| "info".to_owned()),
            unsafe_test_clock: c.unsafe_test_clock,
        })
    }
}

impl Config {
    /// The keyring of the vault: the secret, then the previous one.
    ///
    /// # Errors
    ///
    /// No secret, or the previous secret is the current one.
    pub fn keyring(&self) -> Result<xems_core::Keyring, ConfigError> {
        let current = self.secret.clone().ok_or_else(|| ConfigError("the vault needs a secret".into()))?;
        let ring = xems_core::Keyring::new(current);
        match &self.previous_secret {
            None => Ok(ring),
            Some(p) => ring
                .with_previous(p.clone())
                .map_err(|_| ConfigError("--previous-secret is the same secret as --secret".into())),
        }
    }

    /// The vault options of this configuration.
    ///
    /// # Errors
    ///
    /// See [`keyring`](Self::keyring).
    pub fn vault_options(&self) -> Result<xems_vault::VaultOptions, ConfigError> {
        Ok(xems_vault::VaultOptions::new(self.keyring()?).fsync(self.fsync).hardware_bind(self.hardware_bind))
    }

    /// A Redis store builder for `url` with this configuration's keyring
    /// (the secret, then the previous one), reuse policy and limits.
    ///
    /// # Errors
    ///
    /// See [`keyring`](Self::keyring).
    pub fn redis_builder(&self, url: &str) -> Result<xems_redis::RedisStoreBuilder, ConfigError> {
        let mut b = xems_redis::RedisStore::builder(url)
            .keyring(self.keyring()?)
            .reuse_policy(self.reuse_policy)
            .default_limits(self.default_limits.clone());
        for (name, limits) in &self.sandbox_limits {
            b = b.sandbox_limits(name.clone(), limits.clone());
        }
        Ok(b)
    }

    /// An engine builder with this configuration's secret, reuse policy and
    /// limits (its `build` refuses zero limits and invalid sandbox names).
    pub fn engine_builder(&self) -> EngineBuilder {
        let mut b = Engine::builder().reuse_policy(self.reuse_policy).default_limits(self.default_limits.clone());
        if let Some(secret) = &self.secret {
            b = b.secret(secret.clone());
        }
        for (name, limits) in &self.sandbox_limits {
            b = b.sandbox_limits(name.clone(), limits.clone());
        }
        b
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

fn read_token(path: &Path) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let mut bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| ConfigError(format!("cannot read auth token file {}: {e}", path.display())))?,
    );
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m = Cli::command().try_get_matches_from(args).map_err(|e| ConfigError(e.to_string()))?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_matches(&m, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn cli_is_well_formed() {
        xems_testkit::logs::capture();
        Cli::command().debug_assert();
    }

    #[test]
    fn host_arguments() {
        xems_testkit::logs::capture();
        let c = parse(&["xems", "--secret", "0123456789abcdef0123456789abcdef", "--cache-size", "500"], &[]).unwrap();
        assert!(c.serve.is_none());
        assert_eq!(c.secret_source, SecretSource::Argv);
        assert_eq!(c.cache_size, Some(500));
        assert!(parse(&["xems", "--secret", "short"], &[]).unwrap_err().0.contains("got 5"));
        let err = parse(&["xems", "--persist", "/tmp/v"], &[]).unwrap_err();
        assert!(err.0.contains("needs a secret"), "{err}");
        let c = parse(&["xems", "--persist", "/tmp/v", "--secret", "0123456789abcdef0123456789abcdef"], &[]).unwrap();
        assert_eq!(c.persist.as_deref(), Some(Path::new("/tmp/v")));
        assert_eq!(c.fsync, FsyncPolicy::EverySec);
        let c = parse(
            &["xems", "--persist", "/tmp/v", "--secret", "0123456789abcdef0123456789abcdef", "--fsync", "always"],
            &[],
        )
        .unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert!(parse(&["xems", "--fsync", "sometimes"], &[]).unwrap_err().0.contains("sometimes"));
        assert!(parse(&["xems", "--hardware-bind"], &[]).unwrap_err().0.contains("only apply to a vault"));
        let c = parse(
            &[
                "xems",
                "vault",
                "inspect",
                "/tmp/v",
                "--secret",
                "0123456789abcdef0123456789abcdef",
                "--previous-secret",
                "hex:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            &[],
        )
        .unwrap();
        assert!(matches!(c.vault_tool, Some((VaultCommand::Inspect { .. }, ref p)) if p == Path::new("/tmp/v")));
        assert_eq!(c.keyring().unwrap().previous().len(), 1);
        assert!(parse(&["xems", "vault", "verify"], &[]).unwrap_err().0.contains("which vault"));
    }

    #[test]
    fn serve_needs_a_token_for_tcp() {
        xems_testkit::logs::capture();
        let err = parse(&["xems", "serve", "--listen", "tcp://127.0.0.1:0"], &[]).unwrap_err();
        assert!(err.0.contains("auth token"), "{err}");
        let c = parse(&["xems", "serve", "--listen", "unix:///tmp/x.sock"], &[]).unwrap();
        assert_eq!(c.serve.unwrap().listen, vec![ListenAddr::Unix("/tmp/x.sock".into())]);
        let c = parse(&["xems", "serve"], &[("XEMS_AUTH_TOKEN", "0123456789abcdef-token")]).unwrap();
        assert_eq!(c.serve.unwrap().listen, vec![ListenAddr::Tcp("127.0.0.1:7379".into())]);
        assert!(parse(&["xems", "serve"], &[("XEMS_AUTH_TOKEN", "short")]).unwrap_err().0.contains("16 bytes"));
    }

    #[test]
    fn serve_store() {
        xems_testkit::logs::capture();
        const SECRET: &str = "0123456789abcdef0123456789abcdef";
        let unix = ["xems", "serve", "--listen", "unix:///tmp/x.sock"];
        assert_eq!(parse(&unix, &[]).unwrap().serve.unwrap().store, StoreKind::Memory);
        let args = [&unix[..], &["--store", "redis://127.0.0.1:6379", "--secret", SECRET]].concat();
        let c = parse(&args, &[]).unwrap();
        assert_eq!(c.serve.unwrap().store, StoreKind::Redis("redis://127.0.0.1:6379".into()));
        let args = [&unix[..], &["--store", "redis+cluster://a:1,b:2", "--secret", SECRET]].concat();
        assert!(matches!(parse(&args, &[]).unwrap().serve.unwrap().store, StoreKind::Redis(_)));
        // A previous secret is fine for a Redis store (its keyring).
        let args = [
            &unix[..],
            &["--store", "redis://h:1", "--secret", SECRET, "--previous-secret", "abcdef0123456789abcdef0123456789"],
        ]
        .concat();
        assert_eq!(parse(&args, &[]).unwrap().keyring().unwrap().previous().len(), 1);
        let err = parse(&[&unix[..], &["--store", "redis://u:hunter2@h:1"]].concat(), &[]).unwrap_err();
        assert!(err.0.contains("needs the master secret") && !err.0.contains("hunter2"), "{err}");
        let args = [&unix[..], &["--store", "redis://h:1", "--secret", SECRET, "--persist", "/tmp/v"]].concat();
        assert!(parse(&args, &[]).unwrap_err().0.contains("drop --persist"));
        let err = parse(&[&unix[..], &["--store", "mysql://h:1"]].concat(), &[]).unwrap_err();
        assert!(err.0.contains("expected memory, redis://"), "{err}");
        assert_eq!(format!("{:?}", StoreKind::parse("redis://u:pw@h:1").unwrap()), "Redis(redis://<redacted>@h:1)");
    }

    #[test]
    fn limits_and_policies() {
        xems_testkit::logs::capture();
        let c = parse(
            &[
                "xems",
                "--reuse-policy",
                "refuse-token",
                "--sandbox-limit",
                "*:max_value_bytes=2048",
                "--sandbox-limit",
                "tiny:max_records=5,policy=evict-soonest-expiring",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.reuse_policy, ReusePolicy::RefuseToken);
        assert_eq!(c.default_limits.max_value_bytes, 2048);
        let (name, tiny) = &c.sandbox_limits[0];
        assert_eq!(name, "tiny");
        assert_eq!((tiny.max_records, tiny.max_value_bytes, tiny.policy), (5, 2048, LimitPolicy::EvictSoonestExpiring));
        assert!(c.engine_builder().build().is_ok());
        assert!(parse(&["xems", "--sandbox-limit", "tiny:max_recs=5"], &[]).unwrap_err().0.contains("max_recs"));
        assert!(parse(&["xems", "--sandbox-limit", "tiny:policy=lru"], &[]).unwrap_err().0.contains("lru"));
        assert!(parse(&["xems", "--reuse-policy", "ignore"], &[]).is_err());
        let bad = parse(&["xems", "--sandbox-limit", "no/slash:max_records=1"], &[]).unwrap();
        assert!(bad.engine_builder().build().is_err());
    }

    #[test]
    fn file_then_flags() {
        xems_testkit::logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xems.toml");
        std::fs::write(&path, "cache_size = 7\nmax_connections = 3\nthreads = 2\nlisten = [\"unix:///tmp/a.sock\"]\n")
            .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["xems", "--config", p, "serve"], &[]).unwrap();
        assert_eq!(c.cache_size, Some(7));
        let s = c.serve.unwrap();
        assert_eq!((s.max_connections, s.threads), (3, Some(2)));
        let c = parse(
            &["xems", "--config", p, "serve", "--max-connections", "9", "--cache-size", "8", "--threads", "1"],
            &[],
        )
        .unwrap();
        assert_eq!(c.cache_size, Some(8));
        let s = c.serve.unwrap();
        assert_eq!((s.max_connections, s.threads), (9, Some(1)));
        assert!(parse(&["xems", "--config", p, "serve", "--threads", "0"], &[]).is_err());
        std::fs::write(&path, "reuse_policy = \"refuse-token\"\n[sandboxes.tiny]\nmax_records = 5\n").unwrap();
        let c = parse(&["xems", "--config", p, "--sandbox-limit", "tiny:policy=evict-soonest-expiring"], &[]).unwrap();
        assert_eq!(c.reuse_policy, ReusePolicy::RefuseToken);
        assert_eq!(c.sandbox_limits.len(), 1);
        assert_eq!(c.sandbox_limits[0].1.max_records, 5);
        assert_eq!(c.sandbox_limits[0].1.policy, LimitPolicy::EvictSoonestExpiring);
        std::fs::write(&path, "cache_sise = 7\n").unwrap();
        assert!(parse(&["xems", "--config", p], &[]).unwrap_err().0.contains("cache_sise"));
    }
}
