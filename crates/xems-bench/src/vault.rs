//! `vault`: persistence, `cargo run --release -p xems-bench -- vault [--quick]`.
//!
//! 1. Resolve+rotate throughput of `xems serve` over loopback TCP, 50
//!    connections, each rotating its own session (every request presents the
//!    token the previous answer returned): in memory, then with the vault
//!    under each fsync policy; and `redis-server` with `appendonly yes` and
//!    the matching `appendfsync`, rotating with a Lua script (GET old, SET
//!    new PX ttl, PEXPIRE old grace), its files on the same disk, driven by
//!    the same generator.
//! 2. Restart time with 1,000,000 live sessions (256-byte values, each
//!    rotated once), from a compacted vault and from the journal alone.
//! 3. The compacted vault's size per session against the live payload.
//!
//! The generator here is small and its own (each connection waits for its
//! answer before sending the next rotation, which needs the token in it);
//! it drives xems and Redis identically.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::report::{self, Report};
use crate::services::{require_program, xems_binary};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use xems_core::{CreateOptions, Keyring, MasterSecret, ResolveOptions};
use xems_engine::Engine;
use xems_vault::{FsyncPolicy, Opened, VaultOptions};

const CONNECTIONS: usize = 50;
const VALUE_LEN: usize = 256;
const SECRET: &str = "bench-secret-0123456789abcdefghi";
const AUTH: &str = "bench-auth-token-0123456789abcdef";
const TTL_MS: u64 = 900_000;
const GRACE_MS: u64 = 1_000;
const ROTATE_LUA: &str = "local v = redis.call('GET', KEYS[1]) if not v then return 0 end \
redis.call('SET', KEYS[2], v, 'PX', ARGV[1]) redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1";

/// The 256-byte session value (JSON text, as a web app stores it).
fn session_value() -> String {
    let mut s = String::from(
        r#"{"user_id":"u_0000004242","email":"ada.lovelace@example.com","roles":["admin","billing"],"mfa":true,"csrf":"Yk3vQ9pX2LwZ8nR4tS7uV1aB","locale":"en-GB","pad":""#,
    );
    while s.len() + 2 < VALUE_LEN {
        s.push('x');
    }
    s.push_str(r#""}"#);
    s
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_xems(port: u16, persist: Option<(&Path, FsyncPolicy)>) -> Proc {
    let mut cmd = Command::new(xems_binary().expect("the xems binary"));
    cmd.args(["serve", "--listen", &format!("tcp://127.0.0.1:{port}"), "--log", "warn"])
        .env("XEMS_AUTH_TOKEN", AUTH)
        .env("XEMS_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some((dir, policy)) = persist {
        cmd.args(["--persist", dir.to_str().expect("utf-8 path"), "--fsync", &policy.to_string()]);
    }
    let p = Proc(cmd.spawn().expect("spawn xems"));
    wait_port(port);
    p
}

fn start_redis(port: u16, dir: &Path, fsync: &str) -> Proc {
    let bin = require_program("redis-server", "redis-server").expect("redis-server");
    let p = Proc(
        Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", fsync, "--dir", dir.to_str().expect("utf-8 path"), "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server"),
    );
    wait_port(port);
    p
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What the generator drives.
#[derive(Clone)]
enum Target {
    Xems,
    Redis { sha: String },
}

struct Flags {
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
}

/// One connection's rotation loop; counts rotations completed in the window.
async fn connection(port: u16, target: Target, conn: usize, value: Arc<String>, f: Arc<Flags>) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    match &target {
        Target::Xems => {
            w.write_all(format!("{{\"action\":\"auth\",\"token\":\"{AUTH}\"}}\n").as_bytes()).await.expect("write");
            r.read_line(&mut line).await.expect("read");
            assert!(line.contains("\"ok\""), "{line}");
            line.clear();
            let create = format!(
                "{{\"action\":\"create_session\",\"sandbox\":\"bench\",\"value\":{},\"ttl\":\"15m\"}}\n",
                serde_json::to_string(&*value).expect("json")
            );
            w.write_all(create.as_bytes()).await.expect("write");
            r.read_line(&mut line).await.expect("read");
            let mut token = extract_token(&line);
            let mut req = Vec::with_capacity(160);
            while !f.stop.load(Ordering::Relaxed) {
                req.clear();
                req.extend_from_slice(b"{\"action\":\"get\",\"sandbox\":\"bench\",\"key\":\"");
                req.extend_from_slice(token.as_bytes());
                req.extend_from_slice(b"\",\"rotate\":true}\n");
                w.write_all(&req).await.expect("write");
                line.clear();
                r.read_line(&mut line).await.expect("read");
                token = extract_token(&line);
                if f.measuring.load(Ordering::Relaxed) {
                    f.done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Target::Redis { sha } => {
            let key = |n: u64| format!("{{c{conn}}}:{n}");
            let ttl = TTL_MS.to_string();
            w.write_all(&resp(&[b"SET", key(0).as_bytes(), value.as_bytes(), b"PX", ttl.as_bytes()]))
                .await
                .expect("write");
            r.read_line(&mut line).await.expect("read");
            assert_eq!(line.trim(), "+OK");
            let grace = GRACE_MS.to_string();
            let mut n = 0u64;
            while !f.stop.load(Ordering::Relaxed) {
                let (old, new) = (key(n), key(n + 1));
                let args: [&[u8]; 7] = [
                    b"EVALSHA",
                    sha.as_bytes(),
                    b"2",
                    old.as_bytes(),
                    new.as_bytes(),
                    ttl.as_bytes(),
                    grace.as_bytes(),
                ];
                w.write_all(&resp(&args)).await.expect("write");
                line.clear();
                r.read_line(&mut line).await.expect("read");
                assert_eq!(line.trim(), ":1", "{line}");
                n += 1;
                if f.measuring.load(Ordering::Relaxed) {
                    f.done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn extract_token(line: &str) -> String {
    let start = line.find("\"new_token\":\"").unwrap_or_else(|| panic!("no new_token in {line}")) + 13;
    let len = line[start..].find('"').expect("a closing quote");
    line[start..start + len].to_owned()
}

/// Rotations per second over `CONNECTIONS` connections (one generator
/// thread: the server under test gets the other core).
fn load(port: u16, target: Target, warmup: Duration, window: Duration) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let f = Arc::new(Flags {
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
        });
        let value = Arc::new(session_value());
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            tasks.push(tokio::spawn(connection(port, target.clone(), c, value.clone(), f.clone())));
        }
        tokio::time::sleep(warmup).await;
        f.measuring.store(true, Ordering::Relaxed);
        let t = Instant::now();
        tokio::time::sleep(window).await;
        f.measuring.store(false, Ordering::Relaxed);
        let elapsed = t.elapsed();
        f.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("connection task");
        }
        f.done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
    })
}

fn redis_sha(port: u16) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(&resp(&[b"SCRIPT", b"LOAD", ROTATE_LUA.as_bytes()])).expect("write");
    let mut r = std::io::BufReader::new(s);
    let mut l = String::new();
    r.read_line(&mut l).expect("read");
    l.clear();
    r.read_line(&mut l).expect("read");
    l.trim().to_owned()
}

/// CPU seconds this process has used (user + system, all threads), from
/// `/proc/self/stat`: on a busy machine, wall time overstates the work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5) (utime, stime), counted after the ")".
    (ticks(11) + ticks(12)) / 100.0
}

/// Restart times (compacted: wall and CPU; journal only: wall) and the
/// compacted size, with `n` live sessions.
fn restart(n: usize, dir: &Path) -> (f64, f64, f64, u64, u64) {
    let secret = MasterSecret::parse(SECRET).expect("secret");
    let opts = || VaultOptions::new(Keyring::new(secret.clone())).fsync(FsyncPolicy::No).compact_after(u64::MAX, 1e9);
    let build = |o: &Opened| {
        Engine::builder()
            .secret(secret.clone())
            .audit_log(false)
            .key_root(o.key_root())
            .shards(o.shards())
            .journal(o.journal())
            .build()
            .expect("engine")
    };
    let value = session_value();
    {
        let opened = Opened::open(dir, opts()).expect("open");
        let engine = build(&opened);
        let (vault, _) = opened.recover(&engine).expect("recover");
        let sb = engine.sandbox("active").expect("sandbox");
        for i in 0..n {
            let subject = if i % 4 == 0 { Some("user") } else { None };
            let mut o = CreateOptions::new();
            if let Some(s) = subject {
                o = o.with_subject(s);
            }
            let t = sb.create(value.as_bytes(), o).expect("create").token;
            sb.resolve(t.expose(), ResolveOptions::rotating()).expect("resolve").expect("live");
        }
        vault.close().expect("close");
    }
    let t = Instant::now();
    let opened = Opened::open(dir, opts()).expect("open");
    let engine = build(&opened);
    let (vault, rec) = opened.recover(&engine).expect("recover");
    let from_journal = t.elapsed().as_secs_f64();
    assert_eq!(rec.restored as usize, n);
    let c = vault.compact(&engine).expect("compact");
    vault.close().expect("close");
    drop(engine);
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let opened = Opened::open(dir, opts()).expect("open");
    let engine = build(&opened);
    let (vault, rec) = opened.recover(&engine).expect("recover");
    let from_snapshot = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    assert_eq!(rec.restored as usize, n);
    vault.close().expect("close");
    (from_snapshot, cpu, from_journal, c.snapshot_bytes, c.value_bytes)
}

/// The figures and ratios of the RESULT line.
fn measure(quick: bool) -> Map<String, Value> {
    let (warmup, window) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(4))
    };
    let base = std::env::var_os("XEMS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let mut out = Map::new();
    println!(
        "resolve+rotate, {CONNECTIONS} connections over loopback TCP, {VALUE_LEN}-byte values, files in {}",
        base.display()
    );
    // Every server runs for the whole measurement (idle ones cost nothing);
    // the cases are measured in turn, `rounds` times, and the median kept,
    // so that drift in the machine's load spreads over all of them.
    let mut servers: Vec<(String, u16, Target, Proc, tempfile::TempDir)> = Vec::new();
    let dir = || tempfile::Builder::new().prefix("xems-bench-vault-").tempdir_in(&base).expect("tempdir");
    let d = dir();
    let port = free_port();
    servers.push(("xems memory".into(), port, Target::Xems, start_xems(port, None), d));
    for policy in [FsyncPolicy::No, FsyncPolicy::EverySec, FsyncPolicy::Always] {
        let d = dir();
        let port = free_port();
        let p = start_xems(port, Some((d.path(), policy)));
        servers.push((format!("xems vault fsync {policy}"), port, Target::Xems, p, d));
        let d = dir();
        let port = free_port();
        let p = start_redis(port, d.path(), &policy.to_string());
        let sha = redis_sha(port);
        servers.push((format!("redis aof appendfsync {policy}"), port, Target::Redis { sha }, p, d));
    }
    let rounds = if quick { 1 } else { 3 };
    let mut samples: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    for round in 0..rounds {
        for (name, port, target, _, _) in &servers {
            let v = load(*port, target.clone(), warmup, window);
            println!("  round {round}: {name:<30} {v:>10.0} rotations/s");
            samples.entry(name.clone()).or_default().push(v);
        }
    }
    drop(servers);
    let median = |name: &str| report::median(&samples[name]).expect("every case ran at least one round");
    let mut rates = Map::new();
    println!("medians:");
    for name in samples.keys().collect::<std::collections::BTreeSet<_>>() {
        let m = median(name);
        println!("  {name:<30} {m:>10.0} rotations/s");
        rates.insert(name.replace(' ', "_"), json!(m.round()));
    }
    let memory = median("xems memory");
    let xems = |p: &str| median(&format!("xems vault fsync {p}"));
    let redis = |p: &str| median(&format!("redis aof appendfsync {p}"));
    let ratio = |a: f64, b: f64| (a / b * 1000.0).round() / 1000.0;
    out.insert("everysec_vs_memory".into(), json!(ratio(xems("everysec"), memory)));
    out.insert("always_vs_redis_aof_always".into(), json!(ratio(xems("always"), redis("always"))));
    out.insert("always_vs_memory".into(), json!(ratio(xems("always"), memory)));
    out.insert("no_vs_memory".into(), json!(ratio(xems("no"), memory)));
    out.insert("everysec_vs_redis_aof_everysec".into(), json!(ratio(xems("everysec"), redis("everysec"))));
    out.insert("no_vs_redis_aof_no".into(), json!(ratio(xems("no"), redis("no"))));
    out.insert("rotations_per_s".into(), Value::Object(rates));

    let n = if quick { 100_000 } else { 1_000_000 };
    let dir = tempfile::Builder::new().prefix("xems-bench-restart-").tempdir_in(&base).expect("tempdir");
    let (snap_s, snap_cpu, journal_s, bytes, value_bytes) = restart(n, dir.path());
    let per = bytes as f64 / n as f64;
    println!("\nrestart with {n} live sessions (256-byte values, each rotated once, 1 in 4 with a subject):");
    println!("  from the compacted vault       {snap_s:>10.3} s ({snap_cpu:.3} s of CPU)");
    println!("  from the journal alone         {journal_s:>10.3} s");
    println!(
        "  compacted vault                {bytes} bytes = {per:.1} bytes/session = {:.3}x the {value_bytes} value bytes",
        bytes as f64 / value_bytes as f64
    );
    let scale = 1_000_000.0 / n as f64;
    out.insert("restart_sessions".into(), json!(n));
    out.insert("restart_1m_s".into(), json!((snap_s * scale * 1000.0).round() / 1000.0));
    out.insert("restart_1m_cpu_s".into(), json!((snap_cpu * scale * 1000.0).round() / 1000.0));
    out.insert("restart_1m_from_journal_s".into(), json!((journal_s * scale * 1000.0).round() / 1000.0));
    out.insert("restart_extrapolated".into(), json!(n != 1_000_000));
    out.insert("vault_bytes_per_session".into(), json!((per * 10.0).round() / 10.0));
    out.insert("vault_vs_payload".into(), json!(ratio(bytes as f64, value_bytes as f64)));
    out
}

/// Runs the vault bench and fills its report.
///
/// # Errors
///
/// None so far: a missing `redis-server` or `xems` binary panics with the
/// command that installs or builds it.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let figures = measure(quick);
    let mut ratios = Map::new();
    for (k, v) in figures {
        if k.contains("_vs_") {
            ratios.insert(k, v);
        } else {
            report.set(&k, v);
        }
    }
    crate::report::print_ratios(&ratios);
    report.set_ratios(&ratios);
    Ok(())
}
