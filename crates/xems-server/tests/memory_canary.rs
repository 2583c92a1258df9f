//! The memory canary: after a real `xems serve` has stored, read and rotated
//! sessions, no readable page of the process holds a session value, a token
//! (current or rotated away) or the master secret in plaintext.
//!
//! The server is driven over its Unix socket with the secret in a file (so
//! it is in neither argv nor the environment). Then every readable mapping
//! listed in `/proc/<pid>/maps` is read through `/proc/<pid>/mem`: heap,
//! stacks, anonymous mappings, and the pages of the binary. Key pages are
//! included (`MADV_DONTDUMP` hides them from core dumps, not from this read).
//!
//! The positive control runs in the same scan: the sandbox name is kept in
//! plaintext by design (it is a name, not a secret), carries its own random
//! marker, and must be found. So a scan that reads nothing cannot pass.
//!
//! Reading the memory of another process that is not dumpable (`xems`
//! clears the flag at startup) takes `CAP_SYS_PTRACE`: the test must run as
//! root, as CI does.

mod common;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value as Json;

/// Sessions created with `create_session`, and caller keys written with `set`.
const SESSIONS: usize = 40;
const CALLER_KEYS: usize = 10;
/// Rotations of each session.
const ROTATIONS: usize = 4;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn ask(&mut self, line: &str) -> Json {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut s = String::new();
        assert!(self.reader.read_line(&mut s).unwrap() > 0, "server closed the connection");
        let r: Json = serde_json::from_str(&s).unwrap();
        assert_eq!(r["status"], "ok", "{line} -> {r}");
        r
    }
}

/// One thing to look for, and what to call it in a report.
struct Needle {
    what: String,
    bytes: Vec<u8>,
}

/// Where a needle was found.
#[derive(Debug)]
struct Hit {
    what: String,
    address: u64,
    mapping: String,
}

/// Reads every readable mapping of `pid` and reports every occurrence of
/// every needle. Also returns how many bytes were read.
fn scan(pid: u32, needles: &[Needle]) -> (Vec<Hit>, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("cannot open /proc/{pid}/mem ({e}): run the tests as root (CAP_SYS_PTRACE)"));
    let mut hits = Vec::new();
    let mut read_total = 0u64;
    let finders: Vec<_> = needles.iter().map(|n| memchr::memmem::Finder::new(&n.bytes)).collect();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        let name = fields.nth(3).unwrap_or("[anonymous]").to_owned();
        if !perms.starts_with('r') || matches!(name.as_str(), "[vvar]" | "[vvar_vclock]" | "[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap()];
        mem.seek(SeekFrom::Start(start)).unwrap();
        if let Err(e) = mem.read_exact(&mut buf) {
            panic!("cannot read mapping {line} of xems: {e}");
        }
        read_total += buf.len() as u64;
        for (needle, finder) in needles.iter().zip(&finders) {
            for offset in finder.find_iter(&buf) {
                hits.push(Hit {
                    what: needle.what.clone(),
                    address: start + offset as u64,
                    mapping: format!("{range} {perms} {name}"),
                });
            }
        }
    }
    (hits, read_total)
}

#[test]
fn no_plaintext_secrets_in_server_memory() {
    assert!(
        rustix::process::getuid().is_root(),
        "the memory canary reads another process's memory: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = {
        let mut s = [0u8; 32];
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut s).unwrap();
        s
    };
    let secret_hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("hex:{secret_hex}\n")).unwrap();
    let sock = dir.path().join("xems.sock");
    let marker = format!("canary-{}", random_hex(16));
    let sandbox = format!("box{}", random_hex(8));

    let mut child = common::spawn_serve(|c| {
        c.args(["--listen", &format!("unix://{}", sock.display())])
            .arg("--secret-file")
            .arg(&secret_file)
            .env_remove("XEMS_SECRET")
            .env_remove("XEMS_AUTH_TOKEN")
    });
    let pid = child.id();
    let start = Instant::now();
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                panic!("cannot connect to xems serve: {e}");
            }
        }
    };
    let server = Killed(child);
    std::fs::remove_file(&secret_file).unwrap();

    let mut tokens: Vec<String> = Vec::new();
    let mut conn = Conn { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
    let mut current = Vec::new();
    for i in 0..SESSIONS {
        let value = format!("{{\"user\":{i},\"note\":\"{marker}\"}}");
        let r = conn.ask(
            &serde_json::json!({"action":"create_session","sandbox":sandbox,"value":value,"ttl":"1h"}).to_string(),
        );
        let t = r["new_token"].as_str().unwrap().to_owned();
        tokens.push(t.clone());
        current.push(t);
    }
    let mut keys = Vec::new();
    for i in 0..CALLER_KEYS {
        let key = format!("key-{}", random_hex(16));
        let value = format!("{marker}:{i}");
        conn.ask(&serde_json::json!({"action":"set","sandbox":sandbox,"key":key,"value":value}).to_string());
        let r = conn.ask(&serde_json::json!({"action":"get","sandbox":sandbox,"key":key}).to_string());
        assert_eq!(r["data"], value.as_str());
        keys.push(key);
    }
    for _ in 0..ROTATIONS {
        for t in &mut current {
            let r = conn.ask(
                &serde_json::json!({"action":"resolve","sandbox":sandbox,"key":t,"rotate":true,"grace_period":0})
                    .to_string(),
            );
            assert!(r["data"].as_str().unwrap().contains(&marker));
            *t = r["new_token"].as_str().unwrap().to_owned();
            tokens.push(t.clone());
        }
    }
    drop(conn);
    // Let the server notice the closed connection and drop its buffers.
    std::thread::sleep(Duration::from_millis(300));

    let mut needles = vec![
        Needle { what: "session value marker".into(), bytes: marker.as_bytes().to_vec() },
        Needle { what: "master secret (raw bytes)".into(), bytes: secret.to_vec() },
        Needle { what: "master secret (hex text)".into(), bytes: secret_hex.as_bytes().to_vec() },
    ];
    for (i, t) in tokens.iter().enumerate() {
        let state = if current.contains(t) { "current" } else { "rotated away" };
        needles.push(Needle { what: format!("token #{i} ({state}) text"), bytes: t.as_bytes().to_vec() });
        // The 256-bit verifier, as the engine decodes it.
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).unwrap();
        needles.push(Needle { what: format!("token #{i} ({state}) verifier bytes"), bytes: raw[17..].to_vec() });
    }
    for (i, k) in keys.iter().enumerate() {
        needles.push(Needle { what: format!("caller key #{i}"), bytes: k.as_bytes().to_vec() });
    }
    needles.push(Needle { what: "CONTROL sandbox name".into(), bytes: sandbox.as_bytes().to_vec() });

    let (hits, read) = scan(pid, &needles);
    let (control, leaks): (Vec<_>, Vec<_>) = hits.into_iter().partition(|h| h.what.starts_with("CONTROL"));
    assert!(read > 1 << 20, "read only {read} bytes of xems's memory");
    assert!(
        !control.is_empty(),
        "the positive control (the sandbox name, kept in plaintext by design) was not found in {read} bytes: the \
         scan does not work"
    );
    // One line per kind of needle and mapping, with the first address.
    let mut report: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeMap::<(String, String), (usize, u64)>::new();
    for h in &leaks {
        let kind = h.what.split(" #").next().unwrap().to_owned()
            + if h.what.contains("verifier") { " verifier bytes" } else { "" };
        let e = seen.entry((kind, h.mapping.clone())).or_insert((0, h.address));
        e.0 += 1;
    }
    for ((kind, mapping), (n, first)) in &seen {
        report.push(format!("{n} x {kind} in {mapping} (first at {first:#x})"));
    }
    if std::env::var_os("XEMS_CANARY_VERBOSE").is_some() {
        for h in &leaks {
            eprintln!("{} at {:#x} in {}", h.what, h.address, h.mapping);
        }
    }
    assert!(leaks.is_empty(), "{} plaintext copies in xems's memory:\n{}", leaks.len(), report.join("\n"));
    drop(server);
}
