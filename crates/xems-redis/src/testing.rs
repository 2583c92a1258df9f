//! Throwaway Redis servers for tests and benchmarks: a standalone server
//! or a Cluster of masters, on free loopback ports, in temporary
//! directories, stopped when dropped.
//!
//! A missing `redis-server` binary is an error whose message says how to
//! install it (`apt-get install redis-server`; `scripts/test.sh` does it):
//! tests that need Redis fail, they never skip.
//!
//! Each server is also watched by a small shell loop that stops it when the
//! process that started it exits, so a server kept in a `static` for a
//! whole test binary does not outlive the tests.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "redis-server was not found on PATH: install it with `apt-get install redis-server` (./scripts/test.sh does this)";

/// How long a server gets to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn not_found(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound { io::Error::new(io::ErrorKind::NotFound, INSTALL_HINT) } else { e }
}

/// Whether `redis-server` can be run.
///
/// # Errors
///
/// It cannot: the message says how to install it.
pub fn require_redis_server() -> io::Result<()> {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(not_found)
        .and_then(|s| if s.success() { Ok(()) } else { Err(io::Error::other("redis-server --version failed")) })
}

/// A free loopback port whose Cluster bus port (+10000) is free too.
fn free_port() -> io::Result<u16> {
    for _ in 0..64 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair found"))
}

fn temp_dir(tag: &str) -> io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "xems-redis-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs a command against `port` and returns its reply (sync client).
fn query(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    cmd.query(&mut conn)
}

/// Options of a standalone server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Keep data across restarts (append-only file, fsync on every write).
    pub persist: bool,
    /// Run as a Cluster node.
    pub cluster: bool,
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    options: ServerOptions,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer").field("port", &self.port).field("running", &self.child.is_some()).finish()
    }
}

impl RedisServer {
    /// Starts a standalone server without persistence.
    ///
    /// # Errors
    ///
    /// `redis-server` is missing (the message says how to install it) or
    /// did not start.
    pub fn start() -> io::Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with options.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(options: ServerOptions) -> io::Result<Self> {
        require_redis_server()?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let dir = temp_dir(&port.to_string())?;
            let mut server = RedisServer { port, dir, options: options.clone(), child: None, watchdog: None };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(&self.dir)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"])
            .args(["--logfile", "redis.log"]);
        if self.options.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        if self.options.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "3000"]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(not_found)?;
        let pid = child.id();
        self.child = Some(child);
        self.watchdog = spawn_watchdog(pid, &self.dir).ok();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                self.child = None;
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(io::Error::other(format!("redis-server exited at start ({status}): {log}")));
            }
            if query(self.port, &redis::cmd("PING")).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::other(format!("redis-server on port {} did not answer", self.port)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would), keeping its directory.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port and directory.
    ///
    /// # Errors
    ///
    /// It did not start.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.launch()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Runs a command on this server.
    ///
    /// # Errors
    ///
    /// The server refused it or cannot be reached.
    pub fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        query(self.port, cmd)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the server `pid` (and removes `dir`) once this process is gone.
fn spawn_watchdog(pid: u32, dir: &Path) -> io::Result<Child> {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null; rm -rf '{}'",
        dir.display()
    );
    Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
}

/// A Redis Cluster of masters without replicas, all 16384 slots assigned.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes, assigns the slots evenly, joins them and waits
    /// until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// `redis-server` is missing (the message says how to install it), or
    /// the cluster did not form in time.
    pub fn start(masters: usize) -> io::Result<Self> {
        let opts = ServerOptions { cluster: true, ..ServerOptions::default() };
        let nodes = (0..masters).map(|_| RedisServer::start_with(opts.clone())).collect::<io::Result<Vec<_>>>()?;
        let err = |e: redis::RedisError| io::Error::other(format!("forming the cluster: {e}"));
        let per = 16384 / masters;
        for (i, node) in nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == masters { 16383 } else { (i + 1) * per - 1 };
            node.query(redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1)).map_err(err)?;
            node.query(redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last)).map_err(err)?;
        }
        for node in &nodes[1..] {
            nodes[0].query(redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(node.port())).map_err(err)?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = nodes.iter().all(|n| {
                let info = n.query(redis::cmd("CLUSTER").arg("INFO"));
                let text = match info {
                    Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Ok(redis::Value::VerbatimString { text, .. }) => text,
                    _ => String::new(),
                };
                text.contains("cluster_state:ok") && text.contains(&format!("cluster_known_nodes:{masters}"))
            });
            if ready {
                return Ok(RedisCluster { nodes });
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the cluster did not reach cluster_state:ok in time"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `redis+cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}
