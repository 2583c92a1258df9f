//! Process hardening of the real `xems` binary: no core dumps, not
//! dumpable, and a clear warning (not a crash) when key pages cannot be
//! locked in memory.
//!
//! The server runs as an unprivileged user (`nobody`) when the tests run as
//! root (as CI does), so that the effects of a cleared dumpable flag are
//! observable: the kernel then makes `/proc/<pid>/*` owned by root instead
//! of the process's user.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, wait_timeout};

/// `nobody` on Debian.
const NOBODY: u32 = 65534;

/// The user the server runs as: `nobody` under root, otherwise ourselves.
fn server_uid() -> u32 {
    let me = rustix::process::getuid().as_raw();
    if me == 0 { NOBODY } else { me }
}

/// A copy of the binary where `nobody` can run it (the build directory may
/// sit under a home directory only root can enter, as `/root` is), removed
/// when the last test using it drops it.
struct Copied {
    _dir: tempfile::TempDir,
    path: String,
}

/// The copy, shared by the tests that run at the same time. Not a plain
/// static: a static is never dropped, and each run of this file left its
/// copy (~130 MiB of debug binary) behind in the temporary directory.
fn bin() -> std::sync::Arc<Copied> {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex, Weak};
    static COPY: Mutex<Weak<Copied>> = Mutex::new(Weak::new());
    let mut shared = COPY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(copy) = shared.upgrade() {
        return copy;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("xems");
    std::fs::copy(BIN, &path).expect("copy the xems binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = Arc::new(Copied { path: path.to_str().unwrap().to_owned(), _dir: dir });
    *shared = Arc::downgrade(&copy);
    copy
}

fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    if rustix::process::getuid().is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c.env_remove("XEMS_SECRET").env_remove("XEMS_SECRET_FILE").current_dir("/");
    c
}

/// The uid of the process, from `/proc/<pid>/status`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Checks what a hardened process looks like from outside.
fn assert_hardened(pid: u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).expect("core line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "soft and hard RLIMIT_CORE must be 0: {core}");
    // The process runs as an unprivileged user, yet its /proc files belong to
    // root: what the kernel does for a process that is not dumpable.
    assert_eq!(uid_of(pid), server_uid());
    assert_ne!(server_uid(), 0, "the server must run unprivileged for this check");
    for file in ["environ", "mem", "maps"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}")).expect("stat").uid();
        assert_eq!(owner, 0, "/proc/{pid}/{file} is owned by {owner}: the process is still dumpable");
    }
}

#[test]
fn stdio_sidecar_is_not_dumpable() {
    let bin = bin();
    let mut child = xems_testkit::logs::child(
        command(&bin.path).env("XEMS_LOG", "warn").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()),
        "sidecar",
    )
    .spawn()
    .expect("spawn xems");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"{\"action\":\"ping\"}\n").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("pong"), "{line:?}");
    assert_hardened(child.id());
    drop(stdin);
    assert!(wait_timeout(&mut child, Duration::from_secs(10)).success());
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_is_not_dumpable() {
    let bin = bin();
    let mut child = xems_testkit::logs::traced(
        command(&bin.path)
            .args(["serve", "--listen", "tcp://127.0.0.1:0"])
            .env("XEMS_AUTH_TOKEN", common::TOKEN)
            .env("XEMS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .expect("spawn xems serve");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Serve(child);
    // Every line is read (and kept for the log capture) until the server
    // exits; the test waits for the one that says it listens.
    let (listening, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let tee = xems_testkit::logs::Tee::new("serve");
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            tee.line(&line);
            if line.contains("listening") {
                let _ = listening.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("xems serve did not start listening");
    assert_hardened(server.0.id());
    // Killed: its last lines reach the capture before the test ends.
    drop(server);
    reader.join().expect("stderr reader");
}

/// With `RLIMIT_MEMLOCK` 0 the key pages cannot be locked: the server still
/// serves, and says so once on stderr.
#[test]
fn unlockable_keys_warn_once_and_keep_working() {
    let bin = bin();
    let mut child = xems_testkit::logs::traced(
        command("prlimit")
            .args(["--memlock=0:0", "--", &bin.path])
            .env("XEMS_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .expect("spawn prlimit (Debian package util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"action\":\"create_session\",\"sandbox\":\"s\",\"value\":\"v\"}\n{\"action\":\"ping\"}\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    xems_testkit::logs::save("sidecar", &out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}; stderr:\n{stderr}", out.status);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("new_token") && stdout.contains("pong"), "{stdout}");
    let warnings = stderr.lines().filter(|l| l.contains("could not lock key material")).count();
    assert_eq!(warnings, 1, "exactly one warning about unlocked keys; stderr:\n{stderr}");
    assert!(stderr.contains("RLIMIT_MEMLOCK"), "the warning names the limit: {stderr}");
}
