//! Every host line of PROTOCOL-XYPRISS.md, through the real binary in stdio
//! mode, gets the documented response, in order.

mod common;

use common::{Sidecar, assert_json};

const KEY: &str = "9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617";
const VALUE: &str = r#"{\"email\":\"user@example.com\",\"mfa_verified\":false}"#;

#[test]
fn host_lines_in_order() {
    let mut x = Sidecar::spawn(&[]);
    assert_json(&x.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
    let set = format!(r#"{{"action":"set","sandbox":"otp-pending","key":"{KEY}","value":"{VALUE}","ttl":"15m"}}"#);
    assert_json(&x.ask(&set), r#"{"status":"ok"}"#);
    let get = format!(r#"{{"action":"get","sandbox":"otp-pending","key":"{KEY}"}}"#);
    assert_json(&x.ask(&get), &format!(r#"{{"status":"ok","data":"{VALUE}"}}"#));
    let del = format!(r#"{{"action":"del","sandbox":"otp-pending","key":"{KEY}"}}"#);
    assert_json(&x.ask(&del), r#"{"status":"ok"}"#);
    // A get of a missing key: the host's "not found", plus the stable code.
    assert_json(&x.ask(&get), r#"{"status":"error","error":"not found","code":"not_found"}"#);
    let (status, rest) = x.close();
    assert!(status.success(), "{status}");
    assert_eq!(rest, "", "nothing after the last answer");
}

#[test]
fn pipelined_lines_are_answered_in_order() {
    let mut x = Sidecar::spawn(&[]);
    // The whole batch in one write, as a busy host sends it.
    let mut batch = String::new();
    for i in 0..200 {
        batch.push_str(&format!(r#"{{"action":"set","sandbox":"cache","key":"k{i}","value":"v{i}"}}"#));
        batch.push('\n');
        batch.push_str(&format!(r#"{{"action":"get","sandbox":"cache","key":"k{i}"}}"#));
        batch.push('\n');
    }
    x.send(batch.as_bytes());
    for i in 0..200 {
        assert_json(&x.recv(), r#"{"status":"ok"}"#);
        assert_json(&x.recv(), &format!(r#"{{"status":"ok","data":"v{i}"}}"#));
    }
    assert!(x.close().0.success());
}

#[test]
fn rotating_get_and_grace_hit() {
    let mut x = Sidecar::spawn(&[]);
    let set = format!(r#"{{"action":"set","sandbox":"auth-session","key":"{KEY}","value":"{VALUE}","ttl":"15m"}}"#);
    assert_json(&x.ask(&set), r#"{"status":"ok"}"#);

    let rotate = |key: &str| {
        format!(
            r#"{{"action":"get","sandbox":"auth-session","key":"{key}","rotate":true,"ttl":"15m","grace_period":1000}}"#
        )
    };
    let r1 = x.ask(&rotate(KEY));
    assert_eq!(r1["status"], "ok");
    assert_eq!(r1["data"], VALUE.replace("\\\"", "\""));
    let t1 = r1["new_token"].as_str().expect("new_token").to_owned();
    assert_ne!(t1, KEY);
    assert_eq!(r1.as_object().unwrap().len(), 3, "exactly status, data, new_token: {r1}");

    // The old token within its grace period: the data, and the session's
    // current token (no second successor).
    let grace = x.ask(&rotate(KEY));
    assert_eq!(grace["status"], "ok", "{grace}");
    assert_eq!(grace["new_token"], t1.as_str());
    // Again: still the same current token, never a cascade.
    let grace = x.ask(&rotate(KEY));
    assert_eq!(grace["new_token"], t1.as_str());

    // The new token rotates on.
    let r2 = x.ask(&rotate(&t1));
    let t2 = r2["new_token"].as_str().expect("new_token").to_owned();
    assert_ne!(t2, t1);
    // The first token's grace now points at the newest token.
    let grace = x.ask(&rotate(KEY));
    assert_eq!(grace["new_token"], t2.as_str(), "{grace}");

    // A plain get by the current token: data, no new token.
    let plain = x.ask(&format!(r#"{{"action":"get","sandbox":"auth-session","key":"{t2}"}}"#));
    assert_json(&plain, &format!(r#"{{"status":"ok","data":"{VALUE}"}}"#));
    // Sandboxes are isolated.
    let other = x.ask(&format!(r#"{{"action":"get","sandbox":"otp-pending","key":"{t2}"}}"#));
    assert_eq!(other["status"], "error");
    assert!(x.close().0.success());
}

#[test]
fn grace_expiry_on_the_test_clock() {
    let mut x = Sidecar::spawn(&["--unsafe-test-clock"]);
    assert_json(&x.ask(r#"{"action":"set","sandbox":"a","key":"k0","value":"v"}"#), r#"{"status":"ok"}"#);
    let r = x.ask(r#"{"action":"get","sandbox":"a","key":"k0","rotate":true,"grace_period":1000}"#);
    let t1 = r["new_token"].as_str().unwrap().to_owned();
    assert_json(&x.ask(r#"{"action":"debug_advance_clock","by_ms":1500}"#), r#"{"status":"ok"}"#);
    // Past its grace the old token is refused, and by default the family is
    // revoked (replay detection).
    assert_json(
        &x.ask(r#"{"action":"get","sandbox":"a","key":"k0","rotate":true}"#),
        r#"{"status":"error","error":"not found","code":"not_found"}"#,
    );
    let after = x.ask(&format!(r#"{{"action":"get","sandbox":"a","key":"{t1}"}}"#));
    assert_eq!(after["status"], "error", "{after}");
    // TTL expiry.
    assert_json(&x.ask(r#"{"action":"set","sandbox":"a","key":"k1","value":"v","ttl":"2m"}"#), r#"{"status":"ok"}"#);
    assert_json(&x.ask(r#"{"action":"debug_advance_clock","by_ms":119000}"#), r#"{"status":"ok"}"#);
    assert_eq!(x.ask(r#"{"action":"get","sandbox":"a","key":"k1"}"#)["status"], "ok");
    assert_json(&x.ask(r#"{"action":"debug_advance_clock","by_ms":2000}"#), r#"{"status":"ok"}"#);
    assert_eq!(x.ask(r#"{"action":"get","sandbox":"a","key":"k1"}"#)["code"], "not_found");
    assert!(x.close().0.success());
}

#[test]
fn ids_are_echoed_and_extensions_work_over_stdio() {
    let mut x = Sidecar::spawn(&[]);
    assert_json(&x.ask(r#"{"action":"ping","id":"p-1"}"#), r#"{"id":"p-1","status":"ok","data":"pong"}"#);
    let c = x.ask(r#"{"action":"create_session","id":2,"sandbox":"otp-pending","value":{"user":42},"subject":"u42"}"#);
    assert_eq!(c["id"], 2);
    let t = c["new_token"].as_str().unwrap().to_owned();
    assert_eq!(t.len(), 44);
    assert_eq!(c["meta"]["version"], 1);
    let m = x.ask(&format!(r#"{{"action":"migrate","sandbox":"otp-pending","key":"{t}","to":"active"}}"#));
    let t2 = m["new_token"].as_str().unwrap().to_owned();
    let r = x.ask(&format!(r#"{{"action":"resolve","sandbox":"active","key":"{t2}"}}"#));
    assert_eq!(r["data"], r#"{"user":42}"#);
    assert_eq!(r["outcome"], "current");
    assert_eq!(x.ask(&format!(r#"{{"action":"exists","sandbox":"otp-pending","key":"{t}"}}"#))["exists"], false);
    let list = x.ask(r#"{"action":"list_subject","sandbox":"active","subject":"u42"}"#);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let u = x.ask(&format!(r#"{{"action":"update_if","sandbox":"active","key":"{t2}","version":7,"value":"x"}}"#));
    assert_eq!(u["code"], "conflict");
    assert_eq!(u["current_version"], 1);
    let s = x.ask(r#"{"action":"stats"}"#);
    assert_eq!(s["status"], "ok");
    assert!(s["stats"]["sandboxes"].is_array());
    // The clock is not movable without the test flag.
    assert_eq!(x.ask(r#"{"action":"debug_advance_clock","by_ms":1}"#)["code"], "unknown_action");
    assert!(x.close().0.success());
}
