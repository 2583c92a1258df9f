//! No token, secret or session value ever reaches a log line, at TRACE.
//!
//! The whole conformance suite runs twice, with every log line captured:
//!
//! 1. against the embedded engine in this process, under a `tracing`
//!    subscriber at TRACE for every target (the engine's audit target
//!    `xems::audit` included, and the client's logs in part 2);
//! 2. against the real `xems serve` binary started with `--log trace`
//!    (its stderr captured), driven through `xems-client`.
//!
//! Each store is wrapped in a recorder that keeps every token it saw or
//! handed out, every caller key and every value; then a scenario with a
//! random marker in values, keys and forged tokens runs, error paths
//! included. Every recorded secret (12 bytes or longer, so that a value
//! like `"v"` does not match ordinary words), the marker and the master
//! secret must appear in no log line; and the logs must not be empty (so
//! the check can fail).
//!
//! Under the whole-suite capture (`XEMS_TEST_LOG_DIR`, see
//! `xems_testkit::logs`) these lines also go to the capture directory, where
//! `xems-logscan` checks them again by shape with the rest of the suite's.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use xems_client::Client;
use xems_core::{
    CreateOptions, Created, MasterSecret, ResolveOptions, Resolved, Result, SessionId, SessionMeta, SessionStore,
    Stats, UpdateOutcome,
};
use xems_engine::{Engine, LimitPolicy, ReusePolicy, SandboxLimits};
use xems_testkit::{Backend, Harness, Setup};

// ---------------------------------------------------------------- captures

/// Every secret any recorder saw.
fn secrets() -> &'static Mutex<Vec<Vec<u8>>> {
    static S: OnceLock<Mutex<Vec<Vec<u8>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn record(bytes: &[u8]) {
    if bytes.len() >= 12 {
        secrets().lock().unwrap().push(bytes.to_vec());
    }
}

// The log lines of this process (engine, client) come from the testkit's
// capture (`xems_testkit::logs::capture_in_memory`, which also writes them to
// the whole-suite capture directory when there is one); the servers' from
// their stderr.
fn server_log() -> &'static Mutex<Vec<u8>> {
    static L: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// The master secret every store of this test runs under.
fn secret_text() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| format!("hex:{}", random_hex(32)))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- recorder

/// A store that records every secret passing through it.
#[derive(Clone)]
struct Recording<S>(S);

fn created(c: &Created) {
    record(c.token.expose().as_bytes());
}

fn resolved(r: &Option<Resolved>) {
    if let Some(r) = r {
        record(r.value.as_bytes());
        if let Some(t) = &r.token {
            record(t.expose().as_bytes());
        }
    }
}

impl<S: SessionStore> SessionStore for Recording<S> {
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        record(value);
        let r = self.0.create(sandbox, value, opts).await;
        if let Ok(c) = &r {
            created(c);
        }
        r
    }
    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        record(token.as_bytes());
        let r = self.0.resolve(sandbox, token, opts).await;
        if let Ok(x) = &r {
            resolved(x);
        }
        r
    }
    async fn get(&self, sandbox: &str, key: &str) -> Result<Option<Resolved>> {
        record(key.as_bytes());
        let r = self.0.get(sandbox, key).await;
        if let Ok(x) = &r {
            resolved(x);
        }
        r
    }
    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        record(key.as_bytes());
        record(value);
        self.0.set(sandbox, key, value, opts).await
    }
    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        record(key.as_bytes());
        self.0.del(sandbox, key).await
    }
    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        record(key.as_bytes());
        self.0.exists(sandbox, key).await
    }
    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        record(key.as_bytes());
        self.0.touch(sandbox, key, ttl).await
    }
    async fn update_if(&self, sandbox: &str, key: &str, expected: u64, value: &[u8]) -> Result<UpdateOutcome> {
        record(key.as_bytes());
        record(value);
        self.0.update_if(sandbox, key, expected, value).await
    }
    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        record(token.as_bytes());
        if let Some(v) = value {
            record(v);
        }
        let r = self.0.migrate(from, token, to, value, opts).await;
        if let Ok(Some(c)) = &r {
            created(c);
        }
        r
    }
    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        self.0.list_subject(sandbox, subject).await
    }
    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        if let Some(t) = except {
            record(t.as_bytes());
        }
        self.0.revoke_subject(sandbox, subject, except).await
    }
    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        self.0.revoke_session(sandbox, subject, id).await
    }
    async fn stats(&self) -> Result<Stats> {
        self.0.stats().await
    }
}

// ---------------------------------------------------------------- engine

struct EngineBackend;

struct EngineHarness {
    store: Recording<Engine>,
    clock: xems_core::MockClock,
}

impl Harness for EngineHarness {
    type Store = Recording<Engine>;
    fn store(&self) -> &Self::Store {
        &self.store
    }
    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    async fn sweep(&self) {
        self.store.0.sweep_expired();
    }
}

impl Backend for EngineBackend {
    type Harness = EngineHarness;
    async fn start(setup: Setup) -> EngineHarness {
        let clock = xems_core::MockClock::starting_now();
        let mut builder = Engine::builder()
            .secret(MasterSecret::parse(secret_text()).unwrap())
            .audit_log(true)
            .clock(clock.clone())
            .sweep_interval(None)
            .reuse_policy(if setup.revoke_on_reuse { ReusePolicy::RevokeSession } else { ReusePolicy::RefuseToken });
        for spec in &setup.sandboxes {
            let policy = if spec.evict_soonest { LimitPolicy::EvictSoonestExpiring } else { LimitPolicy::Refuse };
            builder = builder.sandbox_limits(
                spec.name,
                SandboxLimits::default()
                    .with_max_records(spec.max_records)
                    .with_max_value_bytes(spec.max_value_bytes)
                    .with_policy(policy),
            );
        }
        EngineHarness { store: Recording(builder.build().unwrap()), clock }
    }
}

// ---------------------------------------------------------------- server

struct ServerBackend;

struct ServerHarness {
    store: Recording<Client>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ServerHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Harness for ServerHarness {
    type Store = Recording<Client>;
    fn store(&self) -> &Self::Store {
        &self.store
    }
    async fn advance(&self, by: Duration) {
        self.store.0.debug_advance_clock(by).await.expect("debug_advance_clock");
    }
    async fn sweep(&self) {
        self.store.0.debug_sweep().await.expect("debug_sweep");
    }
}

impl Backend for ServerBackend {
    type Harness = ServerHarness;
    async fn start(setup: Setup) -> ServerHarness {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("xems.sock");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, secret_text()).unwrap();
        let mut args = vec![
            "serve".to_owned(),
            "--unsafe-test-clock".to_owned(),
            "--log".to_owned(),
            "trace".to_owned(),
            "--secret-file".to_owned(),
            secret_file.display().to_string(),
            "--listen".to_owned(),
            format!("unix://{}", sock.display()),
            "--reuse-policy".to_owned(),
            if setup.revoke_on_reuse { "revoke-session" } else { "refuse-token" }.to_owned(),
        ];
        for s in &setup.sandboxes {
            args.push("--sandbox-limit".to_owned());
            args.push(format!(
                "{}:max_records={},max_value_bytes={},policy={}",
                s.name,
                s.max_records,
                s.max_value_bytes,
                if s.evict_soonest { "evict-soonest-expiring" } else { "refuse" }
            ));
        }
        let mut child = Command::new(common::BIN)
            .args(&args)
            .env_remove("XEMS_LOG")
            .env_remove("XEMS_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xems serve");
        let stderr = child.stderr.take().unwrap();
        let tee = xems_testkit::logs::Tee::new("serve");
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                tee.line(&String::from_utf8_lossy(&line));
                server_log().lock().unwrap().extend_from_slice(&line);
                line.clear();
            }
        });
        let url = format!("unix://{}", sock.display());
        let start = Instant::now();
        let client = loop {
            match Client::builder(&url).pool_size(4).connect().await {
                Ok(c) => break c,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("xems serve did not come up: {e}"),
            }
        };
        ServerHarness { store: Recording(client), child, _dir: dir }
    }
}

// ---------------------------------------------------------------- the runs

/// Every case of the conformance suite, in turn (checked against the
/// testkit's source below, so a new case cannot be missed).
async fn run_suite<B: Backend>() -> &'static [&'static str] {
    xems_testkit::conformance_suite!(@run_all B)
}

/// A scenario with the marker everywhere a secret can be, error paths
/// included (a forged token, an over-long key, a value over the limit).
async fn marker_scenario<B: Backend>(marker: &str) {
    let h = B::start(Setup::standard()).await;
    let s = h.store();
    let value = format!("{{\"note\":\"{marker}\"}}");
    let c = s.create("app", value.as_bytes(), CreateOptions::new().with_subject("u1")).await.unwrap();
    let r = s.resolve("app", c.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    let current = r.token.unwrap();
    let key = format!("key-{marker}");
    s.set("app", &key, value.as_bytes(), CreateOptions::new()).await.unwrap();
    assert!(s.get("app", &key).await.unwrap().is_some());
    let meta = s.touch("app", &key, None).await.unwrap().unwrap();
    s.update_if("app", &key, meta.version, format!("v2-{marker}").as_bytes()).await.unwrap();
    s.update_if("app", &key, 999, format!("v3-{marker}").as_bytes()).await.unwrap();
    let moved = s.migrate("app", current.expose(), "active", Some(value.as_bytes()), CreateOptions::new()).await;
    let moved = moved.unwrap().unwrap();
    s.revoke_subject("active", "u1", Some(moved.token.expose())).await.unwrap();
    // Replays and forgeries, shaped like tokens and not.
    assert!(s.resolve("app", c.token.expose(), ResolveOptions::new()).await.unwrap().is_none());
    let forged = format!("{marker}{marker}{}", &marker[..2]);
    let _ = s.resolve("app", &forged, ResolveOptions::rotating()).await;
    let _ = s.get("app", &format!("{}{marker}", "k".repeat(600))).await;
    let _ = s.set("capped", &key, format!("{marker}{}", "x".repeat(2000)).as_bytes(), CreateOptions::new()).await;
    let _ = s.set("bad sandbox", &key, value.as_bytes(), CreateOptions::new()).await;
    assert!(s.del("app", &key).await.unwrap());
    assert!(s.del("active", moved.token.expose()).await.unwrap());
}

/// Every needle found in `log`, as a description.
fn hits(log: &[u8], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, n) in needles {
        if let Some(at) = memchr::memmem::find(log, n) {
            let line_start = log[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let line_end = log[at..].iter().position(|&b| b == b'\n').map_or(log.len(), |p| at + p);
            found.push(format!("{what} in: {}", String::from_utf8_lossy(&log[line_start..line_end])));
        }
    }
    found
}

fn needles(marker: &str) -> Vec<(String, Vec<u8>)> {
    let secret = MasterSecret::parse(secret_text()).unwrap();
    let mut n = vec![
        ("marker".to_owned(), marker.as_bytes().to_vec()),
        ("master secret (text)".to_owned(), secret_text().as_bytes()["hex:".len()..].to_vec()),
        ("master secret (bytes)".to_owned(), secret.expose_secret().to_vec()),
    ];
    let mut seen = secrets().lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    n.extend(seen.into_iter().map(|s| (format!("recorded secret {:?}", String::from_utf8_lossy(&s)), s)));
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_or_value_in_any_log_line() {
    // The list above is the testkit's whole suite.
    let source = include_str!("../../xems-testkit/src/cases.rs");
    let mut in_kit: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .map(|l| l.split(['<', '(']).next().unwrap())
        .collect();
    in_kit.sort_unstable();

    xems_testkit::logs::capture_in_memory();
    let marker = format!("mark{}", random_hex(12));

    let mut ran = run_suite::<EngineBackend>().await.to_vec();
    marker_scenario::<EngineBackend>(&marker).await;
    ran.sort_unstable();
    assert_eq!(ran, in_kit, "run every conformance case");

    run_suite::<ServerBackend>().await;
    marker_scenario::<ServerBackend>(&marker).await;
    // Let the servers' last lines arrive (they are killed with their harness).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let in_process = xems_testkit::logs::captured();
    let server = server_log().lock().unwrap().clone();
    let text = String::from_utf8_lossy(&in_process);
    assert!(text.contains("xems::audit"), "the engine's audit lines were not captured");
    assert!(text.lines().count() > 1000, "too few in-process log lines: {}", text.lines().count());
    let server_text = String::from_utf8_lossy(&server);
    assert!(server_text.contains("TRACE"), "the server logged nothing at TRACE");
    assert!(server_text.contains("xems::audit"), "the server's audit lines were not captured");

    let needles = needles(&marker);
    assert!(needles.len() > 500, "only {} secrets recorded", needles.len());
    let mut found = hits(&in_process, &needles);
    found.extend(hits(&server, &needles).into_iter().map(|h| format!("(server) {h}")));
    assert!(found.is_empty(), "{} secrets in the logs:\n{}", found.len(), found.join("\n"));
}
