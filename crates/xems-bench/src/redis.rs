//! `redis`: the Redis backend's scripted rotation against the round trips a
//! hand-written rotation needs, `cargo run --release -p xems-bench -- redis
//! [--quick]`.
//!
//! Starts its own `redis-server` (no persistence) on a free loopback port and
//! connects one `RedisStore` to it. Each worker holds 32 sessions
//! with 256-byte values and rotates them in turn:
//!
//! - **xems**: `resolve(token, rotate, refresh idle)` through `RedisStore`:
//!   the keyed hash of the token, one EVALSHA (the family's record, the
//!   successor's pointer, the retired token with its 1 s grace window, the
//!   refreshed idle deadline), AES-GCM open of the value, the successor
//!   minted and sealed;
//! - **raw**: what a hand-written rotation sends, three sequential round
//!   trips: `GET old`, `SET new value PX ttl`, `PEXPIRE old grace` (no
//!   hashing, no sealing, no reuse detection, not atomic).
//!
//! Both go through the store's one multiplexed connection (the raw commands
//! with `RedisStore::raw_command`), alternating in rounds so that drift on a
//! shared machine hits both alike, at 1 worker (each request waits for its
//! answers: the cost of a rotation as a request sees it) and at 16 workers
//! (throughput through one multiplexed connection).
//!
//! `rotate_vs_raw_roundtrip` is xems's rotations per second over the raw
//! rotations per second at 1 worker (above 1: one scripted round trip beats
//! three plain ones); `rotate_vs_raw_roundtrip_w16` the same at 16 workers.
//! The server's own time per command (`INFO commandstats`, reset before the
//! measured rounds) is printed and reported too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use xems_core::{CreateOptions, MasterSecret, Refresh, ResolveOptions, SessionStore};
use xems_redis::RedisStore;

use crate::measure::{Measurement, new_histogram};
use crate::report::{Report, print_ratios, print_table, ratio, round3};
use crate::services::{Persistence, RedisServer};

/// Sessions each worker cycles through: a browser rotates a session a few
/// times a second at most, so one hot session would measure grace-window
/// bookkeeping no real site has.
const SESSIONS: usize = 32;
/// Bytes of each session value.
const VALUE_LEN: usize = 256;
const TTL: Duration = Duration::from_secs(900);
const GRACE: Duration = Duration::from_secs(1);
/// The worker counts measured (the first is the headline).
const WORKERS: [usize; 2] = [1, 16];

/// A 256-byte session value (JSON text, as a web app stores it).
fn session_value() -> Vec<u8> {
    let mut s =
        String::from(r#"{"user_id":"u_0000004242","roles":["admin"],"csrf":"9f0c1d2e3f405162738495a6","pad":""#);
    while s.len() + 2 < VALUE_LEN {
        s.push('x');
    }
    s.push_str(r#""}"#);
    s.into_bytes()
}

/// What one worker brings back from one round.
struct WorkerOutcome {
    ops: u64,
    hist: Histogram<u64>,
}

/// One round of `workers` workers running `op` for `dur`; the merged
/// measurement.
async fn round<F, Fut>(name: &str, workers: usize, dur: Duration, spawn: F) -> anyhow::Result<Measurement>
where
    F: Fn(usize, Duration) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<WorkerOutcome>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers).map(|w| tokio::spawn(spawn(w, dur))).collect();
    let mut ops = 0;
    let mut hist = new_histogram();
    for t in tasks {
        let o = t.await.context("a bench worker panicked")??;
        ops += o.ops;
        hist.add(&o.hist).context("merging histograms")?;
    }
    Ok(Measurement::new(name, workers, ops, start.elapsed(), &hist))
}

/// xems: resolve with rotation, `SESSIONS` sessions per worker.
async fn xems_worker(store: RedisStore, value: Arc<Vec<u8>>, dur: Duration) -> anyhow::Result<WorkerOutcome> {
    let mut tokens = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        tokens.push(store.create("bench", &value, CreateOptions::new().with_ttl(TTL)).await?.token);
    }
    let opts = ResolveOptions::rotating().with_grace(GRACE).with_refresh(Refresh::Idle);
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < dur {
        let i = ops as usize % SESSIONS;
        let t0 = Instant::now();
        let r = store.resolve("bench", tokens[i].expose(), opts).await?.context("a live session missed")?;
        tokens[i] = r.token.context("a rotating resolve returned no successor")?;
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        ops += 1;
    }
    Ok(WorkerOutcome { ops, hist })
}

/// Raw: GET old, SET new PX ttl, PEXPIRE old grace, `SESSIONS` keys per
/// worker, on the store's connection.
async fn raw_worker(store: RedisStore, value: Arc<Vec<u8>>, w: usize, dur: Duration) -> anyhow::Result<WorkerOutcome> {
    let ttl_ms = TTL.as_millis() as u64;
    let grace_ms = GRACE.as_millis() as u64;
    // A fresh key space per round (a random tag), so rounds do not collide.
    let mut tag = [0u8; 6];
    xems_core::random_bytes(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let mut keys = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let key = format!("raw:{tag}:{w}:{i}:0");
        store.raw_command(::redis::cmd("SET").arg(&key).arg(value.as_slice()).arg("PX").arg(ttl_ms)).await?;
        keys.push(key);
    }
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < dur {
        let i = ops as usize % SESSIONS;
        let t0 = Instant::now();
        let v = store.raw_command(::redis::cmd("GET").arg(&keys[i])).await?;
        let v: Vec<u8> = ::redis::from_redis_value(v).context("GET of a live key")?;
        let next = format!("raw:{tag}:{w}:{i}:{ops}");
        store.raw_command(::redis::cmd("SET").arg(&next).arg(v).arg("PX").arg(ttl_ms)).await?;
        store.raw_command(::redis::cmd("PEXPIRE").arg(&keys[i]).arg(grace_ms)).await?;
        keys[i] = next;
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        ops += 1;
    }
    Ok(WorkerOutcome { ops, hist })
}

/// The server's time per command since the last reset, from `INFO
/// commandstats`: (command, calls, microseconds per call).
async fn commandstats(store: &RedisStore) -> anyhow::Result<Vec<(String, u64, f64)>> {
    let info = store.raw_command(::redis::cmd("INFO").arg("commandstats")).await?;
    let info: String = ::redis::from_redis_value(info)?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else { continue };
        let Some((name, fields)) = rest.split_once(':') else { continue };
        let field = |k: &str| fields.split(',').find_map(|f| f.strip_prefix(k)).and_then(|v| v.parse::<f64>().ok());
        if let (Some(calls), Some(us)) = (field("calls="), field("usec_per_call=")) {
            out.push((name.to_owned(), calls as u64, us));
        }
    }
    Ok(out)
}

/// Runs the redis bench and fills its report.
///
/// # Errors
///
/// `redis-server` missing or failing, or an operation failed.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(quick, report))
}

async fn run_async(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let (dur, rounds) = if quick { (Duration::from_millis(400), 1) } else { (Duration::from_secs(5), 3) };
    let server = RedisServer::start(Persistence::Off)?;
    let store = RedisStore::builder(&format!("redis://{}", server.addr()))
        .secret(MasterSecret::generate())
        .sweep_interval(None)
        .audit_log(false)
        .connect()
        .await
        .context("connecting the Redis store")?;
    let value = Arc::new(session_value());
    let xems = |_w: usize, d: Duration| xems_worker(store.clone(), value.clone(), d);
    let raw = |w: usize, d: Duration| raw_worker(store.clone(), value.clone(), w, d);
    // Warm up: scripts loaded, connection established, allocator grown.
    round("warm-up", 2, Duration::from_millis(200), xems).await?;
    round("warm-up", 2, Duration::from_millis(200), raw).await?;
    store.raw_command(::redis::cmd("CONFIG").arg("RESETSTAT")).await?;

    println!(
        "\n{SESSIONS} sessions per worker, {VALUE_LEN}-byte values, grace {} ms, {rounds} round(s) of {} ms each",
        GRACE.as_millis(),
        dur.as_millis()
    );
    let mut rows = Vec::new();
    let mut ratios = Map::new();
    let mut figures = Map::new();
    for workers in WORKERS {
        let (mut best_x, mut best_r): (Option<Measurement>, Option<Measurement>) = (None, None);
        let (mut sum_x, mut sum_r) = (0.0, 0.0);
        for _ in 0..rounds {
            let x = round(&format!("xems resolve+rotate w{workers}"), workers, dur, xems).await?;
            let r = round(&format!("raw GET+SET+PEXPIRE w{workers}"), workers, dur, raw).await?;
            sum_x += x.ops_per_s;
            sum_r += r.ops_per_s;
            // The table shows each side's best round; the ratio uses the
            // mean of all rounds.
            if best_x.as_ref().is_none_or(|b| x.ops_per_s > b.ops_per_s) {
                best_x = Some(x);
            }
            if best_r.as_ref().is_none_or(|b| r.ops_per_s > b.ops_per_s) {
                best_r = Some(r);
            }
        }
        let (x, r) = (sum_x / rounds as f64, sum_r / rounds as f64);
        let (bx, br) = (best_x.expect("at least one round"), best_r.expect("at least one round"));
        figures.insert(format!("xems_rotations_per_s_w{workers}"), json!(x.round()));
        figures.insert(format!("raw_rotations_per_s_w{workers}"), json!(r.round()));
        figures.insert(format!("xems_p99_us_w{workers}"), json!(round3(bx.latency.p99_ns as f64 / 1e3)));
        figures.insert(format!("raw_p99_us_w{workers}"), json!(round3(br.latency.p99_ns as f64 / 1e3)));
        let rt = ratio(Some(x), Some(r));
        ratios.insert(format!("rotate_vs_raw_roundtrip_w{workers}"), json!(rt));
        if workers == WORKERS[0] {
            ratios.insert("rotate_vs_raw_roundtrip".into(), json!(rt));
        }
        rows.push(bx);
        rows.push(br);
    }
    print_table("resolve+rotate through xems-redis vs a hand-written rotation (best round shown)", &rows);

    // Server-side cost, from Redis's own accounting of the measured rounds.
    let stats = commandstats(&store).await?;
    println!("\nredis-server time per command (measured rounds only)");
    let mut server = Map::new();
    for (name, calls, us) in &stats {
        println!("  {name:<24} {calls:>10} calls {us:>9.2} us/call");
        server.insert(name.clone(), json!({ "calls": calls, "usec_per_call": us }));
    }
    let usec = |n: &str| stats.iter().find(|(c, _, _)| c == n).map(|(_, _, us)| *us);
    if let (Some(eval), Some(get), Some(set), Some(pexpire)) =
        (usec("evalsha"), usec("get"), usec("set"), usec("pexpire"))
    {
        let raw = get + set + pexpire;
        println!("  one rotation in the server: xems {eval:.2} us (one EVALSHA), raw {raw:.2} us (three commands)");
        figures.insert("server_us_per_xems_rotation".into(), json!(round3(eval)));
        figures.insert("server_us_per_raw_rotation".into(), json!(round3(raw)));
    }
    print_ratios(&ratios);
    report.set("workers", WORKERS);
    report.set("sessions_per_worker", SESSIONS);
    report.set("value_bytes", VALUE_LEN);
    report.set("grace_ms", GRACE.as_millis() as u64);
    for (k, v) in figures {
        report.set(&k, v);
    }
    report.set("server_commandstats", Value::Object(server));
    report.set("target_rotate_vs_raw_roundtrip", 1.0);
    report.set_ratios(&ratios);
    Ok(())
}
