//! A connection-level load generator for line protocols: N tokio connections,
//! each with pipeline depth D, requests made by a closure, responses counted
//! by newline.
//!
//! Two pipelining disciplines: [`Pipelining::Burst`] (the default) writes D
//! requests in one write and waits for all D responses before the next
//! burst, as `redis-benchmark -P D` does, so its figures compare directly;
//! [`Pipelining::Sliding`] keeps D requests in flight, sending one new
//! request per response (on loopback it tends to degrade into many small
//! writes, which then measures the syscalls more than the server).
//!
//! Generic enough for Redis (RESP: a `GET` reply is two lines, `$256` and the
//! bytes; `SET` is one) and for xems's JSON lines (one line per response).
//! The stream is any `AsyncRead` + `AsyncWrite` pair, so TCP, Unix sockets
//! and a child process's stdin/stdout all work.
//!
//! Latency is measured per request, from the write that carried it to the
//! read that completed its response (so at depth D it includes queueing
//! behind the D-1 requests before it). Throughput and latency count only
//! responses completed inside the measured window, after a warm-up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::measure::{Measurement, new_histogram};

/// Appends request number `seq` of connection `conn` to the buffer.
pub type RequestFn = dyn Fn(usize, u64, &mut Vec<u8>) + Send + Sync;

/// One connection's side of a load, for protocols where a request depends
/// on earlier responses (a rotated session's next token): it makes the
/// requests and sees every response's first line, in order.
pub trait Conversation: Send {
    /// Appends request number `seq` (counted from 0 on this connection).
    fn request(&mut self, seq: u64, out: &mut Vec<u8>);
    /// The first line of the next response (without `\r\n`, cut to
    /// [`LoadSpec::first_line_max`] bytes); `false` marks it failed.
    fn response(&mut self, first_line: &[u8]) -> bool;
}

/// Builds connection `conn`'s conversation.
pub type ConversationFactory = dyn Fn(usize) -> Box<dyn Conversation> + Send + Sync;

/// The stateless conversation of [`run`]: a request closure and a check.
struct Stateless {
    conn: usize,
    request: Arc<RequestFn>,
    check: CheckFn,
}

impl Conversation for Stateless {
    fn request(&mut self, seq: u64, out: &mut Vec<u8>) {
        (self.request)(self.conn, seq, out);
    }
    fn response(&mut self, first_line: &[u8]) -> bool {
        (self.check)(first_line)
    }
}

/// Whether the first line of a response is a success (the line without its
/// `\n`, cut to at most [`FIRST_LINE_MAX`] bytes).
pub type CheckFn = fn(&[u8]) -> bool;

/// Bytes of a response's first line kept for the check, by default.
pub const FIRST_LINE_MAX: usize = 64;

/// Where to connect.
#[derive(Clone, Debug)]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
    /// A child process spoken to over its stdin and stdout (the XyPriss
    /// sidecar); every connection spawns its own.
    Child {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// How a connection keeps its pipeline full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pipelining {
    /// Write D requests at once, wait for all D responses, repeat.
    #[default]
    Burst,
    /// Keep D requests in flight: a new request for every response.
    Sliding,
}

/// The shape of a load.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Case name.
    pub name: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// How the pipeline is kept full.
    pub pipelining: Pipelining,
    /// Run before measuring.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Worker threads of the generator's tokio runtime.
    pub threads: usize,
    /// Newline-terminated lines in every response.
    pub lines_per_response: usize,
    /// Bytes sent once on each new connection before the load (an auth
    /// handshake), and how many response lines to expect for them.
    pub handshake: Option<(Vec<u8>, usize)>,
    /// Bytes of each response's first line kept for the check or the
    /// conversation ([`FIRST_LINE_MAX`] is enough for status lines; a
    /// conversation that reads a token out of a JSON line needs the line).
    pub first_line_max: usize,
    /// The server's process: its CPU time over the measured window is
    /// reported per operation ([`LoadOutcome::server_cpu_ns_per_op`]).
    pub server_pid: Option<u32>,
}

/// The outcome of a load.
#[derive(Clone, Debug, Serialize)]
pub struct LoadOutcome {
    /// Throughput and latency (`threads` there is the connection count).
    #[serde(flatten)]
    pub measurement: Measurement,
    /// Requests in flight per connection.
    pub depth: usize,
    /// How the pipeline was kept full.
    pub pipelining: Pipelining,
    /// Responses whose check failed (the run fails if any did).
    pub errors: u64,
    /// Worker threads of the generator.
    pub generator_threads: usize,
    /// CPU time the server process ran during the measured window, per
    /// operation completed in it (all its threads; `None` without
    /// [`LoadSpec::server_pid`]). Unlike throughput, preemption by other
    /// work on a shared machine does not inflate it.
    pub server_cpu_ns_per_op: Option<f64>,
}

impl LoadOutcome {
    /// p99 latency in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.measurement.latency.p99_ns as f64 / 1e6
    }
}

/// What one connection measured.
#[derive(Debug)]
pub struct ConnOutcome {
    /// Responses completed in the window.
    pub ops: u64,
    /// Responses that failed their check (warm-up included).
    pub errors: u64,
    /// Latencies of the responses in the window, in nanoseconds.
    pub hist: Histogram<u64>,
}

/// Runs a load on a fresh multi-threaded tokio runtime.
///
/// # Errors
///
/// Connecting failed, a connection stalled or closed, or any response failed
/// its check (the first bad line is quoted).
pub fn run(target: &Target, spec: &LoadSpec, request: Arc<RequestFn>, check: CheckFn) -> anyhow::Result<LoadOutcome> {
    run_conversations(
        target,
        spec,
        Arc::new(move |conn| Box::new(Stateless { conn, request: request.clone(), check }) as Box<dyn Conversation>),
    )
}

/// Runs a load whose connections hold a [`Conversation`] each, on a fresh
/// multi-threaded tokio runtime.
///
/// # Errors
///
/// As [`run`]; a response the conversation marks failed counts as a bad
/// response.
pub fn run_conversations(
    target: &Target,
    spec: &LoadSpec,
    factory: Arc<ConversationFactory>,
) -> anyhow::Result<LoadOutcome> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(spec.threads.max(1)).enable_all().build()?;
    rt.block_on(run_async(target, spec, factory))
}

async fn run_async(target: &Target, spec: &LoadSpec, factory: Arc<ConversationFactory>) -> anyhow::Result<LoadOutcome> {
    // Connect (and handshake) everyone first, then start together.
    let barrier = Arc::new(tokio::sync::Barrier::new(spec.connections + 1));
    let mut tasks = Vec::with_capacity(spec.connections);
    for conn in 0..spec.connections {
        let (barrier, spec, target) = (barrier.clone(), spec.clone(), target.clone());
        let mut conversation = factory(conn);
        tasks.push(tokio::spawn(async move {
            // A child target's process lives as long as its connection.
            let mut child = None;
            let result = async {
                match &target {
                    Target::Tcp(addr) => {
                        let s = tokio::net::TcpStream::connect(addr)
                            .await
                            .with_context(|| format!("connecting to {addr}"))?;
                        s.set_nodelay(true)?;
                        let (r, w) = s.into_split();
                        anyhow::Ok((
                            Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                            Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>,
                        ))
                    }
                    Target::Unix(path) => {
                        let s = tokio::net::UnixStream::connect(path)
                            .await
                            .with_context(|| format!("connecting to {}", path.display()))?;
                        let (r, w) = s.into_split();
                        Ok((
                            Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                            Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>,
                        ))
                    }
                    Target::Child { program, args } => {
                        let mut c = tokio::process::Command::new(program)
                            .args(args)
                            .stdin(std::process::Stdio::piped())
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::null())
                            .kill_on_drop(true)
                            .spawn()
                            .with_context(|| format!("starting {}", program.display()))?;
                        let (w, r) = (c.stdin.take(), c.stdout.take());
                        child = Some(c);
                        Ok((
                            Box::new(r.context("the child's stdout")?) as Box<dyn AsyncRead + Send + Unpin>,
                            Box::new(w.context("the child's stdin")?) as Box<dyn AsyncWrite + Send + Unpin>,
                        ))
                    }
                }
            }
            .await;
            let outcome = match result {
                Ok((r, w)) => drive(r, w, conn, &spec, &mut *conversation, &barrier).await,
                Err(e) => {
                    // Keep the others from waiting forever.
                    barrier.wait().await;
                    Err(e)
                }
            };
            drop(child);
            outcome
        }));
    }
    barrier.wait().await;
    // The server's CPU over the same window the connections count in.
    let server_cpu = spec.server_pid.map(|pid| {
        let (warmup, duration) = (spec.warmup, spec.duration);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let before = crate::measure::process_cpu_ns(pid)?;
            tokio::time::sleep(duration).await;
            Some(crate::measure::process_cpu_ns(pid)?.saturating_sub(before))
        })
    });
    let mut hist = new_histogram();
    let (mut ops, mut errors) = (0, 0);
    let mut first_err = None;
    for t in tasks {
        match t.await.context("a load connection panicked")? {
            Ok(o) => {
                hist.add(&o.hist).expect("histograms of one shape merge");
                ops += o.ops;
                errors += o.errors;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let measurement = Measurement::new(&spec.name, spec.connections, ops, spec.duration, &hist);
    let server_cpu_ns = match server_cpu {
        Some(task) => task.await.context("the server CPU sampler panicked")?,
        None => None,
    };
    Ok(LoadOutcome {
        measurement,
        depth: spec.depth,
        pipelining: spec.pipelining,
        errors,
        generator_threads: spec.threads,
        server_cpu_ns_per_op: server_cpu_ns.filter(|_| ops > 0).map(|ns| ns as f64 / ops as f64),
    })
}

/// Drives one connection over any reader/writer pair: handshake, wait for
/// the start line, then the sliding window until the window closes.
///
/// # Errors
///
/// I/O failure, an early close, a stall past the end of the window, or a
/// failed check.
pub async fn drive<R, W>(
    mut reader: R,
    mut writer: W,
    conn: usize,
    spec: &LoadSpec,
    conversation: &mut dyn Conversation,
    start_line: &tokio::sync::Barrier,
) -> anyhow::Result<ConnOutcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut counter = LineCounter::new(spec.lines_per_response.max(1), spec.first_line_max.max(1));
    let handshake = async {
        if let Some((bytes, lines)) = &spec.handshake {
            writer.write_all(bytes).await?;
            let mut seen = 0;
            while seen < *lines {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    bail!("the server closed the connection during the handshake");
                }
                seen += memchr::memchr_iter(b'\n', &buf[..n]).count();
            }
        }
        anyhow::Ok(())
    }
    .await;
    start_line.wait().await;
    handshake?;

    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let stall_limit = end + Duration::from_secs(10);
    let mut out = Vec::with_capacity(spec.depth * 512);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(spec.depth);
    let mut seq = 0u64;
    let mut outcome = ConnOutcome { ops: 0, errors: 0, hist: new_histogram() };
    let mut to_send = spec.depth;
    loop {
        if to_send > 0 {
            out.clear();
            for _ in 0..to_send {
                conversation.request(seq, &mut out);
                seq += 1;
            }
            writer.write_all(&out).await?;
            let now = Instant::now();
            sent_at.extend(std::iter::repeat_n(now, to_send));
        }
        let n = match tokio::time::timeout_at(stall_limit.into(), reader.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => bail!("connection {conn} stalled: no response for 10 s after the end of the window"),
        };
        if n == 0 {
            bail!("the server closed connection {conn} ({} responses in)", seq - sent_at.len() as u64);
        }
        let now = Instant::now();
        let measuring = now >= measure_from && now < end;
        let mut done = 0;
        counter.feed(&buf[..n], |first_line| {
            done += 1;
            let t = sent_at.pop_front().unwrap_or(now);
            if measuring {
                outcome.ops += 1;
                let _ = outcome.hist.record((now - t).as_nanos().max(1) as u64);
            }
            if !conversation.response(first_line) {
                outcome.errors += 1;
                if outcome.errors == 1 {
                    eprintln!(
                        "load {}: connection {conn}: bad response {:?}",
                        spec.name,
                        String::from_utf8_lossy(first_line)
                    );
                }
            }
        });
        if now >= end {
            break;
        }
        to_send = match spec.pipelining {
            Pipelining::Sliding => done,
            Pipelining::Burst if sent_at.is_empty() => spec.depth,
            Pipelining::Burst => 0,
        };
    }
    if outcome.errors > 0 {
        bail!("{} bad responses on connection {conn} of load {}", outcome.errors, spec.name);
    }
    Ok(outcome)
}

/// Splits a byte stream into responses of a fixed number of lines, keeping
/// the start of each response's first line for the check.
struct LineCounter {
    lines_per_response: usize,
    line_in_response: usize,
    first_line: Vec<u8>,
    first_line_max: usize,
}

impl LineCounter {
    fn new(lines_per_response: usize, first_line_max: usize) -> Self {
        LineCounter {
            lines_per_response,
            line_in_response: 0,
            first_line: Vec::with_capacity(first_line_max),
            first_line_max,
        }
    }

    /// Feeds bytes; calls `on_response(first_line)` for every completed
    /// response (the first line without `\r\n`).
    fn feed(&mut self, mut bytes: &[u8], mut on_response: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let nl = memchr::memchr(b'\n', bytes);
            let chunk_end = nl.map_or(bytes.len(), |i| i);
            if self.line_in_response == 0 && self.first_line.len() < self.first_line_max {
                let room = self.first_line_max - self.first_line.len();
                self.first_line.extend_from_slice(&bytes[..chunk_end.min(room)]);
            }
            let Some(i) = nl else { break };
            bytes = &bytes[i + 1..];
            self.line_in_response += 1;
            if self.line_in_response == self.lines_per_response {
                let line = self.first_line.strip_suffix(b"\r").unwrap_or(&self.first_line);
                on_response(line);
                self.first_line.clear();
                self.line_in_response = 0;
            }
        }
    }
}

/// A 64-bit mix of (connection, sequence): a stateless pseudo-random
/// choice for request closures (splitmix64).
pub fn mix(conn: usize, seq: u64) -> u64 {
    let mut z = (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq.wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_counter_frames_across_reads() {
        let mut c = LineCounter::new(2, FIRST_LINE_MAX);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let stream = b"$3\r\nabc\r\n$-1\r\n\r\n$2\r\nxy\r\n";
        for piece in stream.chunks(3) {
            c.feed(piece, |l| got.push(l.to_vec()));
        }
        assert_eq!(got, vec![b"$3".to_vec(), b"$-1".to_vec(), b"$2".to_vec()]);

        let mut one = LineCounter::new(1, FIRST_LINE_MAX);
        let mut n = 0;
        one.feed(b"+OK\r\n+OK\r\n+O", |l| {
            assert_eq!(l, b"+OK");
            n += 1;
        });
        one.feed(b"K\r\n", |l| {
            assert_eq!(l, b"+OK");
            n += 1;
        });
        assert_eq!(n, 3);
    }

    #[test]
    fn drives_a_line_echo_server() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = vec![0u8; 4096];
                    loop {
                        let n = s.read(&mut b).await.unwrap_or(0);
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let spec = LoadSpec {
            name: "echo".into(),
            connections: 4,
            depth: 8,
            pipelining: Pipelining::Burst,
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(100),
            threads: 1,
            lines_per_response: 1,
            handshake: Some((b"hello\n".to_vec(), 1)),
            first_line_max: FIRST_LINE_MAX,
            server_pid: Some(std::process::id()),
        };
        let out = run(
            &Target::Tcp(addr),
            &spec,
            Arc::new(|conn, seq, out: &mut Vec<u8>| out.extend_from_slice(format!("ok {conn} {seq}\n").as_bytes())),
            |l| l.starts_with(b"ok "),
        )
        .unwrap();
        assert!(out.measurement.ops > 100, "{out:?}");
        assert_eq!(out.errors, 0);
        assert!(out.measurement.latency.p50_ns > 0);
        // The echo server runs in this process: it used CPU in the window.
        assert!(out.server_cpu_ns_per_op.is_some_and(|ns| ns > 0.0), "{out:?}");
        let sliding = LoadSpec { pipelining: Pipelining::Sliding, ..spec.clone() };
        let out = run(
            &Target::Tcp(addr),
            &sliding,
            Arc::new(|_, seq, out: &mut Vec<u8>| out.extend_from_slice(format!("ok {seq}\n").as_bytes())),
            |l| l.starts_with(b"ok "),
        )
        .unwrap();
        assert!(out.measurement.ops > 100, "{out:?}");

        let bad =
            run(&Target::Tcp(addr), &spec, Arc::new(|_, _, out: &mut Vec<u8>| out.extend_from_slice(b"no\n")), |l| {
                l.starts_with(b"ok ")
            });
        assert!(bad.is_err());
        drop(rt);
    }
}
