//! Crash consistency of the vault, end to end: the real `xems serve
//! --persist`, a write storm over the protocol from several connections,
//! SIGKILL at a random moment, restart, and check that every acknowledged
//! write is there (and that nothing unacknowledged came back corrupted).
//!
//! Under `--fsync always` an acknowledged write is on disk; under
//! `everysec` it has been written to the OS, which a killed process cannot
//! take back. (Power cuts are not simulated here: they need a VM.)

mod common;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, LineConn, Server};
use serde_json::Value as Json;

const SECRET: &str = xems_testkit::secrets::CRASH;

/// A small xorshift generator, seeded per run (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Acked {
    /// key -> value of every acknowledged `set`.
    sets: HashMap<String, String>,
    /// Values sent but not (yet) acknowledged: they may or may not be there.
    unacked: HashMap<String, String>,
    /// session -> the last acknowledged token and its value.
    tokens: HashMap<String, (String, String)>,
}

fn start(vault: &Path, policy: &str) -> Server {
    Server::start(&["--persist", vault.to_str().unwrap(), "--secret", SECRET, "--fsync", policy])
}

/// Pipelined `set`s over one connection until it breaks or `stop` is set.
fn setter(mut conn: LineConn, tag: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let window = 8;
    let mut inflight = std::collections::VecDeque::new();
    let mut n = 0u64;
    loop {
        while inflight.len() < window && !stop.load(Ordering::Relaxed) {
            let key = format!("{tag}-{n}");
            let value = format!("value of {key} {}", "x".repeat((n % 200) as usize));
            let line = format!(r#"{{"action":"set","sandbox":"storm","key":"{key}","value":"{value}","ttl":"1h"}}"#);
            if conn.writer.write_all(format!("{line}\n").as_bytes()).and_then(|()| conn.writer.flush()).is_err() {
                return;
            }
            acked.lock().unwrap().unacked.insert(key.clone(), value.clone());
            inflight.push_back((key, value));
            n += 1;
        }
        let Some((key, value)) = inflight.pop_front() else { return };
        let mut line = String::new();
        match conn.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let r: Json = serde_json::from_str(&line).expect("a whole JSON line");
        assert_eq!(r["status"], "ok", "{r}");
        let mut a = acked.lock().unwrap();
        a.unacked.remove(&key);
        a.sets.insert(key, value);
    }
}

/// One session rotated over and over (grace 55 s, so the last acknowledged
/// token still resolves after a restart even if a later rotation landed).
fn rotator(mut conn: LineConn, tag: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let value = format!("session {tag}");
    let mut ask = |line: String| -> Option<Json> {
        conn.writer.write_all(format!("{line}\n").as_bytes()).ok()?;
        conn.writer.flush().ok()?;
        let mut s = String::new();
        match conn.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&s).expect("a whole JSON line")),
        }
    };
    let existing = acked.lock().unwrap().tokens.get(&tag).cloned();
    let mut token = match existing {
        Some((t, _)) => t,
        None => {
            let Some(r) = ask(format!(
                r#"{{"action":"create_session","sandbox":"active","value":"{value}","ttl":"1h","subject":"{tag}"}}"#
            )) else {
                return;
            };
            let t = r["new_token"].as_str().expect("token").to_owned();
            acked.lock().unwrap().tokens.insert(tag.clone(), (t.clone(), value.clone()));
            t
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(r) =
            ask(format!(r#"{{"action":"get","sandbox":"active","key":"{token}","rotate":true,"grace_period":55000}}"#))
        else {
            return;
        };
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["data"], value.as_str());
        token = r["new_token"].as_str().expect("rotated").to_owned();
        acked.lock().unwrap().tokens.insert(tag.clone(), (token.clone(), value.clone()));
    }
}

/// Every acknowledged write is there; nothing else is garbage.
fn verify(server: &Server, acked: &Acked) {
    let mut conn = LineConn::unix(server.unix.as_ref().unwrap());
    let keys: Vec<(&String, &String)> = acked.sets.iter().collect();
    for chunk in keys.chunks(256) {
        let mut batch = String::new();
        for (k, _) in chunk {
            batch.push_str(&format!(r#"{{"action":"get","sandbox":"storm","key":"{k}"}}"#));
            batch.push('\n');
        }
        conn.send(batch.as_bytes());
        for (k, v) in chunk {
            let r = conn.recv();
            assert_eq!(r["status"], "ok", "acknowledged write {k} is missing: {r}");
            assert_eq!(r["data"], v.as_str(), "acknowledged write {k} came back changed");
        }
    }
    for (k, v) in acked.unacked.iter().take(64) {
        let r = conn.ask(&format!(r#"{{"action":"get","sandbox":"storm","key":"{k}"}}"#));
        if r["status"] == "ok" {
            assert_eq!(r["data"], v.as_str(), "an unacknowledged write came back changed");
        } else {
            assert_eq!(r["code"], "not_found", "{r}");
        }
    }
    for (tag, (token, value)) in &acked.tokens {
        let r = conn.ask(&format!(r#"{{"action":"resolve","sandbox":"active","key":"{token}"}}"#));
        assert_eq!(r["status"], "ok", "the last acknowledged token of {tag} does not resolve: {r}");
        assert_eq!(r["data"], value.as_str());
    }
}

fn storm(policy: &str, rounds: usize) {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("{policy}: seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut total_writes = 0;
    let mut productive = 0;
    for round in 0..rounds {
        let mut server = start(&vault, policy);
        verify(&server, &acked.lock().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for c in 0..6 {
            let conn = LineConn::unix(server.unix.as_ref().unwrap());
            let (stop, acked) = (stop.clone(), acked.clone());
            let tag = format!("r{round}c{c}");
            threads.push(std::thread::spawn(move || setter(conn, tag, stop, acked)));
        }
        for s in 0..2 {
            let conn = LineConn::unix(server.unix.as_ref().unwrap());
            let (stop, acked) = (stop.clone(), acked.clone());
            threads.push(std::thread::spawn(move || rotator(conn, format!("s{s}"), stop, acked)));
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reaped");
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("a client thread failed");
        }
        let n = acked.lock().unwrap().sets.len();
        // A kill can land before the first fsync: count the rounds that wrote.
        productive += usize::from(n > total_writes);
        total_writes = n;
    }
    assert!(productive * 2 >= rounds, "only {productive} of {rounds} rounds acknowledged a write");
    let mut server = start(&vault, policy);
    verify(&server, &acked.lock().unwrap());
    assert!(server.terminate().success());
    // The offline checker agrees.
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["vault", "verify", vault.to_str().unwrap(), "--secret", SECRET]).env("XEMS_LOG", "error");
    let out = xems_testkit::logs::output(&mut cmd, "vault-verify").unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{policy}: {rounds} kills, {total_writes} acknowledged writes, all present");
}

#[test]
fn sigkill_under_fsync_always_loses_no_acknowledged_write() {
    let started = Instant::now();
    storm("always", 20);
    println!("took {:?}", started.elapsed());
}

#[test]
fn sigkill_under_fsync_everysec_loses_no_acknowledged_write() {
    storm("everysec", 12);
}
