//! `xems serve`: the auth handshake, Unix socket permissions, connection
//! limits, per-connection ordering and graceful shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{LineConn, Server, TOKEN, assert_json};

#[test]
fn tcp_requires_auth_first() {
    let server = Server::start(&[]);
    let mut c = LineConn::tcp(server.tcp());
    let r = c.ask(r#"{"action":"ping","id":1}"#);
    assert_eq!(r["status"], "error");
    assert_eq!(r["code"], "unauthorized");
    assert_eq!(r["id"], 1);
    let r = c.ask(r#"{"action":"set","sandbox":"s","key":"k","value":"v"}"#);
    assert_eq!(r["code"], "unauthorized");
    assert_json(&c.ask(&format!(r#"{{"action":"auth","token":"{TOKEN}"}}"#)), r#"{"status":"ok"}"#);
    assert_json(&c.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
}

#[test]
fn wrong_token_is_refused_and_the_connection_closed() {
    let server = Server::start(&[]);
    let mut c = LineConn::tcp(server.tcp());
    let r = c.ask(r#"{"action":"auth","token":"not-the-token-at-all"}"#);
    assert_json(&r, r#"{"status":"error","error":"wrong auth token","code":"unauthorized"}"#);
    assert!(c.at_eof(), "the server hangs up after a failed auth");
    assert!(!server.log().contains("not-the-token-at-all"), "tokens never reach the log");
}

#[test]
fn unix_socket_is_private_and_needs_no_auth() {
    let server = Server::start(&[]);
    let path = server.unix.clone().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let mut c = LineConn::unix(&path);
    assert_json(&c.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
    // A client may still authenticate on a Unix socket.
    assert_json(&c.ask(&format!(r#"{{"action":"auth","token":"{TOKEN}"}}"#)), r#"{"status":"ok"}"#);
}

#[test]
fn one_store_many_clients() {
    let server = Server::start(&[]);
    let mut a = LineConn::tcp_authed(server.tcp());
    let mut b = LineConn::unix(server.unix.as_ref().unwrap());
    assert_json(&a.ask(r#"{"action":"set","sandbox":"shared","key":"k","value":"from-a"}"#), r#"{"status":"ok"}"#);
    assert_json(&b.ask(r#"{"action":"get","sandbox":"shared","key":"k"}"#), r#"{"status":"ok","data":"from-a"}"#);
}

#[test]
fn pipelined_requests_are_answered_in_order_per_connection() {
    // Default threads (the multi-threaded scheduler) and one thread (the
    // single-threaded one).
    for extra in [&[][..], &["--threads", "1"][..]] {
        pipelined_in_order(extra);
    }
}

fn pipelined_in_order(extra: &[&str]) {
    let server = Server::start(extra);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = server.tcp().to_owned();
            std::thread::spawn(move || {
                let mut c = LineConn::tcp_authed(&addr);
                let mut batch = String::new();
                for i in 0..500 {
                    batch.push_str(&format!(
                        r#"{{"action":"set","id":{i},"sandbox":"p","key":"t{t}-{i}","value":"{t}-{i}"}}"#
                    ));
                    batch.push('\n');
                    batch.push_str(&format!(r#"{{"action":"get","id":"g{i}","sandbox":"p","key":"t{t}-{i}"}}"#));
                    batch.push('\n');
                }
                c.send(batch.as_bytes());
                for i in 0..500 {
                    assert_json(&c.recv(), &format!(r#"{{"id":{i},"status":"ok"}}"#));
                    assert_json(&c.recv(), &format!(r#"{{"id":"g{i}","status":"ok","data":"{t}-{i}"}}"#));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn connection_limit() {
    let server = Server::start(&["--max-connections", "2"]);
    let mut a = LineConn::tcp_authed(server.tcp());
    let mut b = LineConn::tcp_authed(server.tcp());
    let mut c = LineConn::tcp(server.tcp());
    let r = c.recv();
    assert_eq!(r["code"], "too_many_connections", "{r}");
    assert!(c.at_eof());
    drop(b.ask(r#"{"action":"ping"}"#));
    drop(b);
    // The freed slot is usable again (the server notices the close quickly).
    let mut ok = false;
    for _ in 0..100 {
        let mut d = LineConn::tcp(server.tcp());
        let r = d.ask(&format!(r#"{{"action":"auth","token":"{TOKEN}"}}"#));
        if r["status"] == "ok" {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "a slot frees up when a client leaves");
    assert_json(&a.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
}

#[test]
fn sigterm_finishes_in_flight_work_and_exits_zero() {
    for extra in [&[][..], &["--threads", "1"][..]] {
        sigterm_graceful(extra);
    }
}

fn sigterm_graceful(extra: &[&str]) {
    let mut server = Server::start(extra);
    let sock = server.unix.clone().unwrap();
    let mut c = LineConn::tcp_authed(server.tcp());
    let mut batch = String::new();
    for i in 0..2000 {
        batch.push_str(&format!(r#"{{"action":"set","sandbox":"s","key":"k{i}","value":"v"}}"#));
        batch.push('\n');
    }
    c.send(batch.as_bytes());
    // Wait for the first answer so the batch is in flight, then stop.
    assert_json(&c.recv(), r#"{"status":"ok"}"#);
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    // What was read before the signal is answered with whole lines, in
    // order, then the connection closes cleanly.
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut c.reader, &mut line).map(|n| n > 0).unwrap_or(false) {
        assert_eq!(line, "{\"status\":\"ok\"}\n");
        line.clear();
    }
    assert!(!sock.exists(), "the socket file is removed on shutdown");
    assert!(server.log().contains("shutting down"), "{}", server.log());
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("xems.sock");
    // A socket file left behind by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let server = Server::start_with(dir, &sock, "tcp://127.0.0.1:0", &[]);
    let mut c = LineConn::unix(&sock);
    assert_json(&c.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);

    // A second server must not steal the live socket.
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["serve", "--listen", &format!("unix://{}", sock.display())]);
    let out = xems_testkit::logs::output(&mut cmd, "serve").unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another server is listening"), "{out:?}");
    drop(server);

    // A regular file is never removed.
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["serve", "--listen", &format!("unix://{}", file.path().display())]);
    let out = xems_testkit::logs::output(&mut cmd, "serve").unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"), "{out:?}");
    assert!(file.path().exists());
}

#[test]
fn tcp_without_a_token_refuses_to_start() {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["serve", "--listen", "tcp://127.0.0.1:0"])
        .env_remove("XEMS_AUTH_TOKEN")
        .env_remove("XEMS_AUTH_TOKEN_FILE");
    let out = xems_testkit::logs::output(&mut cmd, "serve").unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth token"), "{out:?}");
}

/// `xems serve` raises its soft open-file limit to the hard limit at start,
/// so it can hold as many connections as the administrator allows (the
/// soft default is often 1024). Started from a shell that lowers the soft
/// limit first; the limits are read back from `/proc/PID/limits`.
#[test]
fn serve_raises_its_open_file_limit() {
    let hard: u64 = {
        let out = std::process::Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(u64::MAX)
    };
    let low = 64.min(hard);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let mut child = xems_testkit::logs::child(
        std::process::Command::new("sh")
            .args(["-c", &format!("ulimit -Sn {low} && exec \"$0\" serve --listen \"unix://$1\""), common::BIN])
            .arg(&sock)
            .env("XEMS_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        "serve",
    )
    .spawn()
    .unwrap();
    // Ready once the socket answers.
    let mut ready = false;
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "xems serve did not come up");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard_seen) = (fields[3], fields[4]);
    assert_eq!(soft, hard_seen, "the soft limit was not raised to the hard one: {line}");
    if hard > low {
        assert_ne!(soft, low.to_string(), "{line}");
    }
}
