//! `server`: `xems serve` against `redis-server` over loopback, driven by the
//! same load generator: 50 connections, pipeline depth 1 and 16, 256-byte
//! values, for set, get and rotate.
//!
//! On Redis, rotate is a Lua script (loaded once, called with `EVALSHA`):
//! read the value, write it under a new key with the TTL, shorten the old
//! key's TTL to the grace period. Each connection rotates its own chain of
//! keys, always presenting the current one.
//!
//! The Redis figures are checked against `redis-benchmark -c 50 -d 256 -P D
//! -t set,get` on the same server, reported beside them.
//!
//! Full mode runs every case three times, the two servers taking turns
//! operation by operation (Redis's set then xems's, or the other way round,
//! alternating), per depth, per round; each ratio is the median of the
//! three rounds' ratios and each table row the median round, so a slow
//! stretch of a shared host does not decide a ratio.
//!
//! The xems side is `xems_case` (search for `XEMS SERVE`); it needs the
//! `xems` binary built in the same target directory
//! (`cargo build --release -p xems-server`) or `XEMS_BIN`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{VALUE_LEN, session_value};
use crate::loadgen::{self, LoadOutcome, LoadSpec, Target, mix};
use crate::measure::Measurement;
use crate::report::{self, Report};
use crate::resp::{self, Reply};
use crate::services::{Persistence, Placement, RedisServer, XemsServer, require_program};

/// Connections of every case.
pub const CONNECTIONS: usize = 50;

/// Keys preloaded for set and get.
pub const KEYSPACE: u64 = 100_000;

/// TTL of a rotated session, milliseconds (15 minutes, the xems default).
pub const TTL_MS: u64 = 900_000;

/// Grace period of a rotated-away key, milliseconds (the xems default).
pub const GRACE_MS: u64 = 1_000;

/// The rotate script: `KEYS[1]` old key, `KEYS[2]` new key, `ARGV[1]` TTL ms,
/// `ARGV[2]` grace ms. Returns 1, or 0 when the old key is gone.
pub const ROTATE_LUA: &str = "local v = redis.call('GET', KEYS[1]) \
if not v then return 0 end \
redis.call('SET', KEYS[2], v, 'PX', ARGV[1]) \
redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
return 1";

/// One row of `redis-benchmark`'s CSV output.
#[derive(Clone, Debug, Serialize)]
pub struct RedisBenchmarkRow {
    /// `SET` or `GET`.
    pub test: String,
    /// Pipeline depth.
    pub depth: usize,
    /// `-r` (random keys over this many), or `None` for redis-benchmark's
    /// default single key.
    pub random_keys: Option<u64>,
    /// Requests per second.
    pub ops_per_s: f64,
    /// p99 latency, milliseconds.
    pub p99_ms: f64,
    /// The exact command.
    pub command: String,
}

/// Rounds of every case in full mode. The host is shared and its speed
/// drifts by 10% within minutes; the servers take turns case by case, round
/// by round, and each ratio is the median of its rounds' ratios, so a slow
/// minute weighs on both sides or on one round only.
const ROUNDS: usize = 3;

fn spec(name: &str, quick: bool, depth: usize, lines_per_response: usize, server_pid: u32) -> LoadSpec {
    let (warmup, duration) = if quick {
        (Duration::from_millis(200), Duration::from_millis(800))
    } else {
        (Duration::from_secs(2), Duration::from_secs(4))
    };
    LoadSpec {
        name: name.to_owned(),
        connections: CONNECTIONS,
        depth,
        pipelining: loadgen::Pipelining::Burst,
        warmup,
        duration,
        // Redis uses one core; the generator gets the other.
        threads: std::env::var("XEMS_BENCH_GEN_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1),
        lines_per_response,
        handshake: None,
        first_line_max: loadgen::FIRST_LINE_MAX,
        server_pid: Some(server_pid),
    }
}

/// `key:<n>` in a stack buffer (request closures run millions of times a
/// second: no allocation).
fn key(n: u64, buf: &mut [u8; 32]) -> &[u8] {
    buf[..4].copy_from_slice(b"key:");
    let len = 4 + resp::write_decimal(&mut buf[4..], n).expect("a u64 fits in 28 bytes");
    &buf[..len]
}

/// The first line of a successful GET of a preloaded key.
const GET_HIT: &[u8] = b"$256";
const _: () = assert!(VALUE_LEN == 256, "GET_HIT spells the value length");

/// The operations measured on both servers, in the order their cases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Get,
    Rotate,
}

impl Op {
    const ALL: [Op; 3] = [Op::Set, Op::Get, Op::Rotate];

    fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
            Op::Rotate => "rotate",
        }
    }
}

/// Redis's case of `op` at depth `depth`, in round `round` (its rotation
/// chains are its own).
fn redis_case(
    server: &RedisServer,
    sha: &str,
    quick: bool,
    (depth, round): (usize, usize),
    value: &Arc<Vec<u8>>,
    op: Op,
) -> anyhow::Result<LoadOutcome> {
    let target = Target::Tcp(server.addr());
    // A GET's reply is two lines: `$256`, then the value.
    let lines_per_reply = if op == Op::Get { 2 } else { 1 };
    let spec = spec(&format!("redis {} p{depth}", op.name()), quick, depth, lines_per_reply, server.pid());
    match op {
        Op::Set => {
            let v = value.clone();
            loadgen::run(
                &target,
                &spec,
                Arc::new(move |conn, seq, buf: &mut Vec<u8>| {
                    let mut k = [0u8; 32];
                    resp::encode(&[b"SET", key(mix(conn, seq) % KEYSPACE, &mut k), &v], buf);
                }),
                |l| l == b"+OK",
            )
        }
        Op::Get => loadgen::run(
            &target,
            &spec,
            Arc::new(|conn, seq, buf: &mut Vec<u8>| {
                let mut k = [0u8; 32];
                resp::encode(&[b"GET", key(mix(conn, seq) % KEYSPACE, &mut k)], buf);
            }),
            |l| l == GET_HIT,
        ),
        Op::Rotate => redis_rotate(server, sha, &target, &spec, (depth, round), value),
    }
}

/// Redis's rotate case: the Lua script over each connection's chain of
/// keys, then the wait until Redis has reclaimed the keys it left to expire.
fn redis_rotate(
    server: &RedisServer,
    sha: &str,
    target: &Target,
    spec: &LoadSpec,
    chain: (usize, usize),
    value: &[u8],
) -> anyhow::Result<LoadOutcome> {
    // Rotation chains: connection c of this case rotates {r<depth>.<round>:c}:i
    // into {r<depth>.<round>:c}:i+1; the hash tag keeps a chain in one slot (Cluster-safe).
    let mut setup = server.connect()?;
    let mut batch = Vec::new();
    for c in 0..CONNECTIONS {
        let mut k = [0u8; 48];
        resp::encode(
            &[b"SET", chain_key(chain, c, 0, &mut k), value, b"PX", TTL_MS.to_string().as_bytes()],
            &mut batch,
        );
    }
    setup.pipeline(&batch, CONNECTIONS)?;
    // Keys with a TTL now: the heads of every chain so far (this case's
    // included), which outlive the case.
    let heads = expiring_keys(&mut setup)?;
    let sha = sha.to_owned();
    let out = loadgen::run(
        target,
        spec,
        Arc::new(move |conn, seq, buf: &mut Vec<u8>| {
            let (mut old, mut new) = ([0u8; 48], [0u8; 48]);
            let (mut ttl, mut grace) = ([0u8; 20], [0u8; 20]);
            let ttl_len = resp::write_decimal(&mut ttl, TTL_MS).expect("fits");
            let grace_len = resp::write_decimal(&mut grace, GRACE_MS).expect("fits");
            resp::encode(
                &[
                    b"EVALSHA",
                    sha.as_bytes(),
                    b"2",
                    chain_key(chain, conn, seq, &mut old),
                    chain_key(chain, conn, seq + 1, &mut new),
                    &ttl[..ttl_len],
                    &grace[..grace_len],
                ],
                buf,
            );
        }),
        |l| l == b":1",
    )?;
    // Every rotation left its old key to expire a second later: up to a
    // million keys Redis reclaims in the background. That work is the
    // rotate case's, so it is waited out here; otherwise it landed in the
    // next Redis cases (Redis is stopped while xems runs, and resumed with
    // the backlog), and made Redis's set and get look 10-20% slower.
    drain_expired(&mut setup, heads)?;
    Ok(out)
}

/// How many keys of Redis's database 0 have a TTL (`INFO keyspace`).
fn expiring_keys(conn: &mut resp::Conn) -> anyhow::Result<usize> {
    let info = conn.cmd_ok(&[b"INFO", b"keyspace"])?.as_text().unwrap_or_default();
    expires_in(&info).with_context(|| format!("no expires count in INFO keyspace: {info:?}"))
}

/// The `expires=` count of `db0` in an `INFO keyspace` reply; 0 when there
/// is no `db0` line (no keys at all).
fn expires_in(info: &str) -> Option<usize> {
    let Some(db0) = info.lines().find_map(|l| l.strip_prefix("db0:")) else {
        return Some(0);
    };
    db0.split(',').find_map(|f| f.strip_prefix("expires=")).and_then(|n| n.trim().parse().ok())
}

/// Waits until Redis holds no more keys with a TTL than `heads` (the live
/// head of every rotation chain so far): every rotated-away key reclaimed.
fn drain_expired(conn: &mut resp::Conn, heads: usize) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut first = None;
    loop {
        let expires = expiring_keys(conn)?;
        let backlog = *first.get_or_insert(expires);
        if expires <= heads {
            println!(
                "  (redis reclaimed {} rotated-away keys in {:.1} s before the next case)",
                backlog.saturating_sub(heads),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("redis still holds {expires} keys with a TTL after 120 s (expected {heads})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `{r<depth>.<round>:<conn>}:<seq>`: connection `conn`'s rotation chain
/// in the depth-`depth` case of round `round` (named as the xems side's
/// `rot<depth>.<round>:...`); the hash tag keeps a chain in one slot.
fn chain_key((depth, round): (usize, usize), conn: usize, seq: u64, buf: &mut [u8; 48]) -> &[u8] {
    let mut len = 0;
    for (text, number) in [(&b"{r"[..], depth as u64), (b".", round as u64), (b":", conn as u64), (b"}:", seq)] {
        buf[len..len + text.len()].copy_from_slice(text);
        len += text.len();
        len += resp::write_decimal(&mut buf[len..], number).expect("fits");
    }
    &buf[..len]
}

/// Runs `redis-benchmark -c 50 -d 256 -P depth -t set,get` against the
/// server; with `keyspace`, also `-r keyspace` (random keys, as our load
/// generator uses, instead of one hot key).
fn redis_benchmark(
    server: &RedisServer,
    depth: usize,
    quick: bool,
    keyspace: Option<u64>,
) -> anyhow::Result<Vec<RedisBenchmarkRow>> {
    let bin = require_program("redis-benchmark", "redis-tools")?;
    // About 5 s per test in full mode at the rates this machine reaches.
    let n: u64 = match (quick, depth) {
        (true, 1) => 50_000,
        (true, _) => 300_000,
        (false, 1) => 500_000,
        (false, _) => 5_000_000,
    };
    let mut args = vec![
        "-h".to_owned(),
        "127.0.0.1".into(),
        "-p".into(),
        server.port().to_string(),
        "-c".into(),
        CONNECTIONS.to_string(),
        "-d".into(),
        VALUE_LEN.to_string(),
        "-P".into(),
        depth.to_string(),
        "-t".into(),
        "set,get".into(),
        "-n".into(),
        n.to_string(),
        "--csv".into(),
    ];
    if let Some(r) = keyspace {
        args.extend(["-r".to_owned(), r.to_string()]);
    }
    let command = format!("redis-benchmark {}", args.join(" "));
    let out = Command::new(bin).args(&args).output().context("running redis-benchmark")?;
    if !out.status.success() {
        bail!("{command} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = split_csv(lines.next().context("redis-benchmark printed nothing")?);
    let col =
        |name: &str| header.iter().position(|h| h == name).with_context(|| format!("no {name:?} column in {header:?}"));
    let (rps, p99) = (col("rps")?, col("p99_latency_ms")?);
    let mut rows = Vec::new();
    for l in lines {
        let f = split_csv(l);
        rows.push(RedisBenchmarkRow {
            test: f[0].clone(),
            depth,
            random_keys: keyspace,
            ops_per_s: f.get(rps).and_then(|x| x.parse().ok()).context("bad rps")?,
            p99_ms: f.get(p99).and_then(|x| x.parse().ok()).context("bad p99")?,
            command: command.clone(),
        });
    }
    Ok(rows)
}

fn split_csv(line: &str) -> Vec<String> {
    line.split(',').map(|f| f.trim().trim_matches('"').to_owned()).collect()
}

// ---------------------------------------------------------------------------
// XEMS SERVE: the xems side.
//
// `xems serve` on a free port, driven by the same load generator with JSON
// lines and an `auth` handshake: `set` and `get` of caller keys
// (`key:<n>`, as on Redis), and rotate = `get` with `"rotate":true` and a
// 1000 ms grace. Rotation needs the token the server minted, so each
// connection holds `depth` sessions and a conversation that reads
// `new_token` from each answer; at depth D the D requests of a burst rotate
// D different sessions.
// ---------------------------------------------------------------------------

/// The sandbox of the xems cases.
const XEMS_SANDBOX: &str = "bench";

fn xems_line(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
    out.push(b'\n');
}

/// Appends a `set` line of `key` to `value_json` (a JSON string, quotes
/// included) in the bench's sandbox.
fn xems_set(out: &mut Vec<u8>, key: &[u8], value_json: &str) {
    xems_line(
        out,
        &[
            br#"{"action":"set","sandbox":""#,
            XEMS_SANDBOX.as_bytes(),
            br#"","key":""#,
            key,
            br#"","value":"#,
            value_json.as_bytes(),
            b"}",
        ],
    );
}

/// Appends a `get` line of `key` in the bench's sandbox.
fn xems_get(out: &mut Vec<u8>, key: &[u8]) {
    xems_line(out, &[br#"{"action":"get","sandbox":""#, XEMS_SANDBOX.as_bytes(), br#"","key":""#, key, br#""}"#]);
}

/// Keys the stdio cases cycle through.
const STDIO_KEYS: u64 = 1_000;

/// The stdio sidecar as XyPriss runs it (`xems` with no subcommand, spoken
/// to over its stdin and stdout) driven by one pipelining client: requests
/// alternate `set` and `get` of the same key, so every `get` reads what the
/// pipeline wrote just before it. The sidecar starts empty for each case.
fn stdio_cases(quick: bool, placement: Option<&Placement>) -> anyhow::Result<Vec<LoadOutcome>> {
    let xems = crate::services::xems_binary()?;
    let (program, args) = match placement {
        Some(p) => ("taskset".into(), vec!["-c".to_owned(), p.server_cpus.clone(), xems.display().to_string()]),
        None => (xems, Vec::new()),
    };
    let value_json = serde_json::to_string(std::str::from_utf8(&session_value())?)?;
    let mut out = Vec::new();
    for depth in [1, 16, 64] {
        let mut spec = spec(&format!("stdio set+get p{depth}"), quick, depth, 1, 0);
        spec.connections = 1;
        spec.server_pid = None;
        let v = value_json.clone();
        out.push(loadgen::run(
            &Target::Child { program: program.clone(), args: args.clone() },
            &spec,
            Arc::new(move |_, seq, buf: &mut Vec<u8>| {
                let mut k = [0u8; 32];
                let k = key((seq / 2) % STDIO_KEYS, &mut k);
                if seq % 2 == 0 {
                    xems_set(buf, k, &v);
                } else {
                    xems_get(buf, k);
                }
            }),
            |l| l == br#"{"status":"ok"}"# || l.starts_with(br#"{"status":"ok","data":"{"#),
        )?);
    }
    Ok(out)
}

/// Rotates `depth` sessions of one connection, always with their current
/// token.
struct XemsRotation {
    tokens: Vec<String>,
    answered: u64,
}

impl loadgen::Conversation for XemsRotation {
    fn request(&mut self, seq: u64, out: &mut Vec<u8>) {
        let t = &self.tokens[(seq % self.tokens.len() as u64) as usize];
        xems_line(
            out,
            &[
                br#"{"action":"get","sandbox":""#,
                XEMS_SANDBOX.as_bytes(),
                br#"","key":""#,
                t.as_bytes(),
                br#"","rotate":true,"grace_period":1000}"#,
            ],
        );
    }

    fn response(&mut self, line: &[u8]) -> bool {
        const FIELD: &[u8] = br#""new_token":""#;
        let slot = (self.answered % self.tokens.len() as u64) as usize;
        self.answered += 1;
        let Some(at) = memchr::memmem::find(line, FIELD) else { return false };
        let rest = &line[at + FIELD.len()..];
        let Some(end) = memchr::memchr(b'"', rest) else { return false };
        match std::str::from_utf8(&rest[..end]) {
            Ok(t) if line.starts_with(br#"{"status":"ok""#) => {
                self.tokens[slot] = t.to_owned();
                true
            }
            _ => false,
        }
    }
}

/// XEMS SERVE: the xems case of `op` at depth `depth`, in round `round` (its
/// rotating sessions are its own).
fn xems_case(
    server: &XemsServer,
    quick: bool,
    (depth, round): (usize, usize),
    value: &[u8],
    op: Op,
) -> anyhow::Result<LoadOutcome> {
    let target = Target::Tcp(server.addr());
    let value_json = serde_json::to_string(std::str::from_utf8(value)?)?;
    let mut spec = spec(&format!("xems {} p{depth}", op.name()), quick, depth, 1, server.pid());
    spec.handshake = Some((server.auth_line(), 1));
    match op {
        Op::Set => loadgen::run(
            &target,
            &spec,
            Arc::new(move |conn, seq, buf: &mut Vec<u8>| {
                let mut k = [0u8; 32];
                xems_set(buf, key(mix(conn, seq) % KEYSPACE, &mut k), &value_json);
            }),
            |l| l == br#"{"status":"ok"}"#,
        ),
        Op::Get => loadgen::run(
            &target,
            &spec,
            Arc::new(|conn, seq, buf: &mut Vec<u8>| {
                let mut k = [0u8; 32];
                xems_get(buf, key(mix(conn, seq) % KEYSPACE, &mut k));
            }),
            |l| l.starts_with(br#"{"status":"ok","data":"#),
        ),
        Op::Rotate => xems_rotate(server, &target, spec, (depth, round), &value_json),
    }
}

/// The xems rotate case (`spec` with its handshake): `depth` sessions per
/// connection, each rotated with its current token.
fn xems_rotate(
    server: &XemsServer,
    target: &Target,
    mut spec: LoadSpec,
    (depth, round): (usize, usize),
    value_json: &str,
) -> anyhow::Result<LoadOutcome> {
    // depth sessions per connection, created as caller keys.
    let mut setup = server.connect()?;
    let mut chains: Vec<Vec<String>> = Vec::with_capacity(CONNECTIONS);
    for c in 0..CONNECTIONS {
        let keys: Vec<String> = (0..depth).map(|i| format!("rot{depth}.{round}:{c}:{i}")).collect();
        let lines: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                let mut l = Vec::new();
                xems_set(&mut l, k.as_bytes(), value_json);
                l.pop();
                l
            })
            .collect();
        for a in setup.exchange(&lines)? {
            anyhow::ensure!(a == r#"{"status":"ok"}"#, "xems serve answered {a} to a preload set");
        }
        chains.push(keys);
    }
    let chains = Arc::new(parking_lot::Mutex::new(chains));
    spec.first_line_max = 4096;
    loadgen::run_conversations(
        target,
        &spec,
        Arc::new(move |conn| {
            let tokens = std::mem::take(&mut chains.lock()[conn]);
            Box::new(XemsRotation { tokens, answered: 0 }) as Box<dyn loadgen::Conversation>
        }),
    )
}

/// A process stopped (`SIGSTOP`) until this is dropped (`SIGCONT`).
struct Paused(rustix::process::Pid);

impl Paused {
    fn new(pid: u32) -> anyhow::Result<Self> {
        let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).context("a valid process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).context("stopping a server")?;
        Ok(Paused(pid))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // Best effort: if this fails the process is gone and the next case
        // reports it.
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::CONT);
    }
}

/// Runs the server bench and fills its report.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    // Each server gets the same single core (Redis serves from one thread;
    // xems serve runs one worker thread), the load generator and
    // redis-benchmark the others: started from this thread, they inherit
    // its affinity.
    let placement = Placement::split();
    match &placement {
        Some(p) => {
            p.pin_generator()?;
            println!("placement: servers on CPU {}, load generator on CPUs {:?}", p.server_cpus, p.generator_cpus);
        }
        None => println!("placement: none (one CPU, or no taskset): servers and generator share the CPUs"),
    }
    let server = match &placement {
        Some(p) => RedisServer::start_on(Persistence::Off, p)?,
        None => RedisServer::start(Persistence::Off)?,
    };
    let value = Arc::new(session_value());
    let mut setup = server.connect()?;
    let version = setup.cmd_ok(&[b"INFO", b"server"])?.as_text().unwrap_or_default();
    let version = version.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    println!("redis-server {version} on port {} (persistence off)", server.port());
    for chunk_start in (0..KEYSPACE).step_by(1000) {
        let mut batch = Vec::new();
        let end = (chunk_start + 1000).min(KEYSPACE);
        for n in chunk_start..end {
            let mut k = [0u8; 32];
            resp::encode(&[b"SET", key(n, &mut k), &value], &mut batch);
        }
        setup.pipeline(&batch, (end - chunk_start) as usize)?;
    }
    let sha = match setup.cmd_ok(&[b"SCRIPT", b"LOAD", ROTATE_LUA.as_bytes()])? {
        Reply::Bulk(Some(s)) => String::from_utf8(s)?,
        other => bail!("SCRIPT LOAD answered {other:?}"),
    };

    let xems = XemsServer::start_with(if placement.is_some() { &["--threads", "1"] } else { &[] }, placement.as_ref())?;
    println!("xems serve on port {} (in-memory engine, TCP with auth)", xems.port());
    let mut setup = xems.connect()?;
    let value_json = serde_json::to_string(std::str::from_utf8(&value)?)?;
    for chunk_start in (0..KEYSPACE).step_by(1000) {
        let lines: Vec<Vec<u8>> = (chunk_start..(chunk_start + 1000).min(KEYSPACE))
            .map(|n| {
                let (mut k, mut line) = ([0u8; 32], Vec::new());
                xems_set(&mut line, key(n, &mut k), &value_json);
                line.pop();
                line
            })
            .collect();
        for a in setup.exchange(&lines)? {
            anyhow::ensure!(a == r#"{"status":"ok"}"#, "xems serve answered {a} to a preload set");
        }
    }
    drop(setup);

    let rounds = if quick { 1 } else { ROUNDS };
    let mut by_round: Vec<Vec<LoadOutcome>> = Vec::new();
    for round in 0..rounds {
        let mut loads = Vec::new();
        for depth in [1, 16] {
            // Each server is measured alone: the other is stopped meanwhile,
            // since both are pinned to the same core and an idle Redis still
            // wakes up several times per 100 ms (its cron, jemalloc's purging
            // thread) and preempted the xems cases (seen with `perf sched`).
            // A failed case shows the end of its server's log (kept in a
            // temporary directory that goes with the server: a server that
            // died mid-run left nothing to read afterwards).
            let redis_op = |op| {
                let _paused = Paused::new(xems.pid())?;
                redis_case(&server, &sha, quick, (depth, round), &value, op)
                    .with_context(|| format!("redis-server: {}", server.diagnostics()))
            };
            let xems_op = |op| {
                let _paused = Paused::new(server.pid())?;
                xems_case(&xems, quick, (depth, round), &value, op)
                    .with_context(|| format!("xems serve: {}", xems.diagnostics()))
            };
            // Each operation's two cases run back to back, so the two sides
            // of a ratio are measured seconds apart rather than a whole
            // server's cases apart (this host's speed drifts by ±10% over
            // tens of seconds); which server goes first alternates.
            let (mut redis_loads, mut xems_loads) = (Vec::new(), Vec::new());
            for (i, op) in Op::ALL.into_iter().enumerate() {
                if (round + i) % 2 == 0 {
                    redis_loads.push(redis_op(op)?);
                    xems_loads.push(xems_op(op)?);
                } else {
                    xems_loads.push(xems_op(op)?);
                    redis_loads.push(redis_op(op)?);
                }
            }
            // Every round lists its cases in the same order.
            loads.extend(redis_loads);
            loads.extend(xems_loads);
        }
        by_round.push(loads);
    }
    // Each case's row is its median round by throughput.
    let loads: Vec<LoadOutcome> = (0..by_round[0].len())
        .map(|i| {
            let mut runs: Vec<&LoadOutcome> = by_round.iter().map(|r| &r[i]).collect();
            runs.sort_by(|a, b| a.measurement.ops_per_s.total_cmp(&b.measurement.ops_per_s));
            runs[runs.len() / 2].clone()
        })
        .collect();
    let stdio = stdio_cases(quick, placement.as_ref())?;
    let rows: Vec<Measurement> = loads.iter().chain(&stdio).map(|l| l.measurement.clone()).collect();
    report::print_table(
        &format!("server: {CONNECTIONS} connections, {VALUE_LEN}-byte values (latency per request, write to response)"),
        &rows,
    );

    let mut bench_rows = Vec::new();
    for depth in [1, 16] {
        bench_rows.extend(redis_benchmark(&server, depth, quick, None)?);
        bench_rows.extend(redis_benchmark(&server, depth, quick, Some(KEYSPACE))?);
    }
    println!("\nredis-benchmark on the same server (cross-check of the load generator)");
    for r in &bench_rows {
        println!(
            "  {:<4} p{:<3} {:<11} {:>12}  p99 {:.3} ms   ({})",
            r.test,
            r.depth,
            if r.random_keys.is_some() { "random keys" } else { "one key" },
            report::fmt_rate(r.ops_per_s),
            r.p99_ms,
            r.command
        );
    }

    let ops = |name: &str| loads.iter().find(|l| l.measurement.name == name).map(|l| l.measurement.ops_per_s);
    let rb =
        |test: &str, depth: usize| bench_rows.iter().find(|r| r.test == test && r.depth == depth).map(|r| r.ops_per_s);
    let mut ratios = Map::new();
    let mut round_ratios = Map::new();
    // xems over Redis: the ratio of each round (the two servers measured
    // minutes apart at most), and their median.
    let mut put_rounds = |k: String, figure: &dyn Fn(&LoadOutcome) -> Option<f64>, x: &str, y: &str| {
        let find =
            |round: &[LoadOutcome], name: &str| round.iter().find(|l| l.measurement.name == name).and_then(figure);
        let per: Vec<f64> = by_round.iter().filter_map(|r| report::ratio(find(r, x), find(r, y))).collect();
        ratios.insert(k.clone(), report::median(&per).map_or(Value::Null, Value::from));
        round_ratios.insert(k, Value::from(per));
    };
    let throughput = |l: &LoadOutcome| Some(l.measurement.ops_per_s);
    // On the servers' own CPU time per operation, which a busy machine's
    // preemption does not distort (above 1: xems spends less CPU per
    // operation than Redis).
    let cpu = |l: &LoadOutcome| l.server_cpu_ns_per_op;
    for depth in [1, 16] {
        for op in ["set", "get", "rotate"] {
            let (x, y) = (format!("xems {op} p{depth}"), format!("redis {op} p{depth}"));
            put_rounds(format!("{op}_vs_redis_p{depth}"), &throughput, &x, &y);
            put_rounds(format!("{op}_cpu_vs_redis_p{depth}"), &cpu, &y, &x);
        }
    }
    for depth in [1, 16] {
        for op in ["set", "get"] {
            ratios.insert(
                format!("loadgen_vs_redis_benchmark_{op}_p{depth}"),
                report::ratio(ops(&format!("redis {op} p{depth}")), rb(&op.to_uppercase(), depth))
                    .map_or(Value::Null, Value::from),
            );
        }
    }
    println!("\nserver CPU per operation (all the server's threads, over the measured window)");
    for l in &loads {
        if let Some(ns) = l.server_cpu_ns_per_op {
            println!("  {:<28} {:>10.0} ns/op", l.measurement.name, ns);
        }
    }
    report::print_ratios(&ratios);
    if rounds > 1 {
        println!("\neach round's ratio (the ratios above are their medians)");
        for (k, v) in &round_ratios {
            println!("  {k:<44} {v}");
        }
    }

    let mut per_case = Map::new();
    for l in &loads {
        per_case.insert(
            l.measurement.name.replace(' ', "_"),
            serde_json::json!({
                "ops_per_s": report::round3(l.measurement.ops_per_s),
                "p99_ms": report::round3(l.p99_ms()),
                "server_cpu_ns_per_op": l.server_cpu_ns_per_op.map(report::round3),
            }),
        );
    }
    report.set("redis_version", version);
    report.set("connections", CONNECTIONS);
    report.set("placement", &placement);
    report.set("value_bytes", VALUE_LEN);
    report.set("xems_serve", loads.iter().any(|l| l.measurement.name.starts_with("xems")));
    report.set("figures", per_case);
    report.set_ratios(&ratios);
    report.set("rounds", rounds);
    report.set("round_ratios", round_ratios);
    report.set("redis_benchmark", &bench_rows);
    report.set("cases", &loads);
    let mut stdio_figures = Map::new();
    for l in &stdio {
        stdio_figures.insert(
            l.measurement.name.replace([' ', '+'], "_"),
            serde_json::json!({"ops_per_s": report::round3(l.measurement.ops_per_s), "p99_ms": report::round3(l.p99_ms())}),
        );
    }
    report.set("stdio_sidecar", stdio_figures);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_count_of_db0() {
        let info = "# Keyspace\r\ndb0:keys=100050,expires=50,avg_ttl=899000\r\ndb1:keys=1,expires=1,avg_ttl=5\r\n";
        assert_eq!(expires_in(info), Some(50));
        assert_eq!(expires_in("# Keyspace\r\n"), Some(0), "no keys at all");
        assert_eq!(expires_in("# Keyspace\r\ndb0:keys=3\r\n"), None, "a reply without the count");
    }

    #[test]
    fn chain_keys_name_depth_round_connection_and_step() {
        let mut buf = [0u8; 48];
        assert_eq!(chain_key((16, 2), 49, 123_456, &mut buf), b"{r16.2:49}:123456");
    }
}
