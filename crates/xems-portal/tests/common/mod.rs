//! What the portal's process-level tests share: starting `xems-portal`, a
//! guard that stops it, and a plain HTTP/1.1 client.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Kills a child process when dropped, so a failing test leaves nothing
/// running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `xems-portal` on a free port with `args` after `--listen`, logs
/// at warn on the test's stderr (or at TRACE into the capture directory);
/// returns it with its first line (which names its address and store) and
/// its base URL.
pub fn start_portal(args: &[&str]) -> (Running, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xems-portal"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = xems_testkit::logs::child(&mut cmd, "portal").spawn().expect("start xems-portal");
    let stdout = child.stdout.take().expect("piped stdout");
    let running = Running(child);
    let line = first_line(stdout);
    let base = base_url(&line);
    (running, line, base)
}

/// The first line a portal prints.
pub fn first_line(stdout: impl Read) -> String {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the portal's first line");
    line
}

/// The `http://` address in a portal's first line.
pub fn base_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in the portal's first line: {line:?}"))
        .to_owned()
}

/// One HTTP/1.1 request: the status, the session cookie set (if any) and
/// the JSON body.
pub fn http(base: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect to the portal");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let set_cookie =
        head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).map(|v| v.split(';').next().unwrap().to_owned());
    (status, set_cookie, serde_json::from_str(body).unwrap_or(Value::Null))
}
