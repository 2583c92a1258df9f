//! Spawning the real `xems` binary for integration tests. Every child goes
//! through `xems_testkit::logs`: under the whole-suite log capture it logs
//! at TRACE into the capture directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const BIN: &str = env!("CARGO_BIN_EXE_xems");
pub const TOKEN: &str = xems_testkit::secrets::AUTH_TOKEN;

/// Starts `xems serve` with the arguments and environment `configure`
/// adds to the usual test setup: logs at warn on the test's stderr (or at
/// TRACE into the capture directory), no stdin, no stdout.
pub fn spawn_serve(configure: impl FnOnce(&mut Command) -> &mut Command) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").env("XEMS_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    configure(&mut cmd);
    xems_testkit::logs::child(&mut cmd, "serve").spawn().expect("spawn xems serve")
}

/// A child `xems` in stdio mode.
pub struct Sidecar {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
}

impl Sidecar {
    pub fn spawn(args: &[&str]) -> Sidecar {
        let mut child = xems_testkit::logs::child(
            Command::new(BIN)
                .args(args)
                .env_remove("XEMS_SECRET")
                .env("XEMS_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "sidecar",
        )
        .spawn()
        .expect("spawn xems");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Sidecar { child, stdin, stdout }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to xems");
        stdin.flush().expect("flush");
    }

    pub fn line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// One response line as JSON.
    pub fn recv(&mut self) -> Json {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read from xems");
        assert!(n > 0, "xems closed stdout");
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("response is not JSON ({e}): {s:?}"))
    }

    /// Sends a line and reads its response.
    pub fn ask(&mut self, line: &str) -> Json {
        self.line(line);
        self.recv()
    }

    /// Closes stdin and waits for the exit status.
    pub fn close(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("drain stdout");
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        (status, rest)
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("xems did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child `xems serve`.
pub struct Server {
    pub child: Child,
    pub tcp: Option<String>,
    pub unix: Option<PathBuf>,
    pub stderr: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
    /// Reads stderr to its end; joined on drop, so the last lines reach
    /// the log capture before the test process can exit.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `xems serve` on a free loopback port and a Unix socket in a
    /// temporary directory, with the test auth token.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("xems.sock");
        Self::start_with(dir, &sock, "tcp://127.0.0.1:0", extra)
    }

    pub fn start_with(dir: tempfile::TempDir, sock: &std::path::Path, tcp: &str, extra: &[&str]) -> Server {
        let unix = format!("unix://{}", sock.display());
        let mut args = vec!["serve", "--listen", tcp, "--listen", &unix];
        args.extend_from_slice(extra);
        let mut child = xems_testkit::logs::traced(
            Command::new(BIN)
                .args(&args)
                .env("XEMS_AUTH_TOKEN", TOKEN)
                .env("XEMS_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .expect("spawn xems serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        let tee = xems_testkit::logs::Tee::new("serve");
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tee.line(&line);
                if let Some(pos) = line.find("listener=tcp://") {
                    let addr = line[pos + "listener=tcp://".len()..].split_whitespace().next().unwrap_or("").to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("xems serve did not report a TCP listener; stderr:\n{}", log.lock().unwrap())
        });
        // The Unix listener is bound right after the TCP one; wait for its
        // log line (the path may hold a stale socket until then).
        let wanted = format!("listener={unix}");
        let start = Instant::now();
        while !log.lock().unwrap().contains(&wanted) {
            assert!(start.elapsed() < Duration::from_secs(20), "no unix listener; stderr:\n{}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        Server { child, tcp: Some(addr), unix: Some(sock.to_path_buf()), stderr: log, dir, reader: Some(reader) }
    }

    pub fn tcp(&self) -> &str {
        self.tcp.as_deref().expect("tcp listener")
    }

    pub fn url(&self) -> String {
        format!("xems://{}", self.tcp())
    }

    pub fn unix_url(&self) -> String {
        format!("unix://{}", self.unix.as_ref().expect("unix listener").display())
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success();
        assert!(ok, "kill -TERM failed");
        wait_timeout(&mut self.child, Duration::from_secs(20))
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A blocking line client over TCP or Unix.
pub struct LineConn {
    pub reader: BufReader<Box<dyn Read + Send>>,
    pub writer: Box<dyn Write + Send>,
}

impl LineConn {
    pub fn tcp(addr: &str) -> LineConn {
        let s = std::net::TcpStream::connect(addr).expect("connect tcp");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let w = s.try_clone().unwrap();
        LineConn { reader: BufReader::new(Box::new(s)), writer: Box::new(w) }
    }

    /// A TCP connection that has passed the auth handshake.
    pub fn tcp_authed(addr: &str) -> LineConn {
        let mut c = Self::tcp(addr);
        let r = c.ask(&format!(r#"{{"action":"auth","token":"{TOKEN}"}}"#));
        assert_eq!(r["status"], "ok", "{r}");
        c
    }

    pub fn unix(path: &std::path::Path) -> LineConn {
        let s = std::os::unix::net::UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let w = s.try_clone().unwrap();
        LineConn { reader: BufReader::new(Box::new(s)), writer: Box::new(w) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
        self.writer.flush().expect("flush");
    }

    pub fn recv(&mut self) -> Json {
        let mut s = String::new();
        let n = self.reader.read_line(&mut s).expect("read");
        assert!(n > 0, "server closed the connection");
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("response is not JSON ({e}): {s:?}"))
    }

    /// Whether the server closed the connection (EOF) without another line.
    pub fn at_eof(&mut self) -> bool {
        let mut s = String::new();
        matches!(self.reader.read_line(&mut s), Ok(0))
    }

    pub fn ask(&mut self, line: &str) -> Json {
        self.send(format!("{line}\n").as_bytes());
        self.recv()
    }
}

/// Asserts a response is exactly `expected` (as JSON).
pub fn assert_json(got: &Json, expected: &str) {
    let want: Json = serde_json::from_str(expected).expect("expected is JSON");
    assert_eq!(got, &want);
}
