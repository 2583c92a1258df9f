//! The sidecar's life: start-up arguments, EOF, signals, refusals.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Sidecar, assert_json, wait_timeout};
use xems_testkit::logs::output;
use xems_testkit::secrets::{SIDECAR as SECRET, SIDECAR_FILE};

#[test]
fn eof_exits_zero_with_nothing_on_stdout() {
    let out = output(Command::new(BIN).stdin(Stdio::null()), "xems").unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "stdout carries protocol lines only");
}

#[test]
fn persist_without_a_secret_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let out = output(
        Command::new(BIN).args(["--persist", vault.to_str().unwrap()]).env_remove("XEMS_SECRET").stdin(Stdio::null()),
        "xems",
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the vault needs a secret"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!vault.exists(), "nothing is created");
}

#[test]
fn host_arguments_are_accepted() {
    let mut x = Sidecar::spawn(&["--secret", SECRET, "--cache-size", "1000"]);
    assert_json(&x.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
    assert!(x.close().0.success());
}

#[test]
fn secret_on_argv_is_warned_about_and_never_logged() {
    let out = output(Command::new(BIN).args(["--secret", SECRET]).stdin(Stdio::null()), "xems").unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process list"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn bad_secret_is_refused_with_its_length() {
    let out = output(Command::new(BIN).args(["--secret", "too-short"]).stdin(Stdio::null()), "xems").unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exactly 32 bytes, got 9"), "{err}");
    let out = output(Command::new(BIN).env("XEMS_SECRET", "also-short").stdin(Stdio::null()), "xems").unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn secret_from_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret");
    std::fs::write(&f, format!("{SIDECAR_FILE}\n")).unwrap();
    let mut x = Sidecar::spawn(&["--secret-file", f.to_str().unwrap()]);
    assert_json(&x.ask(r#"{"action":"ping"}"#), r#"{"status":"ok","data":"pong"}"#);
    assert!(x.close().0.success());
    let out = output(Command::new(BIN).env("XEMS_SECRET", SECRET).stdin(Stdio::null()), "xems").unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("process list"));
}

#[test]
fn sigterm_exits_zero() {
    let mut child = xems_testkit::logs::child(
        Command::new(BIN).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()),
        "sidecar",
    )
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"action\":\"ping\"}\n").unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "{\"status\":\"ok\",\"data\":\"pong\"}\n");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn help_reads_well() {
    for args in [&["--help"][..], &["serve", "--help"][..], &["stdio", "--help"][..]] {
        let out = output(Command::new(BIN).args(args), "xems").unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: xems"), "{text}");
        assert!(!text.contains("unsafe-test-clock"), "the test flag stays hidden");
    }
    let out = output(Command::new(BIN).args(["serve", "--help"]), "xems").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--auth-token-file", "--max-connections", "--max-line-bytes", "--config"] {
        assert!(text.contains(flag), "serve --help lacks {flag}");
    }
}

/// Stdin a pipe and stdout a file (`host | xems > log`): the sidecar serves
/// the pipes on its event loop only when both are pipes, and must not leave
/// stdin non-blocking behind for the fallback reader (whose first read would
/// then fail with `EAGAIN` when the request comes late).
#[test]
fn a_pipe_in_and_a_file_out_still_work() {
    xems_testkit::logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let mut cmd = Command::new(BIN);
    cmd.env_remove("XEMS_SECRET")
        .env("XEMS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap());
    let mut child = xems_testkit::logs::child(&mut cmd, "sidecar").spawn().unwrap();
    // Late, so the sidecar is already waiting in its first read.
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"action\":\"ping\"}\n").unwrap();
    drop(stdin);
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "{\"status\":\"ok\",\"data\":\"pong\"}\n");
}
