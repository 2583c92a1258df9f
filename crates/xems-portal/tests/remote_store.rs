//! `xems-portal --store unix://PATH`: the binary keeps its sessions in an
//! `xems serve` server (run in this test's process on a Unix socket).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use xems_core::SessionStore as _;
use xems_server::{ConnConfig, ListenAddr, ServeConfig};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request: the status, the session cookie set (if any) and
/// the JSON body.
fn http(base: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect to the portal");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_keeps_its_sessions_in_xems_serve() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("xems.sock");
    xems_testkit::logs::capture();
    let store = xems_engine::Engine::builder().build().unwrap();
    let shutdown = CancellationToken::new();
    let cfg = ServeConfig {
        listen: vec![ListenAddr::Unix(socket.clone())],
        max_connections: 64,
        shutdown_grace: Duration::from_secs(1),
        conn: ConnConfig {
            max_line: 1 << 20,
            auth_token: None,
            auth_timeout: Duration::from_secs(10),
            test_hooks: None,
        },
    };
    let server = tokio::spawn(xems_server::serve(store.clone(), cfg, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "xems serve did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut child = xems_testkit::logs::child(
        Command::new(env!("CARGO_BIN_EXE_xems-portal"))
            .args(["--listen", "127.0.0.1:0", "--store", &format!("unix://{}", socket.display())])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        "portal",
    )
    .spawn()
    .expect("start xems-portal");
    let stdout = child.stdout.take().unwrap();
    let _portal = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("store: unix://"), "{line}");
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).expect("an address").to_owned();

    let result = tokio::task::spawn_blocking(move || {
        let login = r#"{"email":"demo@xems.dev","password":"correct-horse-battery"}"#;
        let (status, pending, _) = http(&base, "POST", "/api/login", None, login);
        assert_eq!(status, 200);
        let pending = pending.expect("the pending cookie");
        let (status, _, totp) = http(&base, "GET", "/api/demo/totp", Some(&pending), "");
        assert_eq!(status, 200);
        let code = totp["code"].as_str().unwrap().to_owned();
        let (status, active, _) = http(&base, "POST", "/api/mfa", Some(&pending), &format!(r#"{{"code":"{code}"}}"#));
        assert_eq!(status, 200);
        let active = active.expect("the active cookie");
        let (status, next, me) = http(&base, "GET", "/api/me", Some(&active), "");
        assert_eq!((status, me["email"].as_str()), (200, Some("demo@xems.dev")));
        next.expect("rotated")
    })
    .await
    .unwrap();

    // The session lives in the server's store, not in the portal.
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.sandbox("active").map(|s| s.records), Some(1));
    assert_eq!(stats.sandbox("otp-pending").map_or(0, |s| s.records), 0, "the pending session migrated");
    assert!(stats.counters.migrated >= 1 && stats.counters.rotated >= 1);

    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let (status, cleared, _) =
        tokio::task::spawn_blocking(move || http(&base, "POST", "/api/logout", Some(&result), "")).await.unwrap();
    assert_eq!((status, cleared.as_deref().map(|c| c.ends_with('='))), (200, Some(true)));
    assert_eq!(store.stats().await.unwrap().sandbox("active").map_or(0, |s| s.records), 0);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
