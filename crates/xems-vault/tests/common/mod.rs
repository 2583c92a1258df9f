//! Helpers shared by the vault's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use xems_core::{Keyring, MasterSecret, MockClock, Timestamp};
use xems_engine::Engine;
use xems_vault::{FsyncPolicy, Opened, Recovery, Vault, VaultError, VaultOptions};

/// The start of every test clock.
pub const T0: u64 = 1_800_000_000_000;

/// Secret `n` (`xems_testkit::secrets::vault`, which the log scan looks for).
pub fn secret(n: u8) -> MasterSecret {
    xems_testkit::logs::capture();
    MasterSecret::from_bytes(xems_testkit::secrets::vault(n))
}

pub fn clock() -> MockClock {
    xems_testkit::logs::capture();
    MockClock::new(Timestamp::from_millis(T0))
}

pub fn opts(secret: &MasterSecret) -> VaultOptions {
    VaultOptions::new(Keyring::new(secret.clone())).fsync(FsyncPolicy::Always)
}

/// Opens (or creates) the vault at `dir` and an engine restored from it.
pub fn open_with(dir: &Path, opts: VaultOptions, clock: &MockClock) -> Result<(Vault, Engine, Recovery), VaultError> {
    xems_testkit::logs::capture();
    let opened = Opened::open(dir, opts.clock(clock.clone()))?;
    let engine = Engine::builder()
        .clock(clock.clone())
        .sweep_interval(None)
        .key_root(opened.key_root())
        .shards(opened.shards())
        .journal(opened.journal())
        .build()
        .expect("engine");
    let (vault, recovery) = opened.recover(&engine)?;
    Ok((vault, engine, recovery))
}

pub fn open(dir: &Path, secret: &MasterSecret, clock: &MockClock) -> (Vault, Engine, Recovery) {
    open_with(dir, opts(secret), clock).expect("open the vault")
}

/// The vault's files, sorted by name (journal.* and snapshot.*).
pub fn vault_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("journal.") || n.starts_with("snapshot.")
        })
        .collect();
    v.sort();
    v
}
