//! Hostile and broken input: every bad line gets one clear error line (or the
//! connection is closed cleanly), the process stays up, and other clients'
//! data is untouched.

mod common;

use std::io::Write;

use common::{LineConn, Server, Sidecar, assert_json};

/// Lines that must each get exactly one error response with this code.
const BAD_LINES: &[(&[u8], &str)] = &[
    (b"this is not json", "bad_request"),
    (b"{\"action\":\"set\",", "bad_request"),
    (b"[\"ping\"]", "bad_request"),
    (b"42", "bad_request"),
    (b"", "bad_request"),
    (b"   ", "bad_request"),
    (b"{\"action\":42}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":[1]}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":\"k\",\"rotate\":\"yes\"}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":\"k\",\"grace_period\":\"1s\"}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":\"k\",\"grace_period\":99999999999999999999999}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":\"k\",\"grace_period\":60000}", "invalid_argument"),
    (b"{\"action\":\"set\",\"sandbox\":\"s\",\"key\":\"k\",\"value\":true}", "bad_request"),
    (b"{\"action\":\"set\",\"sandbox\":\"s\",\"key\":\"k\",\"value\":\"v\",\"ttl\":15}", "bad_request"),
    (b"{\"action\":\"set\",\"sandbox\":\"s\",\"key\":\"k\",\"value\":\"v\",\"ttl\":\"forever\"}", "invalid_duration"),
    (b"{\"action\":\"teleport\"}", "unknown_action"),
    (b"{\"sandbox\":\"s\"}", "bad_request"),
    (b"{\"action\":\"set\",\"sandbox\":\"s\",\"value\":\"v\"}", "bad_request"),
    (b"{\"action\":\"set\",\"sandbox\":\"s\",\"key\":\"k\"}", "bad_request"),
    (b"{\"action\":\"get\",\"key\":\"k\"}", "bad_request"),
    (b"{\"action\":\"get\",\"sandbox\":\"no/slash\",\"key\":\"k\"}", "invalid_sandbox"),
    (b"{\"action\":\"get\",\"sandbox\":\"s\",\"key\":\"\"}", "invalid_key"),
    (b"\xff\xfe\x00garbage\x80", "bad_request"),
    (b"{\"action\":\"ping\",\"x\":\"\xff\"}", "bad_request"),
];

fn check_bad_lines(mut send: impl FnMut(&[u8]), mut recv: impl FnMut() -> serde_json::Value) {
    for (line, code) in BAD_LINES {
        let mut l = line.to_vec();
        l.push(b'\n');
        send(&l);
        let r = recv();
        assert_eq!(r["status"], "error", "{:?} -> {r}", String::from_utf8_lossy(line));
        assert_eq!(r["code"], *code, "{:?} -> {r}", String::from_utf8_lossy(line));
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }
}

#[test]
fn stdio_answers_every_bad_line_and_keeps_going() {
    let mut x = Sidecar::spawn(&[]);
    assert_json(&x.ask(r#"{"action":"set","sandbox":"keep","key":"k","value":"safe"}"#), r#"{"status":"ok"}"#);
    let x2 = std::cell::RefCell::new(x);
    check_bad_lines(|l| x2.borrow_mut().send(l), || x2.borrow_mut().recv());
    let mut x = x2.into_inner();
    // The id is echoed even when the line is otherwise wrong.
    let r = x.ask(r#"{"id":"q9","action":"get","sandbox":"s","key":{"a":1}}"#);
    assert_eq!(r["id"], "q9");
    assert_eq!(r["code"], "bad_request");
    assert_json(&x.ask(r#"{"action":"get","sandbox":"keep","key":"k"}"#), r#"{"status":"ok","data":"safe"}"#);
    assert!(x.close().0.success());
}

#[test]
fn stdio_twenty_megabyte_line() {
    let mut x = Sidecar::spawn(&[]);
    assert_json(&x.ask(r#"{"action":"set","sandbox":"keep","key":"k","value":"safe"}"#), r#"{"status":"ok"}"#);
    let mut big = br#"{"action":"set","sandbox":"s","key":"k","value":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 20 * 1024 * 1024));
    big.extend(b"\"}\n");
    // Write from another thread: the server answers while we still write.
    let mut stdin = x.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&big).unwrap();
        stdin.write_all(b"{\"action\":\"get\",\"sandbox\":\"keep\",\"key\":\"k\"}\n").unwrap();
        stdin.flush().unwrap();
        stdin
    });
    let r = x.recv();
    assert_eq!(r["code"], "line_too_long", "{r}");
    assert!(r["error"].as_str().unwrap().contains("16777216"), "{r}");
    assert_json(&x.recv(), r#"{"status":"ok","data":"safe"}"#);
    x.stdin = Some(writer.join().unwrap());
    assert!(x.close().0.success());
}

#[test]
fn stdio_half_a_line_then_eof() {
    let mut x = Sidecar::spawn(&[]);
    x.send(br#"{"action":"ping"}"#);
    x.send(b"\n");
    x.send(br#"{"action":"set","sandbox":"s","#);
    let (status, rest) = x.close();
    assert!(status.success(), "{status}");
    let lines: Vec<serde_json::Value> = rest.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{rest}");
    assert_eq!(lines[0]["data"], "pong");
    assert_eq!(lines[1]["code"], "bad_request");
}

#[test]
fn stdio_unterminated_valid_line_is_still_answered() {
    let mut x = Sidecar::spawn(&[]);
    x.send(br#"{"action":"ping"}"#);
    let (status, rest) = x.close();
    assert!(status.success());
    assert_eq!(rest, "{\"status\":\"ok\",\"data\":\"pong\"}\n");
}

#[test]
fn network_bad_input_leaves_others_untouched() {
    let mut server = Server::start(&[]);
    let mut keeper = LineConn::tcp_authed(server.tcp());
    assert_json(&keeper.ask(r#"{"action":"set","sandbox":"keep","key":"k","value":"safe"}"#), r#"{"status":"ok"}"#);

    let mut bad = LineConn::tcp_authed(server.tcp());
    let bad = std::cell::RefCell::new(&mut bad);
    check_bad_lines(|l| bad.borrow_mut().send(l), || bad.borrow_mut().recv());

    // A 20 MB line on TCP.
    let mut big_conn = LineConn::tcp_authed(server.tcp());
    let mut big = br#"{"action":"set","sandbox":"keep","key":"k","value":""#.to_vec();
    big.extend(std::iter::repeat_n(b'b', 20 * 1024 * 1024));
    big.extend(b"\"}\n{\"action\":\"ping\"}\n");
    let mut w = big_conn.writer;
    let writer = std::thread::spawn(move || {
        w.write_all(&big).unwrap();
        w.flush().unwrap();
        w
    });
    big_conn.writer = Box::new(std::io::sink());
    assert_eq!(big_conn.recv()["code"], "line_too_long");
    assert_eq!(big_conn.recv()["data"], "pong");
    drop(writer.join().unwrap());

    // Binary garbage, then half a line and a hang-up.
    let mut garbage = LineConn::tcp_authed(server.tcp());
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    garbage.send(&junk);
    garbage.send(b"\n");
    let r = garbage.recv();
    assert_eq!(r["status"], "error");
    let mut half = LineConn::tcp_authed(server.tcp());
    half.send(br#"{"action":"set","sandbox":"keep","key":"k","val"#);
    drop(half);

    assert!(server.alive());
    assert_json(&keeper.ask(r#"{"action":"get","sandbox":"keep","key":"k"}"#), r#"{"status":"ok","data":"safe"}"#);
}

#[test]
fn a_thousand_connections_opened_and_dropped() {
    let mut server = Server::start(&[]);
    let mut keeper = LineConn::tcp_authed(server.tcp());
    assert_json(&keeper.ask(r#"{"action":"set","sandbox":"keep","key":"k","value":"safe"}"#), r#"{"status":"ok"}"#);
    for i in 0..1000 {
        let s = std::net::TcpStream::connect(server.tcp()).expect("connect");
        if i % 3 == 0 {
            // Some send half a request before vanishing.
            let mut s = s;
            let _ = s.write_all(br#"{"action":"set","sand"#);
        }
        if i % 2 == 0 {
            // Some go through Unix sockets.
            let u = std::os::unix::net::UnixStream::connect(server.unix.as_ref().unwrap()).expect("connect unix");
            drop(u);
        }
    }
    assert!(server.alive());
    assert_json(&keeper.ask(r#"{"action":"get","sandbox":"keep","key":"k"}"#), r#"{"status":"ok","data":"safe"}"#);
    let mut fresh = LineConn::tcp_authed(server.tcp());
    assert_json(&fresh.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
}
