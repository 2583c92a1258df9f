//! The Redis backend's scripted rotation against the round trips a
//! hand-written rotation needs, on the same connection, in one run.
//!
//! ```sh
//! cargo run --release -p xems-redis --example bench -- [--quick]
//! ```
//!
//! Starts its own `redis-server` on a free loopback port. Each worker holds
//! one session and loops:
//!
//! - **xems**: `resolve(token, rotate, refresh idle)` through `RedisStore`:
//!   keyed hash, one EVALSHA, AES-GCM open, successor minted and sealed;
//! - **raw**: what a hand-written rotation sends: `GET old`, `SET new value`,
//!   `PEXPIRE new ttl`, three sequential round trips (no hashing, no
//!   sealing, no grace, no reuse detection, not atomic).
//!
//! Both run on the store's one multiplexed connection, alternating in
//! rounds, at 1 worker (each request waits for its answers: the cost of a
//! rotation as a request sees it) and at 16 workers (throughput through one
//! multiplexed connection). The last line is `RESULT {json}`;
//! `rotate_vs_raw_roundtrip` is xems's rotations per second over the raw
//! rotations per second at 1 worker (above 1: xems is faster), and
//! `rotate_vs_raw_roundtrip_w16` the same at 16 workers. The server's own
//! time per command (`INFO commandstats`) is printed too.

use std::time::{Duration, Instant};

use xems_core::{CreateOptions, MasterSecret, Refresh, ResolveOptions, SessionStore};
use xems_redis::RedisStore;
use xems_redis::testing::RedisServer;

/// Sessions each worker cycles through (a browser rotates a session a few
/// times a second at most; one hot session would measure grace-window
/// bookkeeping no real site has).
const SESSIONS: usize = 32;

const VALUE: &[u8] = br#"{"user":42,"roles":["admin"],"csrf":"9f0c1d2e3f405162738495a6b7c8d9ea"}"#;

async fn xems_round(store: &RedisStore, workers: usize, dur: Duration) -> f64 {
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tokens = Vec::with_capacity(SESSIONS);
                for _ in 0..SESSIONS {
                    tokens.push(store.create("active", VALUE, CreateOptions::new()).await.unwrap().token);
                }
                let opts = ResolveOptions::rotating().with_refresh(Refresh::Idle);
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < dur {
                    let i = n as usize % SESSIONS;
                    let r = store.resolve("active", tokens[i].expose(), opts).await.unwrap().expect("live session");
                    tokens[i] = r.token.expect("rotated");
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut total = 0.0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

async fn raw_round(store: &RedisStore, workers: usize, dur: Duration) -> f64 {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut keys = Vec::with_capacity(SESSIONS);
                for i in 0..SESSIONS {
                    let key = format!("raw:{w}:{i}:0");
                    store.raw_command(redis::cmd("SET").arg(&key).arg(VALUE).arg("PX").arg(900_000)).await.unwrap();
                    keys.push(key);
                }
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < dur {
                    let i = n as usize % SESSIONS;
                    let v = store.raw_command(redis::cmd("GET").arg(&keys[i])).await.unwrap();
                    let value: Vec<u8> = redis::from_redis_value(v).unwrap();
                    let next = format!("raw:{w}:{i}:{n}");
                    store.raw_command(redis::cmd("SET").arg(&next).arg(value)).await.unwrap();
                    store.raw_command(redis::cmd("PEXPIRE").arg(&next).arg(900_000)).await.unwrap();
                    keys[i] = next;
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut total = 0.0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (dur, rounds) = if quick { (Duration::from_millis(500), 1) } else { (Duration::from_secs(5), 3) };
    let server = RedisServer::start().expect("start redis-server");
    let store = RedisStore::builder(&server.url())
        .secret(MasterSecret::generate())
        .sweep_interval(None)
        .audit_log(false)
        .connect()
        .await
        .expect("connect");
    // Warm up: scripts loaded, connection established.
    xems_round(&store, 1, Duration::from_millis(200)).await;
    raw_round(&store, 1, Duration::from_millis(200)).await;

    println!(
        "xems-redis bench ({} mode): resolve+rotate vs GET+SET+PEXPIRE on one connection",
        if quick { "quick" } else { "full" }
    );
    println!("{:>8} {:>16} {:>16} {:>8}", "workers", "xems rot/s", "raw rot/s", "ratio");
    let mut figures = serde_json::Map::new();
    let mut headline = 0.0;
    for workers in [1usize, 16] {
        let (mut x, mut r) = (0.0, 0.0);
        // Alternate so that drift on a shared machine hits both alike.
        for _ in 0..rounds {
            x += xems_round(&store, workers, dur).await;
            r += raw_round(&store, workers, dur).await;
        }
        let (x, r) = (x / rounds as f64, r / rounds as f64);
        let ratio = x / r;
        println!("{workers:>8} {x:>16.0} {r:>16.0} {ratio:>8.2}");
        figures.insert(format!("xems_rotations_per_sec_w{workers}"), serde_json::json!(x.round()));
        figures.insert(format!("raw_rotations_per_sec_w{workers}"), serde_json::json!(r.round()));
        figures
            .insert(format!("rotate_vs_raw_roundtrip_w{workers}"), serde_json::json!((ratio * 100.0).round() / 100.0));
        if workers == 1 {
            headline = ratio;
        }
    }
    // Server-side cost per command, from Redis's own accounting.
    let info = server.query(redis::cmd("INFO").arg("commandstats")).expect("INFO");
    let info: String = redis::from_redis_value(info).unwrap();
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = &line["cmdstat_".len()..line.find(':').unwrap_or(line.len())];
        if let Some(us) = line.split(',').find_map(|f| f.strip_prefix("usec_per_call=")) {
            println!("server: {name} {us} us/call");
            figures.insert(format!("server_usec_per_{name}"), serde_json::json!(us.parse::<f64>().unwrap_or(0.0)));
        }
    }
    figures.insert("bench".into(), "redis".into());
    figures.insert("mode".into(), (if quick { "quick" } else { "full" }).into());
    figures.insert("rotate_vs_raw_roundtrip".into(), serde_json::json!((headline * 100.0).round() / 100.0));
    figures.insert("target".into(), serde_json::json!(1.0));
    println!("RESULT {}", serde_json::Value::Object(figures));
}
