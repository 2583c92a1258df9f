//! A small HTTP/1.1 keep-alive load generator that behaves like a browser
//! tab: each connection sends one request at a time, carries its cookie, and
//! replaces it whenever a response sets a new one.
//!
//! Latency is per request, from the write to the end of the response body.
//! Throughput and latency count the responses completed inside the measured
//! window, after a warm-up during which every connection already runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one load run measured.
#[derive(Debug)]
pub struct LoadOutcome {
    /// Responses with status 200 in the window.
    pub ok: u64,
    /// Other responses in the window (must be zero for a valid run).
    pub errors: u64,
    /// Responses in the window that set a new cookie.
    pub cookies_set: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latency of every response in the window, in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time of the server's threads during the window.
    pub server_cpu: Duration,
}

impl LoadOutcome {
    /// Server CPU time per successful request, in microseconds.
    pub fn server_cpu_us_per_req(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.ok.max(1) as f64
    }
}

/// How to load one server.
#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    /// Concurrent connections.
    pub connections: usize,
    /// Time every connection runs before measuring.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

struct Flags {
    measuring: AtomicBool,
    stop: AtomicBool,
}

struct ConnOutcome {
    ok: u64,
    errors: u64,
    cookies_set: u64,
    latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the load on the current runtime and waits for it.
///
/// # Errors
///
/// A connection cannot be made, or the server answers something that is
/// not HTTP/1.1.
pub(crate) async fn run(
    addr: SocketAddr,
    login: Option<&'static str>,
    path: &'static str,
    cfg: LoadConfig,
    server: &crate::cpu::ThreadSet,
) -> Result<LoadOutcome, String> {
    let flags = Arc::new(Flags { measuring: AtomicBool::new(false), stop: AtomicBool::new(false) });
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|_| {
            let flags = flags.clone();
            tokio::spawn(async move { connection(addr, login, path, &flags).await })
        })
        .collect();
    tokio::time::sleep(cfg.warmup).await;
    let cpu_before = server.cpu_time();
    flags.measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    flags.measuring.store(false, Ordering::SeqCst);
    let elapsed = start.elapsed();
    let server_cpu = server.cpu_time().saturating_sub(cpu_before);
    flags.stop.store(true, Ordering::SeqCst);

    let mut out = LoadOutcome { ok: 0, errors: 0, cookies_set: 0, elapsed, latency: histogram(), server_cpu };
    for t in tasks {
        let c = t.await.map_err(|e| format!("a load connection panicked: {e}"))??;
        out.ok += c.ok;
        out.errors += c.errors;
        out.cookies_set += c.cookies_set;
        out.latency.add(&c.latency).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

async fn connection(
    addr: SocketAddr,
    login: Option<&'static str>,
    path: &'static str,
    flags: &Flags,
) -> Result<ConnOutcome, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut conn = Conn { stream, buf: Vec::with_capacity(8192), req: Vec::with_capacity(512), cookie: None };
    let mut out = ConnOutcome { ok: 0, errors: 0, cookies_set: 0, latency: histogram() };
    if let Some(login) = login {
        let (method, target) = login.split_once(' ').expect("METHOD PATH");
        let r = conn.request(method, target).await?;
        if r.status != 200 {
            return Err(format!("{login} answered {}", r.status));
        }
    }
    while !flags.stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let r = conn.request("GET", path).await?;
        let ns = t0.elapsed().as_nanos() as u64;
        if flags.measuring.load(Ordering::Relaxed) {
            if r.status == 200 {
                out.ok += 1;
            } else {
                out.errors += 1;
            }
            if r.set_cookie {
                out.cookies_set += 1;
            }
            let _ = out.latency.record(ns.max(1));
        }
    }
    Ok(out)
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    req: Vec<u8>,
    /// `name=value` of the session cookie, as a browser would send it back.
    cookie: Option<String>,
}

struct Answer {
    status: u16,
    set_cookie: bool,
}

impl Conn {
    async fn request(&mut self, method: &str, path: &str) -> Result<Answer, String> {
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n");
        if method == "POST" {
            self.req.extend_from_slice(b"Content-Length: 0\r\n");
        }
        if let Some(c) = &self.cookie {
            self.req.extend_from_slice(b"Cookie: ");
            self.req.extend_from_slice(c.as_bytes());
            self.req.extend_from_slice(b"\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.req).await.map_err(|e| format!("write: {e}"))?;

        self.buf.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf).map_err(|e| format!("bad response: {e}"))? {
                httparse::Status::Complete(head) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut length = 0usize;
                    let mut set_cookie = None;
                    for h in parsed.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                        } else if h.name.eq_ignore_ascii_case("set-cookie") {
                            // Keep `name=value`, drop the attributes.
                            let v = h.value.split(|&b| b == b';').next().unwrap_or_default();
                            set_cookie = Some(String::from_utf8_lossy(v).into_owned());
                        }
                    }
                    while self.buf.len() < head + length {
                        self.fill().await?;
                    }
                    let changed = set_cookie.is_some();
                    if let Some(c) = set_cookie {
                        // An emptied cookie is a deletion.
                        self.cookie = if c.ends_with('=') { None } else { Some(c) };
                    }
                    return Ok(Answer { status, set_cookie: changed });
                }
                httparse::Status::Partial => self.fill().await?,
            }
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        let n = self.stream.read(&mut self.buf[len..]).await.map_err(|e| format!("read: {e}"))?;
        self.buf.truncate(len + n);
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        Ok(())
    }
}
