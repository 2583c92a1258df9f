//! The `xems` binary. See `xems --help`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use xems_core::MockClock;
use xems_engine::Engine;
use xems_server::cli::{Config, SecretSource, ServeSettings, StoreKind};
use xems_server::harden::scrub_idle_stack;
use xems_server::{ConnConfig, ServeConfig, TestHooks, serve, serve_connection};

/// The allocator: jemalloc, every freed block wiped first
/// (`zeroizing-alloc`, from 1Password).
///
/// The code wipes what it knows holds a secret, but libraries make copies
/// it never sees (`serde_json` unescapes a JSON-string value into a scratch
/// buffer, a growing `Vec` frees its old block). With zero-on-free no freed
/// block keeps plaintext, whichever code allocated it. The memory canary
/// (`tests/memory_canary.rs`) found 30 session values in freed blocks
/// under mimalloc without it; glibc had passed only because it happened to
/// reuse those blocks soon.
///
/// Why jemalloc (what Redis ships with) and not glibc's: a connection
/// decodes a window of up to 32 pipelined requests before answering them,
/// so a batch holds dozens of live blocks of each size, more than glibc's
/// per-thread cache keeps (7 per size); the rest went through its slow
/// bins. jemalloc took 12% off the server's CPU per `set` and 7% per `get`
/// at pipeline depth 16 (A/B, three runs each), with the same memory for
/// 1,000 idle connections (26 MiB against 25). mimalloc was measured too:
/// 3-5% less CPU than glibc, but 1,000 idle connections held 181 MiB
/// (10,000 held 1.4 GiB).
#[cfg(unix)]
#[global_allocator]
static GLOBAL: zeroizing_alloc::ZeroAlloc<tikv_jemallocator::Jemalloc> =
    zeroizing_alloc::ZeroAlloc(tikv_jemallocator::Jemalloc);

/// Elsewhere: the system's allocator, wiped the same way.
#[cfg(not(unix))]
#[global_allocator]
static GLOBAL: zeroizing_alloc::ZeroAlloc<std::alloc::System> = zeroizing_alloc::ZeroAlloc(std::alloc::System);

/// The test-only hooks: the engine's mock clock and its sweeper.
struct EngineHooks {
    engine: Engine,
    clock: MockClock,
}

impl TestHooks for EngineHooks {
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn sweep(&self) -> usize {
        self.engine.sweep_expired()
    }
}

fn main() -> ExitCode {
    // First, before any secret is read: no core dumps, no same-user ptrace.
    let hardening_failures = xems_server::harden::disable_core_dumps();
    let mut cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xems: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log);
    for failure in &hardening_failures {
        tracing::warn!("{failure}");
    }
    if let Some((command, path)) = &cfg.vault_tool {
        return match cfg.vault_options() {
            Ok(opts) => xems_server::vault_cmd::run(command, path, opts),
            Err(e) => {
                eprintln!("xems: {e}");
                ExitCode::from(2)
            }
        };
    }
    match cfg.secret_source {
        SecretSource::Argv => tracing::warn!(
            "--secret is visible to other users in the process list; prefer --secret-file or XEMS_SECRET"
        ),
        SecretSource::Ephemeral => tracing::info!("no secret given: using a random ephemeral key"),
        SecretSource::Env | SecretSource::File => {}
    }
    if let Some(n) = cfg.cache_size {
        // A hint only: turning it into a hard record limit would log users
        // out when a sandbox fills up. Limits are set with --sandbox-limit.
        tracing::info!(cache_size = n, "cache size hint received (records per sandbox; not a hard limit)");
    }
    if let Some(ServeSettings { store: StoreKind::Redis(url), .. }) = &cfg.serve {
        let url = url.clone();
        return serve_redis(cfg, &url);
    }
    let mut builder = cfg.engine_builder();
    let test_clock = cfg.unsafe_test_clock.then(|| {
        tracing::warn!("--unsafe-test-clock: the store runs on a mock clock moved by clients. TEST ONLY.");
        MockClock::starting_now()
    });
    if let Some(clock) = &test_clock {
        builder = builder.clock(clock.clone()).sweep_interval(None);
    }
    // The vault: opened (locked, every record authenticated) before the
    // engine is built, because the engine's index keys come from it.
    let opened = match &cfg.persist {
        None => None,
        Some(path) => {
            let opened = cfg.vault_options().map_err(|e| e.to_string()).and_then(|opts| {
                xems_vault::Opened::open(path, opts)
                    .map_err(|e| format!("cannot open the vault {}: {e}", path.display()))
            });
            match opened {
                Ok(o) => Some(o),
                Err(e) => {
                    eprintln!("xems: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    if let Some(o) = &opened {
        builder = builder.key_root(o.key_root()).shards(o.shards()).journal(o.journal());
    }
    let store = match builder.build() {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("xems: {e}");
            return ExitCode::from(2);
        }
    };
    let vault = match opened.map(|o| o.recover(&store)) {
        None => None,
        Some(Ok((vault, recovery))) => {
            tracing::info!(
                path = %vault.path().display(),
                fsync = %cfg.fsync,
                restored = recovery.restored,
                "vault open"
            );
            if let Err(e) = vault.spawn_auto_compaction(&store) {
                tracing::warn!("{e}; the vault will not be compacted automatically");
            }
            Some(vault)
        }
        Some(Err(e)) => {
            eprintln!("xems: cannot open the vault: {e}");
            return ExitCode::from(2);
        }
    };
    // The engine and the vault hold derived keys now; the master secrets
    // are zeroized here rather than kept for the life of the process.
    cfg.secret = None;
    cfg.previous_secret = None;
    // Parsing the secret and deriving keys left copies in dead stack frames.
    xems_server::harden::scrub_stack::<{ 512 * 1024 }>();
    let test_hooks =
        test_clock.map(|clock| Arc::new(EngineHooks { engine: store.clone(), clock }) as Arc<dyn TestHooks>);

    if let Some(s) = &cfg.serve {
        raise_nofile_limit(s.max_connections);
    }
    let mut builder = match cfg.serve {
        // The stdio sidecar, and one thread: the single-threaded scheduler,
        // with no work-stealing queues to synchronize (what the benchmark
        // runs beside Redis).
        None | Some(ServeSettings { threads: Some(1), .. }) => tokio::runtime::Builder::new_current_thread(),
        Some(ServeSettings { threads: Some(n), .. }) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
    };
    // Every thread wipes the dead stack frames of the requests it answered
    // before it sleeps (see `harden::scrub_idle_stack`).
    let runtime = builder.enable_all().on_thread_park(scrub_idle_stack).build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xems: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conn =
        ConnConfig { max_line: cfg.max_line, auth_token: None, auth_timeout: Duration::from_secs(10), test_hooks };
    let code = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        // Installed before the first request is read, so a signal that
        // follows any answer is always handled.
        install_signal_handlers(shutdown.clone());
        match cfg.serve {
            None => {
                tracing::info!("stdio sidecar ready");
                let r = match stdio_pipes() {
                    Some((input, output)) => serve_connection(&store, &conn, false, input, output, shutdown).await,
                    None => {
                        serve_connection(&store, &conn, false, tokio::io::stdin(), tokio::io::stdout(), shutdown).await
                    }
                };
                match r {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        tracing::info!("stdout closed by the host; exiting");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        tracing::error!("stdio failed: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Some(s) => {
                let conn = ConnConfig { auth_token: s.auth_token.map(Arc::new), ..conn };
                let cfg = ServeConfig {
                    listen: s.listen,
                    max_connections: s.max_connections,
                    shutdown_grace: s.shutdown_grace,
                    conn,
                };
                match serve(store, cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e}");
                        eprintln!("xems: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    });
    // The stdin reader may still sit in a blocking read; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Some(vault) = vault {
        if let Err(e) = vault.close() {
            tracing::error!("closing the vault: {e}");
            eprintln!("xems: closing the vault: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!("vault closed");
    }
    code
}

/// Raises the soft limit on open files to the hard limit, so that `serve`
/// can hold as many connections as the administrator allows (the soft
/// default, often 1024, is far below `--max-connections` on a busy server);
/// warns when even the hard limit is below what `max_connections` needs.
fn raise_nofile_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = match (limit.current, limit.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }) {
                Ok(()) => {
                    tracing::debug!(from = soft, to = hard, "raised the open-file limit");
                    Some(hard)
                }
                Err(e) => {
                    tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                    Some(soft)
                }
            }
        }
        (soft, _) => soft,
    };
    // Listeners, the vault and the runtime need a few descriptors of their own.
    let needed = (max_connections as u64).saturating_add(64);
    if let Some(soft) = soft
        && soft < needed
    {
        tracing::warn!(
            "the open-file limit ({soft}) is below --max-connections ({max_connections}) plus headroom: \
             connections beyond it will be refused by the kernel (raise `ulimit -n`)"
        );
    }
}

/// `xems serve --store redis://...`: the same server and protocol over a
/// Redis / Valkey store (no vault, no test hooks: the configuration refused
/// `--persist` and `--unsafe-test-clock` already).
fn serve_redis(cfg: Config, url: &str) -> ExitCode {
    let shown = xems_redis::redact_url(url);
    let builder = match cfg.redis_builder(url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xems: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(s) = cfg.serve else { return ExitCode::from(2) };
    raise_nofile_limit(s.max_connections);
    // `--threads` as for the memory store (the Redis client's connection
    // task shares these threads).
    let runtime = match s.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xems: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let max_line = cfg.max_line;
    let code = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        install_signal_handlers(shutdown.clone());
        // Connected (and the server checked) before listening, so a wrong
        // URL or an unreachable server fails at start, not on a request.
        let store = match builder.connect().await {
            Ok(store) => store,
            Err(e) => {
                eprintln!("xems: --store {shown}: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(store = %shown, cluster = store.is_cluster(), "sessions live in Redis");
        let conn = ConnConfig {
            max_line,
            auth_token: s.auth_token.map(Arc::new),
            auth_timeout: Duration::from_secs(10),
            test_hooks: None,
        };
        let cfg = ServeConfig {
            listen: s.listen,
            max_connections: s.max_connections,
            shutdown_grace: s.shutdown_grace,
            conn,
        };
        match serve(store, cfg, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("xems: {e}");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Registers SIGTERM and SIGINT now; a task cancels `shutdown` on either.
fn install_signal_handlers(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("xems: bad log filter {filter:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Stdin and stdout as non-blocking pipes on the runtime's own event loop,
/// when both are pipes (as when the XyPriss host spawns the sidecar).
/// `tokio::io::stdin`/`stdout` hand every read and write to a blocking
/// thread and wake the runtime back, which costs two thread hops per request
/// at depth 1. `None` (a terminal, a file, a socket): use those instead.
///
/// Both are checked before either is converted: converting makes the file
/// description non-blocking, and a non-blocking stdin left behind for
/// tokio's blocking reader (stdin a pipe, stdout a file) fails its first
/// read with `EAGAIN`.
fn stdio_pipes() -> Option<(tokio::net::unix::pipe::Receiver, tokio::net::unix::pipe::Sender)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().ok()?);
    let output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    let is_fifo = |f: &std::fs::File| f.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if !(is_fifo(&input) && is_fifo(&output)) {
        return None;
    }
    let input = tokio::net::unix::pipe::Receiver::from_file(input).ok()?;
    let output = tokio::net::unix::pipe::Sender::from_file(output).ok()?;
    tracing::debug!("stdin and stdout are pipes: serving them on the event loop");
    Some((input, output))
}
