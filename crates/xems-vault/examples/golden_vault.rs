//! Writes the golden vault that `tests/backward_compatibility.rs` reads.
//!
//! ```text
//! cargo run -p xems-vault --example golden_vault -- crates/xems-vault/tests/data/golden-v1
//! ```
//!
//! Run it only when the format version changes (into a new directory,
//! `golden-v2`, ...): the committed vaults are what later versions must keep
//! reading. It uses a fixed test secret and a mock clock starting at
//! 1800000000000 ms; the tokens it mints are random and are written to
//! `expected.txt` beside the vault (test data, not secrets).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use xems_core::{CreateOptions, Keyring, MasterSecret, MockClock, ResolveOptions, Timestamp};
use xems_engine::Engine;
use xems_vault::{FsyncPolicy, Opened, VaultOptions};

/// The golden vault's secret (32 bytes).
const SECRET: &str = "xems-golden-vault-v1-test-secret";

fn open(dir: &std::path::Path, clock: &MockClock) -> (xems_vault::Vault, Engine) {
    let secret = MasterSecret::parse(SECRET).expect("32 bytes");
    let opts = VaultOptions::new(Keyring::new(secret.clone())).fsync(FsyncPolicy::Always).clock(clock.clone());
    let opened = Opened::open(dir, opts).expect("open");
    let engine = Engine::builder()
        .secret(secret)
        .clock(clock.clone())
        .sweep_interval(None)
        .key_root(opened.key_root())
        .shards(opened.shards())
        .journal(opened.journal())
        .build()
        .expect("engine");
    let (vault, _) = opened.recover(&engine).expect("recover");
    (vault, engine)
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: golden_vault DIR"));
    assert!(!dir.exists(), "{} exists: golden vaults are written once", dir.display());
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
    let long = CreateOptions::new().with_ttl(Duration::from_secs(4 * 86_400));
    let mut expected = Vec::new();

    let (vault, e) = open(&dir, &clock);
    let active = e.sandbox("active").expect("sandbox");
    let pending = e.sandbox("otp-pending").expect("sandbox");
    let cache = e.sandbox("cache").expect("sandbox");
    for i in 0..300u32 {
        cache.set(&format!("item:{i}"), format!("cached value {i}").as_bytes(), long.clone()).expect("set");
    }
    let s1 = active.create(br#"{"user":1}"#, long.clone().with_subject("user-1")).expect("create").token;
    let s1b = active
        .resolve(s1.expose(), ResolveOptions::rotating())
        .expect("resolve")
        .expect("live")
        .token
        .expect("rotated");
    expected.push(format!("s1b={}", s1b.expose()));
    vault.compact(&e).expect("compact");

    // Journal after the snapshot: every kind of change.
    clock.advance(Duration::from_secs(10));
    let s1c = active
        .resolve(s1b.expose(), ResolveOptions::rotating().with_grace(Duration::from_secs(55)))
        .expect("resolve")
        .expect("live")
        .token
        .expect("rotated");
    expected.push(format!("s1c={}", s1c.expose()));
    cache.set("item:7", b"replaced", long.clone()).expect("replace");
    cache.del("item:8").expect("del");
    let otp = pending.create(br#"{"otp":"pending"}"#, long.clone().with_subject("user-2")).expect("create").token;
    let s2 = pending.migrate(otp.expose(), &active, None, long.clone()).expect("migrate").expect("live").token;
    expected.push(format!("s2={}", s2.expose()));
    active.touch(s2.expose(), Some(Duration::from_secs(3 * 86_400))).expect("touch").expect("live");
    vault.close().expect("close");
    drop(e);

    // A second segment, as after a restart.
    let (vault, e) = open(&dir, &clock);
    e.sandbox("cache").expect("sandbox").set("after-restart", b"yes", long).expect("set");
    vault.close().expect("close");
    drop(e);
    std::fs::remove_file(dir.join("LOCK")).expect("remove the lock file");
    let mut f = std::fs::File::create(dir.join("expected.txt")).expect("expected.txt");
    for line in expected {
        writeln!(f, "{line}").expect("write");
    }
    println!("golden vault written to {}", dir.display());
}
