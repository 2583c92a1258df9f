//! `redis`: the Redis backend's scripted rotation against the round trips a
//! hand-written rotation needs, `cargo run --release -p xems-bench -- redis
//! [--quick]`.
//!
//! Starts its own `redis-server` (no persistence) on a free loopback port and
//! connects one `RedisStore` to it. Workers rotate a population of sessions
//! with 256-byte values, each session in turn:
//!
//! - **xems**: `resolve(token, rotate, refresh idle)` through `RedisStore`:
//!   the keyed hash of the token, one EVALSHA (the record the token's
//!   selector names: the successor's digest, the retired token with its 1 s
//!   grace window, the refreshed idle deadline), AES-GCM open of the value,
//!   the successor minted and sealed;
//! - **raw**: what a hand-written rotation sends, three sequential round
//!   trips: `GET old`, `SET new value PX ttl`, `PEXPIRE old grace` (no
//!   hashing, no sealing, no reuse detection, not atomic).
//!
//! Both sides rotate the same number of sessions, created before the
//! measured rounds and kept across them, and go through the store's one
//! multiplexed connection (the raw commands with `RedisStore::raw_command`),
//! alternating in rounds so that drift on a shared machine hits both alike,
//! at 1 worker (each request waits for its answers: the cost of a rotation
//! as a request sees it) and at 16 workers (throughput through one
//! multiplexed connection).
//!
//! Two key populations are measured:
//!
//! - **many sessions** (the headline): 16,000 sessions shared out among the
//!   workers (all of them for 1 worker, 1,000 each for 16), so each session
//!   is rotated one to a few times a second and holds a retired token or
//!   two inside its grace window. That is what a site sees: many sessions,
//!   each rotated once per request of one browser.
//! - **hot sessions**: 32 sessions per worker rotated as fast as the server
//!   allows, hundreds of times per second each, so every session holds
//!   hundreds of retired tokens inside their 1 s grace window. No browser
//!   rotates a session that often (a burst of parallel requests, a client
//!   bug or a replay might); it is kept, under its own names (`_hot`), as
//!   the worst case of the grace bookkeeping, and to compare with the runs
//!   before the headline moved to many sessions (it was the only workload:
//!   its rotations each paid for a retired-token index that real sessions
//!   rarely need).
//!
//! `rotate_vs_raw_roundtrip` is xems's rotations per second over the raw
//! rotations per second with many sessions at 1 worker (above 1: one
//! scripted round trip beats three plain ones); `_w16` the same at 16
//! workers; `rotate_vs_raw_roundtrip_hot` and `_hot_w16` the hot workload.
//!
//! The cost of each side is also measured per rotation, over its own rounds:
//! the CPU time of the `redis-server` process (from
//! `/proc/PID/task/*/schedstat`: it counts reading requests, writing replies
//! and expiring keys, and not time the server was preempted, so it is the
//! steadier figure on a shared machine), Redis's own `INFO commandstats`
//! (reset before each round; EVALSHA's time includes the commands the script
//! calls), and the CPU time of this process, the client, which shares the
//! machine's two vCPUs with the server. `rotate_vs_raw_server_cpu` (`_w16`,
//! `_hot`, ...) is raw's server CPU per rotation over xems's: above 1, a
//! rotation costs Redis less through xems. Once Redis's one thread is the
//! bottleneck (Redis on its own machine, many clients), that ratio is the
//! throughput ratio; on this machine at 16 workers the client's CPU counts
//! too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use xems_core::{CreateOptions, MasterSecret, Refresh, ResolveOptions, SessionStore, Token};
use xems_redis::RedisStore;

use crate::measure::{Measurement, new_histogram, process_cpu_ns};
use crate::report::{Report, print_ratios, print_table, ratio, round3};
use crate::services::{Persistence, RedisServer};

/// Bytes of each session value.
const VALUE_LEN: usize = 256;
const TTL: Duration = Duration::from_secs(900);
const GRACE: Duration = Duration::from_secs(1);
/// The worker counts measured (the first is the headline).
const WORKERS: [usize; 2] = [1, 16];

/// How many sessions a workload rotates.
#[derive(Clone, Copy, Debug)]
enum Sessions {
    /// This many in all, shared out among the workers (the same population
    /// for every worker count).
    Total(usize),
    /// This many per worker.
    PerWorker(usize),
}

/// A key population.
#[derive(Clone, Copy, Debug)]
struct Workload {
    /// Appended to the names of its figures and ratios (empty for the
    /// headline).
    suffix: &'static str,
    label: &'static str,
    sessions: Sessions,
}

/// The workloads measured, the headline first.
const WORKLOADS: [Workload; 2] = [
    Workload { suffix: "", label: "many sessions", sessions: Sessions::Total(16_000) },
    Workload { suffix: "_hot", label: "hot sessions", sessions: Sessions::PerWorker(32) },
];

/// Tasks that create a population in parallel.
const SETUP_TASKS: usize = 16;

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

/// One worker's sessions, kept across rounds: current tokens (xems) or key
/// names (raw, `raw:<tag>:<session>:<generation>`), and the next one to
/// rotate.
struct Population<T> {
    items: Vec<T>,
    next: usize,
}

impl<T> Default for Population<T> {
    fn default() -> Self {
        Population { items: Vec::new(), next: 0 }
    }
}

/// The populations of every worker of one side.
type Shared<T> = Arc<Vec<Mutex<Population<T>>>>;

/// Takes worker `w`'s population for a round (given back by [`put`]).
fn take<T>(shared: &Shared<T>, w: usize) -> Population<T> {
    std::mem::take(&mut *shared[w].lock().expect("population lock"))
}

fn put<T>(shared: &Shared<T>, w: usize, p: Population<T>) {
    *shared[w].lock().expect("population lock") = p;
}

/// The server's (and the bench's own) cost of one side in one round.
#[derive(Default, Clone)]
struct ServerCost {
    rotations: u64,
    /// CPU nanoseconds of the redis-server process.
    cpu_ns: u64,
    /// CPU nanoseconds of this process (the client side: hashing, sealing,
    /// the connection), which shares the machine with the server.
    client_cpu_ns: u64,
    /// `INFO commandstats`: command -> (calls, microseconds).
    commands: Vec<(String, u64, u64)>,
}

impl ServerCost {
    fn add(&mut self, other: &ServerCost) {
        self.rotations += other.rotations;
        self.cpu_ns += other.cpu_ns;
        self.client_cpu_ns += other.client_cpu_ns;
        for (name, calls, us) in &other.commands {
            match self.commands.iter_mut().find(|(n, _, _)| n == name) {
                Some(c) => {
                    c.1 += calls;
                    c.2 += us;
                }
                None => self.commands.push((name.clone(), *calls, *us)),
            }
        }
    }

    fn cpu_us_per_rotation(&self) -> f64 {
        if self.rotations == 0 { 0.0 } else { self.cpu_ns as f64 / 1e3 / self.rotations as f64 }
    }

    fn client_cpu_us_per_rotation(&self) -> f64 {
        if self.rotations == 0 { 0.0 } else { self.client_cpu_ns as f64 / 1e3 / self.rotations as f64 }
    }

    /// Commandstats microseconds per rotation of the given commands.
    fn us_per_rotation(&self, names: &[&str]) -> f64 {
        let us: u64 = self.commands.iter().filter(|(n, _, _)| names.contains(&n.as_str())).map(|c| c.2).sum();
        if self.rotations == 0 { 0.0 } else { us as f64 / self.rotations as f64 }
    }

    fn json(&self) -> Value {
        let mut m = Map::new();
        for (name, calls, us) in &self.commands {
            let per = if *calls == 0 { 0.0 } else { *us as f64 / *calls as f64 };
            m.insert(name.clone(), json!({ "calls": calls, "usec_per_call": round3(per) }));
        }
        Value::Object(m)
    }
}

/// One round of `workers` workers running `op` for `dur`: the merged
/// measurement and the server's cost.
async fn round<F, Fut>(
    store: &RedisStore,
    pid: u32,
    name: &str,
    workers: usize,
    dur: Duration,
    spawn: F,
) -> anyhow::Result<(Measurement, ServerCost)>
where
    F: Fn(usize, Duration) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<WorkerOutcome>> + Send + 'static,
{
    store.raw_command(::redis::cmd("CONFIG").arg("RESETSTAT")).await?;
    let cpu0 = process_cpu_ns(pid).context("reading redis-server's CPU time")?;
    let me = std::process::id();
    let client0 = process_cpu_ns(me).context("reading the bench's CPU time")?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers).map(|w| tokio::spawn(spawn(w, dur))).collect();
    let mut ops = 0;
    let mut hist = new_histogram();
    for t in tasks {
        let o = t.await.context("a bench worker panicked")??;
        ops += o.ops;
        hist.add(&o.hist).context("merging histograms")?;
    }
    let elapsed = start.elapsed();
    let cpu_ns = process_cpu_ns(pid).context("reading redis-server's CPU time")?.saturating_sub(cpu0);
    let client_cpu_ns = process_cpu_ns(me).context("reading the bench's CPU time")?.saturating_sub(client0);
    let mut commands = commandstats(store).await?;
    // The INFO and CONFIG calls of the bench itself are not the workload's.
    commands.retain(|(n, _, _)| !n.starts_with("config") && n != "info");
    Ok((
        Measurement::new(name, workers, ops, elapsed, &hist),
        ServerCost { rotations: ops, cpu_ns, client_cpu_ns, commands },
    ))
}

/// Runs `task(t)` for `t` in `0..SETUP_TASKS` concurrently (setting up a
/// population one command at a time would take longer than measuring it)
/// and concatenates what the tasks return.
async fn in_setup_tasks<T, F, Fut>(task: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<T>>> + Send + 'static,
{
    let tasks: Vec<_> = (0..SETUP_TASKS).map(|t| tokio::spawn(task(t))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.context("a setup task panicked")??);
    }
    Ok(out)
}

/// Creates `n` sessions.
async fn xems_sessions(store: &RedisStore, value: &Arc<Vec<u8>>, n: usize) -> anyhow::Result<Vec<Token>> {
    in_setup_tasks(|t| {
        let (store, value) = (store.clone(), value.clone());
        let count = n / SETUP_TASKS + usize::from(t < n % SETUP_TASKS);
        async move {
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(store.create("bench", &value, CreateOptions::new().with_ttl(TTL)).await?.token);
            }
            anyhow::Ok(items)
        }
    })
    .await
}

/// Creates `n` plain keys holding `value`.
async fn raw_keys(store: &RedisStore, value: &Arc<Vec<u8>>, n: usize) -> anyhow::Result<Vec<String>> {
    let ttl_ms = TTL.as_millis() as u64;
    // A fresh key space per population (a random tag), so they never collide.
    let mut tag = [0u8; 6];
    xems_core::random_bytes(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    in_setup_tasks(|t| {
        let (store, value, tag) = (store.clone(), value.clone(), tag.clone());
        async move {
            let mut items = Vec::new();
            for i in (t..n).step_by(SETUP_TASKS) {
                let key = format!("raw:{tag}:{i}:0");
                store.raw_command(::redis::cmd("SET").arg(&key).arg(value.as_slice()).arg("PX").arg(ttl_ms)).await?;
                items.push(key);
            }
            anyhow::Ok(items)
        }
    })
    .await
}

/// Shares `items` out among `workers` workers.
fn split<T>(mut items: Vec<T>, workers: usize) -> Shared<T> {
    let per = items.len() / workers;
    let mut out = Vec::with_capacity(workers);
    for w in (0..workers).rev() {
        let chunk = items.split_off(w * per);
        out.push(Mutex::new(Population { items: chunk, next: 0 }));
    }
    out.reverse();
    Arc::new(out)
}

/// Gathers the populations back (after the rounds).
fn join<T>(shared: Shared<T>) -> Vec<T> {
    let mut out = Vec::new();
    for p in shared.iter() {
        out.append(&mut p.lock().expect("population lock").items);
    }
    out
}

/// xems: resolve with rotation, over worker `w`'s sessions in turn.
async fn xems_worker(
    store: RedisStore,
    shared: Shared<Token>,
    w: usize,
    dur: Duration,
) -> anyhow::Result<WorkerOutcome> {
    let mut pop = take(&shared, w);
    let opts = ResolveOptions::rotating().with_grace(GRACE).with_refresh(Refresh::Idle);
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    let n = pop.items.len();
    while start.elapsed() < dur {
        let i = pop.next;
        pop.next = (i + 1) % n;
        let t0 = Instant::now();
        let r = store.resolve("bench", pop.items[i].expose(), opts).await?.context("a live session missed")?;
        pop.items[i] = r.token.context("a rotating resolve returned no successor")?;
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        ops += 1;
    }
    put(&shared, w, pop);
    Ok(WorkerOutcome { ops, hist })
}

/// Raw: GET old, SET new PX ttl, PEXPIRE old grace, over worker `w`'s keys
/// in turn, on the store's connection.
async fn raw_worker(
    store: RedisStore,
    shared: Shared<String>,
    w: usize,
    dur: Duration,
) -> anyhow::Result<WorkerOutcome> {
    let mut pop = take(&shared, w);
    let ttl_ms = TTL.as_millis() as u64;
    let grace_ms = GRACE.as_millis() as u64;
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    let n = pop.items.len();
    while start.elapsed() < dur {
        let i = pop.next;
        pop.next = (i + 1) % n;
        let t0 = Instant::now();
        let old = &pop.items[i];
        let v = store.raw_command(::redis::cmd("GET").arg(old)).await?;
        let v: Vec<u8> = ::redis::from_redis_value(v).context("GET of a live key")?;
        // The successor's name: the old one with the next generation
        // after the last ':' (so a name is never used twice).
        let (stem, generation) = old.rsplit_once(':').context("a raw key name ends in its generation")?;
        let generation: u64 = generation.parse().context("a raw key's generation")?;
        let next = format!("{stem}:{}", generation + 1);
        store.raw_command(::redis::cmd("SET").arg(&next).arg(v).arg("PX").arg(ttl_ms)).await?;
        store.raw_command(::redis::cmd("PEXPIRE").arg(old).arg(grace_ms)).await?;
        pop.items[i] = next;
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        ops += 1;
    }
    put(&shared, w, pop);
    Ok(WorkerOutcome { ops, hist })
}

/// The server's time per command since the last reset, from `INFO
/// commandstats`: (command, calls, microseconds).
async fn commandstats(store: &RedisStore) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let info = store.raw_command(::redis::cmd("INFO").arg("commandstats")).await?;
    let info: String = ::redis::from_redis_value(info)?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else { continue };
        let Some((name, fields)) = rest.split_once(':') else { continue };
        let field = |k: &str| fields.split(',').find_map(|f| f.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok());
        if let (Some(calls), Some(us)) = (field("calls="), field("usec=")) {
            out.push((name.to_owned(), calls, us));
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
    let pid = server.pid();
    let store = RedisStore::builder(&format!("redis://{}", server.addr()))
        .secret(MasterSecret::generate())
        .sweep_interval(None)
        .audit_log(false)
        .connect()
        .await
        .context("connecting the Redis store")?;
    let value = Arc::new(session_value());

    // Warm up: scripts loaded, connection established, allocator grown.
    {
        let x = split(xems_sessions(&store, &value, 64).await?, 2);
        let r = split(raw_keys(&store, &value, 64).await?, 2);
        let d = Duration::from_millis(200);
        round(&store, pid, "warm-up", 2, d, |w, d| xems_worker(store.clone(), x.clone(), w, d)).await?;
        round(&store, pid, "warm-up", 2, d, |w, d| raw_worker(store.clone(), r.clone(), w, d)).await?;
    }

    println!(
        "\n{VALUE_LEN}-byte values, grace {} ms, {rounds} round(s) of {} ms per side and case, alternating",
        GRACE.as_millis(),
        dur.as_millis()
    );
    let mut ratios = Map::new();
    let mut figures = Map::new();
    let mut stats = Map::new();
    let mut cost_lines = Vec::new();
    for wl in WORKLOADS {
        let mut rows = Vec::new();
        // A population shared by every worker count is made once.
        let (mut x_all, mut r_all) = match wl.sessions {
            Sessions::Total(n) => (xems_sessions(&store, &value, n).await?, raw_keys(&store, &value, n).await?),
            Sessions::PerWorker(_) => (Vec::new(), Vec::new()),
        };
        for workers in WORKERS {
            let (xs, rs) = match wl.sessions {
                Sessions::Total(_) => {
                    (split(std::mem::take(&mut x_all), workers), split(std::mem::take(&mut r_all), workers))
                }
                Sessions::PerWorker(n) => (
                    split(xems_sessions(&store, &value, n * workers).await?, workers),
                    split(raw_keys(&store, &value, n * workers).await?, workers),
                ),
            };
            let (mut best_x, mut best_r): (Option<Measurement>, Option<Measurement>) = (None, None);
            let (mut sum_x, mut sum_r) = (0.0, 0.0);
            let (mut cost_x, mut cost_r) = (ServerCost::default(), ServerCost::default());
            for _ in 0..rounds {
                let name = format!("xems resolve+rotate w{workers}");
                let (x, cx) =
                    round(&store, pid, &name, workers, dur, |w, d| xems_worker(store.clone(), xs.clone(), w, d))
                        .await?;
                let name = format!("raw GET+SET+PEXPIRE w{workers}");
                let (r, cr) =
                    round(&store, pid, &name, workers, dur, |w, d| raw_worker(store.clone(), rs.clone(), w, d)).await?;
                sum_x += x.ops_per_s;
                sum_r += r.ops_per_s;
                cost_x.add(&cx);
                cost_r.add(&cr);
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
            let sfx = format!("{}_w{workers}", wl.suffix);
            figures.insert(format!("xems_rotations_per_s{sfx}"), json!(x.round()));
            figures.insert(format!("raw_rotations_per_s{sfx}"), json!(r.round()));
            figures.insert(format!("xems_p99_us{sfx}"), json!(round3(bx.latency.p99_ns as f64 / 1e3)));
            figures.insert(format!("raw_p99_us{sfx}"), json!(round3(br.latency.p99_ns as f64 / 1e3)));
            let (cpu_x, cpu_r) = (cost_x.cpu_us_per_rotation(), cost_r.cpu_us_per_rotation());
            let (cmd_x, cmd_r) =
                (cost_x.us_per_rotation(&["evalsha"]), cost_r.us_per_rotation(&["get", "set", "pexpire"]));
            figures.insert(format!("server_cpu_us_per_xems_rotation{sfx}"), json!(round3(cpu_x)));
            figures.insert(format!("server_cpu_us_per_raw_rotation{sfx}"), json!(round3(cpu_r)));
            figures.insert(format!("server_us_per_xems_rotation{sfx}"), json!(round3(cmd_x)));
            figures.insert(format!("server_us_per_raw_rotation{sfx}"), json!(round3(cmd_r)));
            let (cl_x, cl_r) = (cost_x.client_cpu_us_per_rotation(), cost_r.client_cpu_us_per_rotation());
            figures.insert(format!("client_cpu_us_per_xems_rotation{sfx}"), json!(round3(cl_x)));
            figures.insert(format!("client_cpu_us_per_raw_rotation{sfx}"), json!(round3(cl_r)));
            stats.insert(format!("xems{sfx}"), cost_x.json());
            stats.insert(format!("raw{sfx}"), cost_r.json());
            cost_lines.push(format!(
                "  {:<14} w{workers:<3} xems {cpu_x:>6.2} us (EVALSHA {cmd_x:>5.2}), client {cl_x:>6.2} us | \
                 raw {cpu_r:>6.2} us (GET+SET+PEXPIRE {cmd_r:>5.2}), client {cl_r:>6.2} us",
                wl.label
            ));
            cost_lines.push(format!("      xems commands: {}", per_call(&cost_x)));
            let rt = ratio(Some(x), Some(r));
            ratios.insert(format!("rotate_vs_raw_roundtrip{sfx}"), json!(rt));
            // Rotations per second of Redis CPU: the figure that decides
            // throughput once Redis's thread is the bottleneck, and the one
            // least moved by other load on the machine.
            ratios.insert(format!("rotate_vs_raw_server_cpu{sfx}"), json!(ratio(Some(cpu_r), Some(cpu_x))));
            if workers == WORKERS[0] {
                ratios.insert(format!("rotate_vs_raw_roundtrip{}", wl.suffix), json!(rt));
            }
            rows.push(bx);
            rows.push(br);
            if let Sessions::Total(_) = wl.sessions {
                x_all = join(xs);
                r_all = join(rs);
            }
        }
        let population = match wl.sessions {
            Sessions::Total(n) => format!("{n} sessions shared out among the workers"),
            Sessions::PerWorker(n) => format!("{n} sessions per worker"),
        };
        print_table(
            &format!(
                "{}: {population}, resolve+rotate through xems-redis vs a hand-written rotation (best round shown)",
                wl.label
            ),
            &rows,
        );
    }

    println!(
        "\nCPU per rotation (all rounds of each side): redis-server (with INFO commandstats' time in its commands), \
         and this process (the client)"
    );
    for l in &cost_lines {
        println!("{l}");
    }
    print_ratios(&ratios);
    report.set("workers", WORKERS);
    if let Sessions::Total(n) = WORKLOADS[0].sessions {
        report.set("sessions", n);
    }
    if let Sessions::PerWorker(n) = WORKLOADS[1].sessions {
        report.set("sessions_per_worker_hot", n);
    }
    report.set("value_bytes", VALUE_LEN);
    report.set("grace_ms", GRACE.as_millis() as u64);
    for (k, v) in figures {
        report.set(&k, v);
    }
    report.set("server_commandstats", Value::Object(stats));
    report.set("target_rotate_vs_raw_roundtrip", 1.0);
    report.set_ratios(&ratios);
    Ok(())
}

/// `name calls x us/call` of every command of a side, most time first.
fn per_call(cost: &ServerCost) -> String {
    let mut c = cost.commands.clone();
    c.sort_by_key(|x| std::cmp::Reverse(x.2));
    let per = |calls: u64, us: u64| if calls == 0 { 0.0 } else { us as f64 / calls as f64 };
    let rot = cost.rotations.max(1) as f64;
    c.iter()
        .map(|(n, calls, us)| format!("{n} {:.2}x{:.2}", *calls as f64 / rot, per(*calls, *us)))
        .collect::<Vec<_>>()
        .join(", ")
}
