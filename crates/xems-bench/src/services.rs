//! Services a benchmark starts for itself: free loopback ports, a
//! `redis-server` (standalone, with or without AOF) and a 3-master Redis
//! Cluster, each in a temporary directory and killed on drop.
//!
//! The bench never installs anything: when `redis-server` is missing it fails
//! with a message saying what to install.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustix::process::{WaitId, WaitIdOptions};
use serde::Serialize;
use tempfile::TempDir;

use crate::resp::{Conn, Reply};

/// A loopback port that was free a moment ago (bind to port 0, read the
/// port, release it). Another process could take it in between; the
/// services below fail clearly if that happens.
///
/// # Errors
///
/// No port could be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// A free loopback port `p` such that `p + offset` is free too (Redis
/// Cluster's bus listens on `port + 10000`).
///
/// # Errors
///
/// No such pair found after many tries.
pub fn free_port_with_companion(offset: u16) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let p = l.local_addr()?.port();
        let Some(companion) = p.checked_add(offset) else { continue };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, companion)).is_ok() {
            return Ok(p);
        }
    }
    bail!("found no free loopback port p with p+{offset} free as well")
}

/// The path of a program on `PATH`.
///
/// # Errors
///
/// Not found: the message names the Debian package to install.
pub fn require_program(program: &str, debian_package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("`{program}` was not found on PATH: install it with `apt-get install -y {debian_package}` (Debian package)")
}

/// Redis's `appendfsync` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendFsync {
    /// fsync after every write.
    Always,
    /// fsync once a second.
    EverySec,
    /// leave it to the OS.
    No,
}

impl AppendFsync {
    fn as_arg(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::EverySec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

/// How a Redis server persists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// No RDB snapshots, no AOF.
    Off,
    /// An append-only file with this fsync policy (and no RDB snapshots).
    Aof(AppendFsync),
}

/// A `redis-server` process on a free loopback port, in its own temporary
/// directory, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// The server's process id (to sample its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a standalone server and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// `redis-server` missing, or it did not come up (the error carries the
    /// end of its log).
    pub fn start(persistence: Persistence) -> anyhow::Result<Self> {
        let port = free_port()?;
        Self::spawn(port, persistence, &[], None)
    }

    /// As [`RedisServer::start`], on the CPUs of `placement` only.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub fn start_on(persistence: Persistence, placement: &Placement) -> anyhow::Result<Self> {
        let port = free_port()?;
        Self::spawn(port, persistence, &[], Some(placement))
    }

    fn spawn(port: u16, persistence: Persistence, extra: &[&str], on: Option<&Placement>) -> anyhow::Result<Self> {
        let bin = require_program("redis-server", "redis-server")?;
        let dir = tempfile::Builder::new().prefix("xems-bench-redis-").tempdir()?;
        let mut cmd = pinned_command(bin, on.map(|p| &p.server_cpus[..]));
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(["--save", ""]);
        match persistence {
            Persistence::Off => {
                cmd.args(["--appendonly", "no"]);
            }
            Persistence::Aof(fsync) => {
                cmd.args(["--appendonly", "yes", "--appendfsync", fsync.as_arg()]);
            }
        }
        cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().context("starting redis-server")?;
        let mut server = RedisServer { child, port, dir };
        server.wait_ready(Duration::from_secs(10))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("redis-server on port {}", self.port);
        let log = self.dir.path().join("redis.log");
        let ping = |s: &Self| {
            let reply =
                Conn::connect(s.addr(), Duration::from_millis(200)).ok().and_then(|mut c| c.cmd(&[b"PING"]).ok());
            matches!(reply, Some(Reply::Simple(r)) if r == "PONG")
        };
        wait_until_ready(self, |s| &mut s.child, &what, &log, timeout, ping)
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("redis.log"))
    }

    /// For a failed case's error: whether the server still runs (or how it
    /// ended: exit status or signal), then the end of its log.
    pub fn diagnostics(&self) -> String {
        format!("{}; its log ends with:\n{}", process_state(self.pid()), self.log_tail())
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory (where the AOF lives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new blocking setup connection.
    ///
    /// # Errors
    ///
    /// Connection failed.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        Ok(Conn::connect(self.addr(), Duration::from_secs(10))?)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `xems serve` process on a free loopback TCP port with a random shared
/// auth token, killed on drop.
#[derive(Debug)]
pub struct XemsServer {
    child: Child,
    port: u16,
    token: String,
    dir: TempDir,
}

impl XemsServer {
    /// The server's process id (to sample its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `xems serve` and waits until it answers an authenticated
    /// `ping`. The binary is `$XEMS_BIN`, else `xems` next to this
    /// executable (the same target directory), else `xems` on `PATH`.
    ///
    /// # Errors
    ///
    /// The binary is missing (the message says how to build it), or it did
    /// not come up within 10 s (the error carries its log).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[], None)
    }

    /// As [`XemsServer::start`] with more arguments for `xems serve`, on
    /// the CPUs of `placement` if given.
    ///
    /// # Errors
    ///
    /// As [`XemsServer::start`].
    pub fn start_with(args: &[&str], placement: Option<&Placement>) -> anyhow::Result<Self> {
        let bin = xems_binary()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new().prefix("xems-bench-serve-").tempdir()?;
        let mut raw = [0u8; 24];
        xems_core::random_bytes(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let log = std::fs::File::create(dir.path().join("xems.log"))?;
        let child = pinned_command(&bin, placement.map(|p| &p.server_cpus[..]))
            .args(["serve", "--listen", &format!("tcp://127.0.0.1:{port}")])
            .args(args)
            .env("XEMS_AUTH_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = XemsServer { child, port, token, dir };
        server.wait_ready(Duration::from_secs(10))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("xems serve on port {}", self.port);
        let log = self.dir.path().join("xems.log");
        let ping = |s: &Self| {
            s.connect()
                .and_then(|mut c| c.exchange(&[br#"{"action":"ping"}"#.to_vec()]))
                .is_ok_and(|lines| lines[0].contains("pong"))
        };
        wait_until_ready(self, |s| &mut s.child, &what, &log, timeout, ping)
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("xems.log"))
    }

    /// For a failed case's error: whether the server still runs (or how it
    /// ended: exit status or signal), then the end of its log.
    pub fn diagnostics(&self) -> String {
        format!("{}; its log ends with:\n{}", process_state(self.pid()), self.log_tail())
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it is still running (`Err` holds how it ended).
    ///
    /// # Errors
    ///
    /// The process has exited, or its state could not be read.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("xems serve exited ({status}); its log:\n{}", self.log_tail()),
        }
    }

    /// The `auth` line (with its newline) a TCP client sends first.
    pub fn auth_line(&self) -> Vec<u8> {
        format!("{{\"action\":\"auth\",\"token\":\"{}\"}}\n", self.token).into_bytes()
    }

    /// A new blocking, authenticated setup connection.
    ///
    /// # Errors
    ///
    /// Connection or authentication failed.
    pub fn connect(&self) -> anyhow::Result<JsonLines> {
        let stream = std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let mut c = JsonLines { reader: std::io::BufReader::new(stream.try_clone()?), writer: stream };
        let answer = c.exchange(&[self.auth_line().trim_ascii_end().to_vec()])?;
        if !answer[0].contains(r#""status":"ok""#) {
            bail!("xems serve refused the auth token: {}", answer[0]);
        }
        Ok(c)
    }
}

impl Drop for XemsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking JSON-lines connection for setting up a benchmark.
#[derive(Debug)]
pub struct JsonLines {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl JsonLines {
    /// Sends the request lines (without newlines) in one write and reads one
    /// answer line per request.
    ///
    /// # Errors
    ///
    /// I/O failure or an early close.
    pub fn exchange(&mut self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<String>> {
        use std::io::{BufRead as _, Write as _};
        let mut out = Vec::new();
        for r in requests {
            out.extend_from_slice(r);
            out.push(b'\n');
        }
        self.writer.write_all(&out)?;
        let mut answers = Vec::with_capacity(requests.len());
        for _ in requests {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("xems serve closed the connection");
            }
            answers.push(line.trim_end().to_owned());
        }
        Ok(answers)
    }
}

/// The `xems` binary: `$XEMS_BIN`, else `xems` next to this executable (the
/// same target directory), else `xems` on `PATH`.
///
/// # Errors
///
/// Not found (the message says how to build it).
pub fn xems_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("XEMS_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        // Test binaries live one level down, in deps/.
        for candidate in [dir.join("xems"), dir.join("../xems")] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    require_program("xems", "xems").map_err(|_| {
        anyhow::anyhow!(
            "the `xems` binary was not found next to xems-bench nor on PATH: build it with \
             `cargo build --release -p xems-server` (same target directory), or set XEMS_BIN"
        )
    })
}

/// A Redis Cluster of `masters` masters and no replicas on free loopback
/// ports, each node in its own temporary directory, all killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create` and
    /// waits until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// A program is missing, a node did not start, or the cluster did not
    /// converge within 30 s.
    pub fn start(masters: usize) -> anyhow::Result<Self> {
        if masters < 3 {
            bail!("a Redis Cluster needs at least 3 masters, asked for {masters}");
        }
        let cli = require_program("redis-cli", "redis-tools")?;
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            let port = free_port_with_companion(10_000)?;
            nodes.push(RedisServer::spawn(
                port,
                Persistence::Off,
                &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
                None,
            )?);
        }
        let out = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_ok(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        'retry: loop {
            for n in &self.nodes {
                let info = n.connect()?.cmd_ok(&[b"CLUSTER", b"INFO"])?.as_text().unwrap_or_default();
                if !info.contains("cluster_state:ok") {
                    if Instant::now() > deadline {
                        bail!("the cluster did not reach cluster_state:ok within {timeout:?}:\n{info}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'retry;
                }
            }
            return Ok(());
        }
    }

    /// The nodes' addresses (seed nodes for a cluster client).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_bind() {
        let p = free_port().unwrap();
        assert!(p > 0);
        let q = free_port_with_companion(10_000).unwrap();
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, q)).is_ok());
    }

    #[test]
    fn missing_program_names_the_package() {
        let e = require_program("surely-not-a-program-xyz", "some-package").unwrap_err().to_string();
        assert!(e.contains("apt-get install -y some-package"), "{e}");
    }

    /// The state probe sees a running child, then how it ended, without
    /// reaping it: the owner's `wait` still gets the same status.
    #[test]
    fn process_state_reports_running_exit_and_signal_without_reaping() {
        let mut running = Command::new("sleep").arg("30").spawn().unwrap();
        assert_eq!(process_state(running.id()), "still running");
        running.kill().unwrap();
        let mut exited = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while process_state(exited.id()) == "still running" && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(process_state(exited.id()), "exited with status 3");
        assert_eq!(exited.wait().unwrap().code(), Some(3), "the probe must not reap the child");
        assert!(process_state(exited.id()).starts_with("state unknown"), "a reaped child has no state");
        while process_state(running.id()) == "still running" && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(process_state(running.id()), "killed by signal 9");
        running.wait().unwrap();
    }

    /// Starts real servers: needs the Debian `redis-server` package (the
    /// test fails, never skips, without it).
    #[test]
    fn redis_standalone_and_cluster_start_and_stop() {
        let server = RedisServer::start(Persistence::Off).unwrap();
        let mut c = server.connect().unwrap();
        assert_eq!(c.cmd_ok(&[b"SET", b"k", b"v"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(c.cmd_ok(&[b"GET", b"k"]).unwrap(), Reply::Bulk(Some(b"v".to_vec())));
        let addr = server.addr();
        drop(server);
        assert!(Conn::connect(addr, Duration::from_millis(200)).is_err(), "the server outlived its handle");

        let aof = RedisServer::start(Persistence::Aof(AppendFsync::Always)).unwrap();
        let mut c = aof.connect().unwrap();
        let cfg = c.cmd_ok(&[b"CONFIG", b"GET", b"appendfsync"]).unwrap();
        assert_eq!(
            cfg,
            Reply::Array(Some(vec![Reply::Bulk(Some(b"appendfsync".to_vec())), Reply::Bulk(Some(b"always".to_vec()))]))
        );

        let cluster = RedisCluster::start(3).unwrap();
        assert_eq!(cluster.addrs().len(), 3);
    }
}

/// Where a benchmark runs its server and its load generator: on a machine
/// with at least two CPUs, the server on CPU 0 and the generator on the
/// others, so neither steals the other's time and a multi-threaded server
/// gets exactly the core a single-threaded one uses.
#[derive(Clone, Debug, Serialize)]
pub struct Placement {
    /// CPUs of the server (a `taskset -c` list).
    pub server_cpus: String,
    /// CPUs of the load generator.
    pub generator_cpus: Vec<usize>,
}

impl Placement {
    /// Server on CPU 0, generator on the rest; `None` on a single CPU or
    /// without `taskset` (util-linux).
    pub fn split() -> Option<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if cpus < 2 || require_program("taskset", "util-linux").is_err() {
            return None;
        }
        Some(Placement { server_cpus: "0".into(), generator_cpus: (1..cpus).collect() })
    }

    /// Pins the calling thread (and the threads it starts from now on) to
    /// the generator's CPUs.
    ///
    /// # Errors
    ///
    /// The kernel refused the affinity.
    pub fn pin_generator(&self) -> anyhow::Result<()> {
        let mut set = rustix::thread::CpuSet::new();
        for &c in &self.generator_cpus {
            set.set(c);
        }
        rustix::thread::sched_setaffinity(None, &set).context("pinning the load generator")?;
        Ok(())
    }
}

/// `program`, or `taskset -c CPUS program` when `cpus` is given (taskset
/// execs the program, so the child's pid is the program's).
fn pinned_command(program: impl AsRef<std::ffi::OsStr>, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Polls `ready` every 20 ms until it answers true, the child exits, or
/// `timeout` passes; the errors quote the end of the child's log.
fn wait_until_ready<S>(
    server: &mut S,
    child: impl Fn(&mut S) -> &mut Child,
    what: &str,
    log: &Path,
    timeout: Duration,
    ready: impl Fn(&S) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child(server).try_wait()? {
            bail!("{what} exited at start ({status}); its log:\n{}", log_tail(log));
        }
        if ready(server) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer within {timeout:?}; its log:\n{}", log_tail(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the child `pid` is still running, or how it ended, read without
/// reaping it (`WNOWAIT`), so the owner's `Child` can still wait for it
/// and this needs no `&mut` (the bench's case closures share the server).
fn process_state(pid: u32) -> String {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return format!("pid {pid} not valid");
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match rustix::process::waitid(WaitId::Pid(pid), options) {
        Ok(None) => "still running".to_owned(),
        Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended (no status)".to_owned(),
        },
        // Already reaped by its owner, or not our child.
        Err(e) => format!("state unknown ({e})"),
    }
}

/// The last 15 lines of a log file (empty if it cannot be read).
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
