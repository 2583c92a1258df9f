//! `soak`: load and soak of the real `xems serve`.
//!
//! Full mode holds 10,000 TCP connections open for the whole run and drives
//! 25,000 virtual users over them for 60 s, paced at 1,000,000 rotations
//! (about 16.7 k/s; what the machine reaches is reported as it is). Every
//! user has its own server-minted session (`create_session`) and rotates it
//! with `resolve` + `"rotate":true` + a 1000 ms grace, always presenting the
//! token the previous answer returned. A user's step is one of:
//!
//! - **single** (75 %): one rotation on the user's home connection;
//! - **tabs** (15 %): 2 or 3 concurrent rotations of the *same* token on
//!   different connections, as browser tabs do: exactly one answer must say
//!   `rotated`, the others `grace`, and all must carry the same successor;
//! - **mixed** (10 %): a rotation, then concurrently the new token (rotated
//!   again) and, 0-250 ms later, the old one (within its grace: a `grace`
//!   answer carrying one of the two successors).
//!
//! Invariants, checked live:
//!
//! - **No failed resolution** of a token presented within its grace window.
//!   A refused request counts as failed when its answer arrived less than
//!   the grace period after the first request that presented its token was
//!   written: the rotation that retired the token happened after that write
//!   and the server handled the request before its answer arrived, so it was
//!   certainly within grace. A refusal that arrived later is reported as
//!   `late_refusals` (a request that queued past the window; the server was
//!   right to refuse it). Such a refusal revokes the session (reuse
//!   detection), so the other failures of that step are `collateral`, and
//!   the user's session is deleted and created again. Any `ok` answer with
//!   the wrong outcome, successor or value is a `wrong_answer`.
//! - **No token accepted after its grace window.** Dedicated probe users
//!   (their own sandbox, so regular users are never revoked) rotate, wait
//!   1.5-2 s after the rotation's answer arrived (the grace is 1 s; the
//!   0.5 s margin covers the server's millisecond clock against this
//!   process's monotonic one on the same machine), then replay the retired
//!   token: it must be refused, and the session's current token must then be
//!   refused too (reuse detection revoked the family). The probe user's
//!   session is then created again.
//! - **Memory flat.** The server's RSS (`/proc/PID/status` `VmRSS`) is
//!   sampled through the run. The warm point is the first sample after
//!   `warm_after` (10 s) at which every user has rotated at least
//!   [`WARM_ROTATIONS`] times: from then on every session holds its full
//!   bounded state (its retired tokens, 4 past grace plus those in grace,
//!   and the sealed current token) and the connections all exist, so the
//!   data the server must hold no longer grows. At the end, once the last
//!   grace windows have passed and the sweeper has run, `stats` must count
//!   exactly one live session per user and the RSS must be at most
//!   [`RSS_GROWTH_MAX`] times the warm RSS; the margin is for the allocator
//!   (glibc keeps freed memory in its arenas). A slow leak (some 50 bytes
//!   per rotation) could hide under it in a short run, so the bytes gained
//!   per rotation after the warm point and the RSS slope are reported too.
//! - Every connection still answers a `ping` at the end.
//!
//! `--quick` (CI smoke, about 15 s): 1,000 connections, 2,500 users, 8 s;
//! the same invariants, the run fails if any breaks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;

use crate::measure::new_histogram;
use crate::memory::rss_bytes_of;
use crate::report::{self, Report};
use crate::services::XemsServer;

/// The regular users' sandbox.
pub const SANDBOX: &str = "soak";

/// The probe users' sandbox (their sessions are revoked on purpose).
pub const PROBE_SANDBOX: &str = "soak-probe";

/// The grace period every rotation asks for, milliseconds.
pub const GRACE_MS: u64 = 1000;

/// How long after a rotation's answer a probe replays the retired token, at
/// least (plus up to [`PROBE_JITTER`]).
pub const PROBE_AFTER: Duration = Duration::from_millis(1500);

/// Random extra wait of a probe.
pub const PROBE_JITTER: Duration = Duration::from_millis(500);

/// Rotations every user must have had before the warm point.
pub const WARM_ROTATIONS: u32 = 6;

/// Largest accepted end RSS over warm RSS.
pub const RSS_GROWTH_MAX: f64 = 1.10;

/// The shape of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// TCP connections held open for the whole run.
    pub connections: usize,
    /// Regular virtual users.
    pub users: usize,
    /// Probe users (replay retired tokens after their grace).
    pub probe_users: usize,
    /// Rotations the run is paced at (spread evenly over `duration`).
    pub target_rotations: u64,
    /// The load's length.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Earliest warm point.
    #[serde(serialize_with = "secs")]
    pub warm_after: Duration,
    /// Concurrent user steps (bounds requests in flight to about twice this).
    pub drivers: usize,
    /// Worker threads of this generator's tokio runtime.
    pub generator_threads: usize,
    /// Interval between RSS samples.
    #[serde(serialize_with = "secs")]
    pub sample_every: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    /// The full run, or the quick smoke run.
    pub fn new(quick: bool) -> Self {
        let generator_threads = std::env::var("XEMS_BENCH_GEN_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        if quick {
            Plan {
                connections: 1_000,
                users: 2_500,
                probe_users: 20,
                target_rotations: 80_000,
                duration: Duration::from_secs(8),
                warm_after: Duration::from_secs(3),
                drivers: 512,
                generator_threads,
                sample_every: Duration::from_millis(250),
            }
        } else {
            Plan {
                connections: 10_000,
                users: 25_000,
                probe_users: 100,
                target_rotations: 1_000_000,
                duration: Duration::from_secs(60),
                warm_after: Duration::from_secs(10),
                drivers: 1024,
                generator_threads,
                sample_every: Duration::from_secs(1),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Connections: many callers share one connection; answers come back in
// request order, so a FIFO of waiting callers pairs them.
// ---------------------------------------------------------------------------

/// An answer line and when it was read.
struct Answer {
    line: Vec<u8>,
    at: Instant,
}

/// One open, authenticated connection.
struct Conn {
    index: usize,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Callers waiting for an answer, in the order their requests were
    /// written (pushed under the writer lock).
    waiting: parking_lot::Mutex<VecDeque<oneshot::Sender<Answer>>>,
    closed: AtomicBool,
}

impl Conn {
    /// Opens, authenticates, and starts the reader task.
    async fn open(index: usize, addr: std::net::SocketAddr, auth: &[u8]) -> anyhow::Result<Arc<Conn>> {
        let stream =
            tokio::net::TcpStream::connect(addr).await.with_context(|| format!("opening connection {index}"))?;
        stream.set_nodelay(true)?;
        let (r, mut w) = stream.into_split();
        let mut reader = BufReader::with_capacity(2048, r);
        w.write_all(auth).await?;
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).await?;
        if !line.starts_with(br#"{"status":"ok""#) {
            bail!("connection {index}: auth answered {:?}", String::from_utf8_lossy(&line).trim_end());
        }
        let conn = Arc::new(Conn {
            index,
            writer: tokio::sync::Mutex::new(w),
            waiting: parking_lot::Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
        });
        let c = conn.clone();
        tokio::spawn(async move {
            loop {
                let mut line = Vec::with_capacity(512);
                match reader.read_until(b'\n', &mut line).await {
                    Ok(n) if n > 0 => {
                        let at = Instant::now();
                        if let Some(tx) = c.waiting.lock().pop_front() {
                            let _ = tx.send(Answer { line, at });
                        }
                    }
                    _ => break,
                }
            }
            // Closed: fail every waiting caller (dropping their senders).
            c.closed.store(true, Relaxed);
            c.waiting.lock().clear();
        });
        Ok(conn)
    }

    /// Writes one request line (with its newline) and waits for its answer.
    /// Returns when the request was written (taken just before the write, so
    /// no earlier than the server could see it) and the answer.
    async fn call(&self, line: &[u8]) -> anyhow::Result<(Instant, Answer)> {
        let (tx, rx) = oneshot::channel();
        let sent = {
            let mut w = self.writer.lock().await;
            if self.closed.load(Relaxed) {
                bail!("the server closed connection {}", self.index);
            }
            let sent = Instant::now();
            self.waiting.lock().push_back(tx);
            w.write_all(line).await.with_context(|| format!("writing to connection {}", self.index))?;
            sent
        };
        let answer = rx.await.map_err(|_| anyhow::anyhow!("the server closed connection {}", self.index))?;
        Ok((sent, answer))
    }
}

// ---------------------------------------------------------------------------
// Requests and answers.
// ---------------------------------------------------------------------------

fn resolve_line(sandbox: &str, token: &str) -> Vec<u8> {
    let mut l = Vec::with_capacity(160);
    l.extend_from_slice(br#"{"action":"resolve","sandbox":""#);
    l.extend_from_slice(sandbox.as_bytes());
    l.extend_from_slice(br#"","key":""#);
    l.extend_from_slice(token.as_bytes());
    l.extend_from_slice(br#"","rotate":true,"grace_period":"#);
    l.extend_from_slice(GRACE_MS.to_string().as_bytes());
    l.extend_from_slice(b"}\n");
    l
}

fn create_line(sandbox: &str, value: &str) -> Vec<u8> {
    format!("{{\"action\":\"create_session\",\"sandbox\":\"{sandbox}\",\"value\":\"{value}\"}}\n").into_bytes()
}

fn del_line(sandbox: &str, token: &str) -> Vec<u8> {
    format!("{{\"action\":\"del\",\"sandbox\":\"{sandbox}\",\"key\":\"{token}\"}}\n").into_bytes()
}

/// The string field `name` of a flat answer line (tokens, outcomes, codes
/// and the users' values carry no escapes).
fn field<'a>(line: &'a [u8], name: &str) -> Option<&'a str> {
    let mut pat = Vec::with_capacity(name.len() + 4);
    pat.push(b'"');
    pat.extend_from_slice(name.as_bytes());
    pat.extend_from_slice(b"\":\"");
    let at = memchr::memmem::find(line, &pat)? + pat.len();
    let end = memchr::memchr(b'"', &line[at..])?;
    std::str::from_utf8(&line[at..at + end]).ok()
}

fn is_ok(line: &[u8]) -> bool {
    line.starts_with(br#"{"status":"ok""#)
}

/// A resolve answer, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    /// `ok`, with its outcome and `new_token`.
    Ok { outcome: String, new_token: String },
    /// Refused, with the error code.
    Refused(String),
    /// `ok` but malformed: no token, or the value is not the user's.
    Malformed(String),
}

fn parse_resolve(line: &[u8], value: &str) -> Resolved {
    if !is_ok(line) {
        return Resolved::Refused(field(line, "code").unwrap_or("?").to_owned());
    }
    match (field(line, "data"), field(line, "outcome"), field(line, "new_token")) {
        (Some(d), Some(o), Some(t)) if d == value => Resolved::Ok { outcome: o.to_owned(), new_token: t.to_owned() },
        (Some(d), _, _) if d != value => Resolved::Malformed("the value is another user's".into()),
        (_, o, t) => Resolved::Malformed(format!(
            "ok without {}",
            if o.is_none() {
                "an outcome"
            } else if t.is_none() {
                "a new_token"
            } else {
                "data"
            }
        )),
    }
}

// ---------------------------------------------------------------------------
// Shared state of a run.
// ---------------------------------------------------------------------------

/// Counters of a run (all atomics: many tasks add to them).
#[derive(Debug, Default)]
struct Counters {
    steps: [AtomicU64; 3],
    requests: AtomicU64,
    rotations: AtomicU64,
    grace_hits: AtomicU64,
    failed: AtomicU64,
    wrong: AtomicU64,
    late_refusals: AtomicU64,
    collateral: AtomicU64,
    recreated: AtomicU64,
    users_warm: AtomicUsize,
    probes: AtomicU64,
    probe_rotations: AtomicU64,
    accepted_after_grace: AtomicU64,
    revocation_misses: AtomicU64,
    /// Refused at the probe's first step (its fresh token), which should
    /// never happen either.
    probe_failures: AtomicU64,
}

/// A regular user between steps.
struct User {
    id: usize,
    value: String,
    token: String,
    rotations: u32,
}

struct Ctx {
    plan: Plan,
    conns: Vec<Arc<Conn>>,
    idle: parking_lot::Mutex<VecDeque<User>>,
    counters: Counters,
    start: Instant,
    end: Instant,
    /// Rotations scheduled so far (the pacing clock).
    scheduled: AtomicU64,
    /// Rotations per second of the pacing.
    rate: f64,
    stop: AtomicBool,
    /// The first few failures, described (never with tokens).
    notes: parking_lot::Mutex<Vec<String>>,
}

impl Ctx {
    fn note(&self, what: String) {
        let mut n = self.notes.lock();
        if n.len() < 20 {
            eprintln!("soak: {what}");
            n.push(what);
        }
    }

    fn conn(&self, i: usize) -> &Conn {
        &self.conns[i % self.conns.len()]
    }
}

/// splitmix64: cheap per-task randomness for step choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The kinds of user steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Single,
    Tabs(usize),
    Mixed,
}

impl Kind {
    fn choose(rng: &mut Rng) -> Kind {
        match rng.below(100) {
            0..75 => Kind::Single,
            75..90 => Kind::Tabs(2 + rng.below(2) as usize),
            _ => Kind::Mixed,
        }
    }

    fn rotations(self) -> u64 {
        if self == Kind::Mixed { 2 } else { 1 }
    }

    fn index(self) -> usize {
        match self {
            Kind::Single => 0,
            Kind::Tabs(_) => 1,
            Kind::Mixed => 2,
        }
    }
}

/// One request of a step: what was presented, when, and the answer.
struct Presented {
    /// When the first request carrying this token was written.
    token_first_sent: Instant,
    sent: Instant,
    answer: Answer,
}

/// What a step saw, for classification.
#[derive(Default)]
struct StepLog {
    /// Refusals certainly within grace (or of the current token).
    definite: Vec<String>,
    /// Refusals that arrived after the grace window.
    late: u64,
    /// `ok` answers that broke an expectation.
    wrong: Vec<String>,
}

impl StepLog {
    /// Classifies one answer's refusal; `Some` when it was `ok`.
    fn check(&mut self, p: &Presented, value: &str, what: &str) -> Option<(String, String)> {
        match parse_resolve(&p.answer.line, value) {
            Resolved::Ok { outcome, new_token } => Some((outcome, new_token)),
            Resolved::Refused(code) => {
                if p.answer.at < p.token_first_sent + Duration::from_millis(GRACE_MS) {
                    self.definite.push(format!(
                        "{what}: refused ({code}) {} ms after its token was first presented",
                        (p.answer.at - p.token_first_sent).as_millis()
                    ));
                } else {
                    self.late += 1;
                }
                None
            }
            Resolved::Malformed(why) => {
                self.wrong.push(format!("{what}: {why}"));
                None
            }
        }
    }

    fn expect(&mut self, cond: bool, what: impl FnOnce() -> String) {
        if !cond {
            self.wrong.push(what());
        }
    }

    fn clean(&self) -> bool {
        self.definite.is_empty() && self.late == 0 && self.wrong.is_empty()
    }
}

/// Runs one step of a user; returns the latencies of its requests.
async fn step(ctx: &Ctx, user: &mut User, kind: Kind, rng: &mut Rng, hist: &mut Histogram<u64>) -> anyhow::Result<()> {
    let c = &ctx.counters;
    let home = user.id % ctx.conns.len();
    let other = |rng: &mut Rng, not: &[usize]| loop {
        let i = rng.below(ctx.conns.len() as u64) as usize;
        if !not.contains(&i) || ctx.conns.len() <= not.len() {
            break i;
        }
    };
    let present = |conn: usize, token: &str, first: Option<Instant>| {
        let line = resolve_line(SANDBOX, token);
        async move {
            let (sent, answer) = ctx.conn(conn).call(&line).await?;
            anyhow::Ok(Presented { token_first_sent: first.unwrap_or(sent), sent, answer })
        }
    };
    let mut log = StepLog::default();
    let mut answers: Vec<(Instant, Instant)> = Vec::with_capacity(3);
    let old = user.token.clone();
    let mut rotated = 0u32;
    match kind {
        Kind::Single => {
            let p = present(home, &old, None).await?;
            answers.push((p.sent, p.answer.at));
            if let Some((outcome, t)) = log.check(&p, &user.value, "single") {
                log.expect(outcome == "rotated", || format!("single: outcome {outcome}, expected rotated"));
                log.expect(t != old, || "single: the successor is the presented token".into());
                if outcome == "rotated" {
                    rotated += 1;
                    user.token = t;
                }
            }
        }
        Kind::Tabs(k) => {
            let b = other(rng, &[home]);
            let third = other(rng, &[home, b]);
            let (pa, pb, pc) = tokio::join!(present(home, &old, None), present(b, &old, None), async {
                if k == 3 { Some(present(third, &old, None).await) } else { None }
            });
            let mut ps = vec![pa?, pb?];
            if let Some(pc) = pc {
                ps.push(pc?);
            }
            // The token was first presented by whichever request was written first.
            let first = ps.iter().map(|p| p.sent).min().expect("two or more");
            let mut oks = Vec::new();
            for p in &mut ps {
                p.token_first_sent = first;
                answers.push((p.sent, p.answer.at));
                if let Some(ok) = log.check(p, &user.value, "tabs") {
                    oks.push(ok);
                }
            }
            if oks.len() == ps.len() {
                let n_rot = oks.iter().filter(|(o, _)| o == "rotated").count();
                let n_grace = oks.iter().filter(|(o, _)| o == "grace").count();
                log.expect(n_rot == 1 && n_grace == k - 1, || {
                    format!("tabs: {n_rot} rotated and {n_grace} grace answers to {k} tabs (expected 1 and {})", k - 1)
                });
                let succ = &oks[0].1;
                log.expect(oks.iter().all(|(_, t)| t == succ) && *succ != old, || {
                    "tabs: the tabs got different successors (a grace hit must return the successor)".into()
                });
                if n_rot == 1 {
                    rotated += 1;
                    user.token = succ.clone();
                }
            }
        }
        Kind::Mixed => {
            let pa = present(home, &old, None).await?;
            answers.push((pa.sent, pa.answer.at));
            if let Some((outcome, mid)) = log.check(&pa, &user.value, "mixed first") {
                log.expect(outcome == "rotated", || format!("mixed first: outcome {outcome}, expected rotated"));
                if outcome == "rotated" {
                    rotated += 1;
                    user.token = mid.clone();
                    let (b, y) = (other(rng, &[home]), other(rng, &[home]));
                    let delay = Duration::from_millis(rng.below(251));
                    let old_at = pa.sent + delay;
                    let (pb, pc) = tokio::join!(present(b, &mid, None), async {
                        tokio::time::sleep_until(old_at.into()).await;
                        present(y, &old, Some(pa.sent)).await
                    });
                    let (pb, pc) = (pb?, pc?);
                    answers.push((pb.sent, pb.answer.at));
                    answers.push((pc.sent, pc.answer.at));
                    let new = log.check(&pb, &user.value, "mixed new");
                    let graced = log.check(&pc, &user.value, "mixed old");
                    if let Some((outcome, last)) = &new {
                        log.expect(outcome == "rotated", || format!("mixed new: outcome {outcome}, expected rotated"));
                        if outcome == "rotated" {
                            rotated += 1;
                            user.token = last.clone();
                        }
                    }
                    if let Some((outcome, t)) = &graced {
                        log.expect(outcome == "grace", || format!("mixed old: outcome {outcome}, expected grace"));
                        let last = new.as_ref().map(|(_, l)| l.as_str());
                        log.expect(*t == mid || Some(t.as_str()) == last, || {
                            "mixed old: the grace hit returned neither successor".into()
                        });
                    }
                }
            }
        }
    }
    for (sent, at) in &answers {
        let _ = hist.record((*at - *sent).as_nanos().max(1) as u64);
    }
    c.requests.fetch_add(answers.len() as u64, Relaxed);
    c.rotations.fetch_add(u64::from(rotated), Relaxed);
    c.grace_hits.fetch_add(
        match kind {
            Kind::Single => 0,
            Kind::Tabs(k) if log.clean() => k as u64 - 1,
            Kind::Mixed if log.clean() => 1,
            _ => 0,
        },
        Relaxed,
    );
    c.steps[kind.index()].fetch_add(1, Relaxed);
    let before = user.rotations;
    user.rotations += rotated;
    if before < WARM_ROTATIONS && user.rotations >= WARM_ROTATIONS {
        c.users_warm.fetch_add(1, Relaxed);
    }
    if !log.clean() {
        if log.late > 0 {
            // A request queued past its grace window was refused, and reuse
            // detection revoked the session: the step's other failures
            // follow from it.
            c.late_refusals.fetch_add(log.late, Relaxed);
            c.collateral.fetch_add((log.definite.len() + log.wrong.len()) as u64, Relaxed);
        } else {
            c.failed.fetch_add(log.definite.len() as u64, Relaxed);
            c.wrong.fetch_add(log.wrong.len() as u64, Relaxed);
            for n in log.definite.iter().chain(&log.wrong) {
                ctx.note(format!("user {}: {n}", user.id));
            }
        }
        // Start the user over: delete whatever is left of the session (so
        // the live count stays one per user) and create a new one.
        let (_, a) = ctx.conn(home).call(&del_line(SANDBOX, &user.token)).await?;
        if !is_ok(&a.line) {
            bail!("del answered {}", String::from_utf8_lossy(&a.line).trim_end());
        }
        user.token = create(ctx.conn(home), SANDBOX, &user.value).await?;
        c.recreated.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Creates a session; returns its token.
async fn create(conn: &Conn, sandbox: &str, value: &str) -> anyhow::Result<String> {
    let (_, a) = conn.call(&create_line(sandbox, value)).await?;
    match field(&a.line, "new_token") {
        Some(t) if is_ok(&a.line) => Ok(t.to_owned()),
        _ => bail!("create_session answered {}", String::from_utf8_lossy(&a.line).trim_end()),
    }
}

/// A driver: takes the next idle user at the paced moment and runs a step.
async fn driver(ctx: Arc<Ctx>, seed: u64) -> anyhow::Result<Histogram<u64>> {
    let mut rng = Rng(seed);
    let mut hist = new_histogram();
    loop {
        let kind = Kind::choose(&mut rng);
        let n = ctx.scheduled.fetch_add(kind.rotations(), Relaxed);
        if n >= ctx.plan.target_rotations || ctx.stop.load(Relaxed) {
            break;
        }
        let due = ctx.start + Duration::from_secs_f64(n as f64 / ctx.rate);
        // A step due inside the window runs even if the timer wakes it a
        // little after the window's end: the plan's rotations all happen.
        if due >= ctx.end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Some(mut user) = ctx.idle.lock().pop_front() else { bail!("no idle user: more drivers than users") };
        let r = step(&ctx, &mut user, kind, &mut rng, &mut hist).await;
        ctx.idle.lock().push_back(user);
        if let Err(e) = r {
            ctx.stop.store(true, Relaxed);
            return Err(e);
        }
    }
    Ok(hist)
}

/// A probe user: rotate, wait past the grace, replay the retired token
/// (must be refused), check the family was revoked, start over.
async fn probe(ctx: Arc<Ctx>, id: usize, seed: u64) -> anyhow::Result<()> {
    let c = &ctx.counters;
    let mut rng = Rng(seed);
    let value = format!("soak-probe-{id}");
    let mut token = create(ctx.conn(rng.below(u64::MAX) as usize), PROBE_SANDBOX, &value).await?;
    // Spread the probes' phases over the first cycle.
    tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
    while !ctx.stop.load(Relaxed) && Instant::now() < ctx.end {
        let (_, a) = ctx.conn(rng.below(u64::MAX) as usize).call(&resolve_line(PROBE_SANDBOX, &token)).await?;
        let Resolved::Ok { outcome, new_token } = parse_resolve(&a.line, &value) else {
            c.probe_failures.fetch_add(1, Relaxed);
            ctx.note(format!("probe {id}: its fresh token did not resolve"));
            token = create(ctx.conn(id), PROBE_SANDBOX, &value).await?;
            continue;
        };
        if outcome != "rotated" {
            c.probe_failures.fetch_add(1, Relaxed);
            ctx.note(format!("probe {id}: outcome {outcome}, expected rotated"));
            continue;
        }
        c.probe_rotations.fetch_add(1, Relaxed);
        let replay_at = a.at + PROBE_AFTER + Duration::from_millis(rng.below(PROBE_JITTER.as_millis() as u64 + 1));
        tokio::time::sleep_until(replay_at.into()).await;
        let (_, r) = ctx.conn(rng.below(u64::MAX) as usize).call(&resolve_line(PROBE_SANDBOX, &token)).await?;
        c.probes.fetch_add(1, Relaxed);
        if is_ok(&r.line) {
            c.accepted_after_grace.fetch_add(1, Relaxed);
            ctx.note(format!(
                "probe {id}: a token replayed {} ms after its rotation was ACCEPTED",
                (r.at - a.at).as_millis()
            ));
        }
        let (_, s) = ctx.conn(rng.below(u64::MAX) as usize).call(&resolve_line(PROBE_SANDBOX, &new_token)).await?;
        if is_ok(&s.line) {
            c.revocation_misses.fetch_add(1, Relaxed);
            ctx.note(format!("probe {id}: the session survived the replay of its retired token"));
            let _ = ctx.conn(id).call(&del_line(PROBE_SANDBOX, &new_token)).await?;
        }
        token = create(ctx.conn(rng.below(u64::MAX) as usize), PROBE_SANDBOX, &value).await?;
    }
    Ok(())
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Raises this process's soft limit on open files to the hard limit.
///
/// # Errors
///
/// Even the hard limit is below `needed`.
fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (l.current, l.maximum)
        && soft < hard
    {
        setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) })
            .with_context(|| format!("raising the open-file limit from {soft} to {hard}"))?;
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < needed {
        bail!(
            "the open-file limit is {now}, below the {needed} this run needs (connections on both sides): \
             raise the hard limit (`ulimit -Hn`, or LimitNOFILE in systemd)"
        );
    }
    Ok(now)
}

/// RSS samples of the server: (seconds since the load started, bytes).
type Samples = Vec<(f64, u64)>;

/// Least-squares slope of bytes over seconds.
fn slope(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Runs the soak and fills its report. `Ok(false)` when an invariant broke
/// (the report says which).
///
/// # Errors
///
/// The server did not start, a connection could not be opened or was lost,
/// or the open-file limit is too low.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<bool> {
    let plan = Plan::new(quick);
    // Each connection is one descriptor here; the server inherits the raised
    // limit and raises its own as well.
    let nofile = raise_nofile(plan.connections as u64 + 256)?;
    let load_before = load_average();
    let max_conn = (plan.connections + 256).to_string();
    let mut server = XemsServer::start_with(
        &[
            "--max-connections",
            &max_conn,
            "--log",
            "warn",
            // The probes check the default policy; a XEMS_REUSE_POLICY in the
            // environment must not change it (flags win over the environment).
            "--reuse-policy",
            "revoke-session",
        ],
        None,
    )?;
    let pid = server.pid();
    println!(
        "xems serve (pid {pid}) on port {}: {} connections, {} users + {} probe users, {} rotations paced over {:?}, \
         grace {GRACE_MS} ms; open-file limit {nofile}; generator threads {}; load average {}",
        server.port(),
        plan.connections,
        plan.users,
        plan.probe_users,
        plan.target_rotations,
        plan.duration,
        plan.generator_threads,
        load_before.map_or("?".into(), |l| format!("{l:.2}")),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.generator_threads.max(1))
        .enable_all()
        .build()?;
    let outcome = rt.block_on(run_async(plan.clone(), &server, pid));
    // Drop the connections before the server.
    drop(rt);
    let o = outcome?;
    let alive = server.check_alive();
    let load_after = load_average();

    let c = &o.counters;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let rotations = get(&c.rotations);
    let load_s = o.load_secs;
    let rate = rotations as f64 / load_s;
    let lat = |q: f64| o.hist.value_at_quantile(q) as f64 / 1e6;
    let growth = o.rss_end as f64 / o.rss_warm.max(1) as f64;
    // What a leak would show as: bytes gained per rotation after the warm
    // point (reported; the gate is `growth`).
    let after_warm = rotations.saturating_sub(o.warm_rotations);
    let per_rotation = (after_warm > 0).then(|| (o.rss_end as f64 - o.rss_warm as f64) / after_warm as f64);

    println!("\nsoak: {} s of load", report::round3(load_s));
    println!(
        "  rotations            {rotations} ({}; paced at {})",
        report::fmt_rate(rate),
        report::fmt_rate(plan.target_rotations as f64 / plan.duration.as_secs_f64())
    );
    println!(
        "  requests             {} ({}); steps single/tabs/mixed {}/{}/{}; grace hits {}",
        get(&c.requests),
        report::fmt_rate(get(&c.requests) as f64 / load_s),
        get(&c.steps[0]),
        get(&c.steps[1]),
        get(&c.steps[2]),
        get(&c.grace_hits)
    );
    println!(
        "  latency              p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        lat(0.5),
        lat(0.99),
        lat(0.999),
        o.hist.max() as f64 / 1e6
    );
    println!(
        "  failed resolutions   {} (wrong answers {}; late refusals {}, collateral {}, users recreated {})",
        get(&c.failed),
        get(&c.wrong),
        get(&c.late_refusals),
        get(&c.collateral),
        get(&c.recreated)
    );
    println!(
        "  probes               {} replays 1.5-2 s after rotation: accepted {}; sessions not revoked {}; probe failures {}",
        get(&c.probes),
        get(&c.accepted_after_grace),
        get(&c.revocation_misses),
        get(&c.probe_failures)
    );
    println!("  connections held     {} of {} answered a ping at the end", o.connections_held, plan.connections);
    println!(
        "  live sessions        {} in {SANDBOX} (users {}), {} in {PROBE_SANDBOX} (probe users {}); retired tokens kept {}",
        o.live_sessions, plan.users, o.live_probe_sessions, plan.probe_users, o.retired_tokens
    );
    println!(
        "  server RSS           warm {} (at {:.1} s{}), end {}, max {}, end/warm {:.3} (limit {RSS_GROWTH_MAX}); slope after warm {:.1} KiB/s",
        mib(o.rss_warm),
        o.warm_at_s,
        if o.warm_reached { "" } else { ", warm condition NOT reached" },
        mib(o.rss_end),
        mib(o.rss_max),
        growth,
        o.rss_slope.unwrap_or(0.0) / 1024.0
    );
    println!(
        "                       {} over the {after_warm} rotations after the warm point",
        per_rotation.map_or("n/a".to_owned(), |b| format!("{b:+.1} bytes per rotation"))
    );

    let mut violations = Vec::new();
    let mut must = |ok: bool, what: String| {
        if !ok {
            violations.push(what);
        }
    };
    must(get(&c.failed) == 0, format!("{} failed resolutions within grace", get(&c.failed)));
    must(get(&c.wrong) == 0, format!("{} wrong answers", get(&c.wrong)));
    must(
        get(&c.accepted_after_grace) == 0,
        format!("{} tokens accepted after their grace", get(&c.accepted_after_grace)),
    );
    must(get(&c.revocation_misses) == 0, format!("{} replays did not revoke the session", get(&c.revocation_misses)));
    must(get(&c.probe_failures) == 0, format!("{} probe rotations failed", get(&c.probe_failures)));
    must(get(&c.probes) > 0, "no probe ran".into());
    must(
        o.connections_held == plan.connections,
        format!("{} of {} connections held", o.connections_held, plan.connections),
    );
    must(o.live_sessions == plan.users as u64, format!("{} live sessions for {} users", o.live_sessions, plan.users));
    must(
        o.live_probe_sessions == plan.probe_users as u64,
        format!("{} live probe sessions for {} probe users", o.live_probe_sessions, plan.probe_users),
    );
    must(
        growth <= RSS_GROWTH_MAX,
        format!("server RSS grew {growth:.3}x from the warm point (limit {RSS_GROWTH_MAX})"),
    );
    must(alive.is_ok(), format!("the server died: {:?}", alive.err()));
    must(rotations > 0, "no rotation".into());
    let passed = violations.is_empty();
    if passed {
        println!("\nall invariants held");
    } else {
        println!("\nINVARIANTS BROKEN:");
        for v in &violations {
            println!("  {v}");
        }
    }

    report.set("plan", &plan);
    report.set("connections_held", o.connections_held);
    report.set("users", plan.users);
    report.set("probe_users", plan.probe_users);
    report.set("rotations", rotations);
    report.set("target_rotations", plan.target_rotations);
    report.set("duration_s", report::round3(load_s));
    report.set("rotations_per_s", report::round3(rate));
    report.set("requests", get(&c.requests));
    report.set("requests_per_s", report::round3(get(&c.requests) as f64 / load_s));
    report.set(
        "steps",
        serde_json::json!({"single": get(&c.steps[0]), "tabs": get(&c.steps[1]), "mixed": get(&c.steps[2])}),
    );
    report.set("grace_hits", get(&c.grace_hits));
    report.set("failed_resolutions", get(&c.failed));
    report.set("wrong_answers", get(&c.wrong));
    report.set("late_refusals", get(&c.late_refusals));
    report.set("collateral_failures", get(&c.collateral));
    report.set("users_recreated", get(&c.recreated));
    report.set("probes", get(&c.probes));
    report.set("accepted_after_grace", get(&c.accepted_after_grace));
    report.set("revocation_misses", get(&c.revocation_misses));
    report.set("live_sessions", o.live_sessions);
    report.set("live_probe_sessions", o.live_probe_sessions);
    report.set("retired_tokens", o.retired_tokens);
    report.set("rss_warm_bytes", o.rss_warm);
    report.set("rss_end_bytes", o.rss_end);
    report.set("rss_max_bytes", o.rss_max);
    report.set("rss_growth", report::round3(growth));
    report.set("rss_growth_max", RSS_GROWTH_MAX);
    report.set("rss_warm_at_s", report::round3(o.warm_at_s));
    report.set("rss_warm_condition_met", o.warm_reached);
    report.set("rss_slope_bytes_per_s", o.rss_slope.map(report::round3));
    report.set("rotations_after_warm", rotations.saturating_sub(o.warm_rotations));
    report.set("rss_bytes_per_rotation_after_warm", per_rotation.map(report::round3));
    report.set("p50_ms", report::round3(lat(0.5)));
    report.set("p99_ms", report::round3(lat(0.99)));
    report.set("p999_ms", report::round3(lat(0.999)));
    report.set("max_ms", report::round3(o.hist.max() as f64 / 1e6));
    report.set("load_average_before", load_before);
    report.set("load_average_after", load_after);
    report.set("server_counters", &o.server_counters);
    report.set("rss_samples", o.samples.iter().map(|(t, b)| [report::round3(*t), *b as f64]).collect::<Vec<_>>());
    report.set("passed", passed);
    report.set("violations", &violations);
    Ok(passed)
}

/// What the async part measured.
struct Outcome {
    counters: Counters,
    hist: Histogram<u64>,
    load_secs: f64,
    connections_held: usize,
    live_sessions: u64,
    live_probe_sessions: u64,
    retired_tokens: u64,
    server_counters: Value,
    samples: Samples,
    rss_warm: u64,
    warm_at_s: f64,
    warm_reached: bool,
    /// Rotations done at the warm point.
    warm_rotations: u64,
    rss_end: u64,
    rss_max: u64,
    rss_slope: Option<f64>,
}

async fn run_async(plan: Plan, server: &XemsServer, pid: u32) -> anyhow::Result<Outcome> {
    let setup_start = Instant::now();
    let auth = server.auth_line();
    let addr = server.addr();
    // Open the connections, a bounded number at a time (the listen backlog
    // is finite), and keep every one for the whole run.
    let mut conns: Vec<Option<Arc<Conn>>> = vec![None; plan.connections];
    let mut set = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        if set.len() >= 128
            && let Some(r) = set.join_next().await
        {
            let (j, conn): (usize, Arc<Conn>) = r??;
            conns[j] = Some(conn);
        }
        let auth = auth.clone();
        set.spawn(async move { anyhow::Ok((i, Conn::open(i, addr, &auth).await?)) });
    }
    while let Some(r) = set.join_next().await {
        let (j, conn) = r??;
        conns[j] = Some(conn);
    }
    let conns: Vec<Arc<Conn>> = conns.into_iter().map(|c| c.expect("every connection opened")).collect();
    println!("opened {} connections in {:.1} s", conns.len(), setup_start.elapsed().as_secs_f64());

    // One session per user, created over all connections.
    let t = Instant::now();
    let mut users: Vec<Option<User>> = (0..plan.users).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    for id in 0..plan.users {
        if set.len() >= 512
            && let Some(r) = set.join_next().await
        {
            let u: User = r??;
            let slot = u.id;
            users[slot] = Some(u);
        }
        let conn = conns[id % conns.len()].clone();
        set.spawn(async move {
            let value = format!("soak-user-{id}");
            let token = create(&conn, SANDBOX, &value).await?;
            anyhow::Ok(User { id, value, token, rotations: 0 })
        });
    }
    while let Some(r) = set.join_next().await {
        let u = r??;
        let slot = u.id;
        users[slot] = Some(u);
    }
    let idle: VecDeque<User> = users.into_iter().map(|u| u.expect("every user created")).collect();
    println!("created {} sessions in {:.1} s", idle.len(), t.elapsed().as_secs_f64());
    if plan.drivers >= plan.users {
        bail!("the plan has {} drivers for {} users: every driver needs its own user", plan.drivers, plan.users);
    }

    let start = Instant::now() + Duration::from_millis(50);
    let ctx = Arc::new(Ctx {
        rate: plan.target_rotations as f64 / plan.duration.as_secs_f64(),
        end: start + plan.duration,
        plan: plan.clone(),
        conns,
        idle: parking_lot::Mutex::new(idle),
        counters: Counters::default(),
        start,
        scheduled: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        notes: parking_lot::Mutex::new(Vec::new()),
    });

    // The RSS sampler and progress lines.
    let sampler = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut samples: Samples = Vec::new();
            // Rotations done at each sample.
            let mut rots: Vec<u64> = Vec::new();
            let mut warm: Option<usize> = None;
            let mut next = ctx.start;
            let mut last_print = ctx.start;
            let mut last_rot = 0u64;
            while Instant::now() < ctx.end && !ctx.stop.load(Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next += ctx.plan.sample_every;
                let now = Instant::now();
                let t = (now - ctx.start).as_secs_f64();
                let Ok(rss) = rss_bytes_of(pid) else { break };
                samples.push((t, rss));
                rots.push(ctx.counters.rotations.load(Relaxed));
                let users_warm = ctx.counters.users_warm.load(Relaxed);
                if warm.is_none() && now >= ctx.start + ctx.plan.warm_after && users_warm >= ctx.plan.users {
                    warm = Some(samples.len() - 1);
                }
                if now - last_print >= Duration::from_secs(if ctx.plan.duration.as_secs() > 20 { 10 } else { 2 }) {
                    let rot = ctx.counters.rotations.load(Relaxed);
                    println!(
                        "  t={t:>5.1}s rotations {rot:>8} ({}), failed {}, late {}, probes {} (accepted {}), RSS {}{}",
                        report::fmt_rate((rot - last_rot) as f64 / (now - last_print).as_secs_f64()),
                        ctx.counters.failed.load(Relaxed) + ctx.counters.wrong.load(Relaxed),
                        ctx.counters.late_refusals.load(Relaxed),
                        ctx.counters.probes.load(Relaxed),
                        ctx.counters.accepted_after_grace.load(Relaxed),
                        mib(rss),
                        if warm.is_some() { " (warm)" } else { "" }
                    );
                    last_print = now;
                    last_rot = rot;
                }
            }
            (samples, rots, warm)
        })
    };

    let mut drivers = tokio::task::JoinSet::new();
    for d in 0..plan.drivers {
        drivers.spawn(driver(ctx.clone(), 0x5eed_0000 + d as u64));
    }
    let mut probes = tokio::task::JoinSet::new();
    for p in 0..plan.probe_users {
        probes.spawn(probe(ctx.clone(), p, 0xb0b0_0000 + p as u64));
    }
    let mut hist = new_histogram();
    let mut first_err = None;
    while let Some(r) = drivers.join_next().await {
        match r.context("a driver panicked")? {
            Ok(h) => hist.add(&h).expect("histograms of one shape merge"),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // From the start line to the last step's answer.
    let load_secs = (Instant::now() - ctx.start).as_secs_f64();
    ctx.stop.store(true, Relaxed);
    while let Some(r) = probes.join_next().await {
        if let Err(e) = r.context("a probe panicked")? {
            first_err.get_or_insert(e);
        }
    }
    let (samples, rots, warm) = sampler.await.context("the sampler panicked")?;
    if let Some(e) = first_err {
        return Err(e);
    }

    // Let the last grace windows pass and the sweeper (every 100 ms) run.
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 1000)).await;
    let (_, a) = ctx.conns[0].call(b"{\"action\":\"stats\"}\n").await?;
    let stats: Value = serde_json::from_slice(&a.line).context("stats answer is not JSON")?;
    let stats = stats.get("stats").context("stats answer without stats")?;
    let sandbox = |name: &str, f: &str| {
        stats["sandboxes"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .and_then(|s| s[f].as_u64())
            .unwrap_or(0)
    };
    let (live_sessions, live_probe_sessions) = (sandbox(SANDBOX, "records"), sandbox(PROBE_SANDBOX, "records"));
    let retired_tokens = sandbox(SANDBOX, "retired_tokens") + sandbox(PROBE_SANDBOX, "retired_tokens");
    let server_counters = stats["counters"].clone();

    // RSS at the end: the median of three samples, 200 ms apart.
    let mut end = Vec::new();
    for _ in 0..3 {
        end.push(rss_bytes_of(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    end.sort_unstable();
    let rss_end = end[1];

    // Every connection must still answer.
    let mut set = tokio::task::JoinSet::new();
    for conn in &ctx.conns {
        let conn = Arc::clone(conn);
        set.spawn(async move {
            matches!(conn.call(b"{\"action\":\"ping\"}\n").await, Ok((_, a)) if a.line.starts_with(br#"{"status":"ok","data":"pong""#))
        });
    }
    let mut connections_held = 0;
    while let Some(r) = set.join_next().await {
        connections_held += usize::from(r.unwrap_or(false));
    }

    let (warm_idx, warm_reached) = match warm {
        Some(i) => (i, true),
        // Not every user reached the warm rotation count (a slow machine):
        // fall back to the first sample after `warm_after` and say so.
        None => (
            samples
                .iter()
                .position(|(t, _)| *t >= plan.warm_after.as_secs_f64())
                .unwrap_or(samples.len().saturating_sub(1)),
            false,
        ),
    };
    let (warm_at_s, rss_warm) = samples.get(warm_idx).copied().unwrap_or((0.0, rss_end));
    let warm_rotations = rots.get(warm_idx).copied().unwrap_or(0);
    let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0).max(rss_end);
    let rss_slope = slope(&samples[warm_idx.min(samples.len())..]);
    let counters = Arc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("a task still holds the run"))?.counters;
    Ok(Outcome {
        counters,
        hist,
        load_secs,
        connections_held,
        live_sessions,
        live_probe_sessions,
        retired_tokens,
        server_counters,
        samples,
        rss_warm,
        warm_at_s,
        warm_reached,
        warm_rotations,
        rss_end,
        rss_max,
        rss_slope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_checked() {
        let ok = br#"{"status":"ok","data":"soak-user-7","new_token":"AbC_-1","outcome":"grace","meta":{"id":"x","version":1}}"#;
        assert_eq!(
            parse_resolve(ok, "soak-user-7"),
            Resolved::Ok { outcome: "grace".into(), new_token: "AbC_-1".into() }
        );
        assert!(matches!(parse_resolve(ok, "soak-user-8"), Resolved::Malformed(_)));
        let refused = br#"{"status":"error","error":"not found","code":"not_found"}"#;
        assert_eq!(parse_resolve(refused, "soak-user-7"), Resolved::Refused("not_found".into()));
        let no_token = br#"{"status":"ok","data":"soak-user-7","outcome":"current"}"#;
        assert!(matches!(parse_resolve(no_token, "soak-user-7"), Resolved::Malformed(_)));
        assert_eq!(
            resolve_line("soak", "T"),
            b"{\"action\":\"resolve\",\"sandbox\":\"soak\",\"key\":\"T\",\"rotate\":true,\"grace_period\":1000}\n"
                .to_vec()
        );
        assert!(create_line("soak", "v").ends_with(b"}\n"));
    }

    #[test]
    fn refusals_are_classified_by_when_they_arrived() {
        let t0 = Instant::now();
        let refused = |after_ms: u64| Presented {
            token_first_sent: t0,
            sent: t0,
            answer: Answer {
                line: br#"{"status":"error","error":"not found","code":"not_found"}"#.to_vec(),
                at: t0 + Duration::from_millis(after_ms),
            },
        };
        let mut log = StepLog::default();
        assert!(log.check(&refused(10), "v", "x").is_none());
        assert_eq!(log.definite.len(), 1);
        assert!(log.check(&refused(GRACE_MS + 1), "v", "x").is_none());
        assert_eq!(log.late, 1);
        assert!(!log.clean());
    }

    #[test]
    fn slope_and_steps() {
        let s: Vec<(f64, u64)> = (0..10).map(|i| (f64::from(i), 1000 + 50 * i as u64)).collect();
        assert!((slope(&s).unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(slope(&s[..1]), None);
        let mut rng = Rng(1);
        let kinds: Vec<Kind> = (0..10_000).map(|_| Kind::choose(&mut rng)).collect();
        let mixed = kinds.iter().filter(|k| **k == Kind::Mixed).count();
        assert!((800..1200).contains(&mixed), "{mixed}");
        assert!(kinds.contains(&Kind::Tabs(3)) && kinds.contains(&Kind::Tabs(2)));
    }
}
