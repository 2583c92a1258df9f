//! `--persist` as the XyPriss host passes it, and the `xems vault` tools:
//! sessions survive a restart of the sidecar, one process owns a vault, a
//! wrong secret is named, and the tools never print values or tokens.

mod common;

use std::process::{Command, Output, Stdio};

use common::{BIN, Server, Sidecar};

const SECRET: &str = xems_testkit::secrets::SIDECAR;
const NEW_SECRET: &str = xems_testkit::secrets::SIDECAR_NEXT;

fn tool(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("XEMS_SECRET").env("XEMS_LOG", "error").stdin(Stdio::null());
    xems_testkit::logs::output(&mut cmd, "vault-tool").unwrap()
}

/// `xems` with `args` in stdio mode, stdin closed, run to its end.
fn sidecar_output(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    xems_testkit::logs::output(&mut cmd, "sidecar").unwrap()
}

#[test]
fn sessions_survive_a_restart_of_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let v = vault.to_str().unwrap();
    let mut x = Sidecar::spawn(&["--persist", v, "--secret", SECRET]);
    let r = x.ask(r#"{"action":"set","sandbox":"otp-pending","key":"9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617","value":"{\"email\":\"a@example.com\"}","ttl":"15m"}"#);
    assert_eq!(r["status"], "ok", "{r}");
    let r = x.ask(r#"{"action":"get","sandbox":"otp-pending","key":"9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617","rotate":true,"grace_period":30000}"#);
    let token = r["new_token"].as_str().unwrap().to_owned();
    assert!(x.close().0.success());

    let mut x = Sidecar::spawn(&["--persist", v, "--secret", SECRET]);
    let r = x.ask(&format!(r#"{{"action":"get","sandbox":"otp-pending","key":"{token}"}}"#));
    assert_eq!(r["data"], r#"{"email":"a@example.com"}"#, "{r}");
    // The host's own key is in its grace window: it answers the current token.
    let r =
        x.ask(r#"{"action":"get","sandbox":"otp-pending","key":"9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617"}"#);
    assert_eq!(r["new_token"], token.as_str(), "{r}");
    assert!(x.close().0.success());

    // The tools: counts and key ids, never a value or a token.
    let out = tool(&["vault", "inspect", v, "--secret", SECRET]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("otp-pending") && text.contains("1 records"), "{text}");
    assert!(!text.contains("example.com") && !text.contains(&token) && !text.contains("9f0c1d2e"), "{text}");
    let out = tool(&["vault", "verify", v, "--secret", SECRET]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}

#[test]
fn a_second_process_is_told_who_owns_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let v = vault.to_str().unwrap();
    let mut server = Server::start(&["--persist", v, "--secret", SECRET, "--listen", "tcp://127.0.0.1:0"]);
    let pid = server.child.id();
    let out = sidecar_output(&["--persist", v, "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("vault in use by PID {pid}")), "{err}");
    let out = tool(&["vault", "compact", v, "--secret", SECRET]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("vault in use by PID {pid}")), "{out:?}");
    assert!(server.terminate().success());
    // Once it has exited, the vault is free.
    let out = tool(&["vault", "verify", v, "--secret", SECRET]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn wrong_secret_rotation_and_rekey_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let v = vault.to_str().unwrap();
    let mut x = Sidecar::spawn(&["--persist", v, "--secret", SECRET]);
    assert_eq!(x.ask(r#"{"action":"set","sandbox":"s","key":"k","value":"kept"}"#)["status"], "ok");
    assert!(x.close().0.success());

    let out = sidecar_output(&["--persist", v, "--secret", NEW_SECRET]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong secret or not a xems vault"), "{out:?}");

    // Rotated secret: the old one as --previous-secret.
    let mut x = Sidecar::spawn(&["--persist", v, "--secret", NEW_SECRET, "--previous-secret", SECRET]);
    assert_eq!(x.ask(r#"{"action":"get","sandbox":"s","key":"k"}"#)["data"], "kept");
    assert!(x.close().0.success());
    let out = tool(&["vault", "rekey", v, "--secret", NEW_SECRET, "--previous-secret", SECRET]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("can be retired"), "{text}");
    // The old secret is no longer needed, nor accepted.
    let mut x = Sidecar::spawn(&["--persist", v, "--secret", NEW_SECRET]);
    assert_eq!(x.ask(r#"{"action":"get","sandbox":"s","key":"k"}"#)["data"], "kept");
    assert!(x.close().0.success());
    let out = tool(&["vault", "verify", v, "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_damaged_vault_stops_the_sidecar_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let v = vault.to_str().unwrap();
    let mut x = Sidecar::spawn(&["--persist", v, "--secret", SECRET]);
    assert_eq!(x.ask(r#"{"action":"set","sandbox":"s","key":"k","value":"v"}"#)["status"], "ok");
    assert!(x.close().0.success());
    let journal = vault.join("journal.000001");
    let mut bytes = std::fs::read(&journal).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    std::fs::write(&journal, &bytes).unwrap();
    let out = sidecar_output(&["--persist", v, "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("vault corrupted: journal.000001 at byte"), "{out:?}");
    let out = tool(&["vault", "verify", v, "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(1), "damage is exit code 1");
}
