//! The golden vault (`tests/data/golden-v1`, written once by
//! `examples/golden_vault.rs` with a fixed test secret) must keep opening
//! with every later version, or fail with a clear version error.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use xems_core::{Keyring, MasterSecret, MockClock, ResolveOptions, ResolveOutcome, Timestamp};
use xems_vault::{FileKind, VaultError, VaultOptions, inspect};

const SECRET: &str = xems_testkit::secrets::GOLDEN_VAULT;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v1")
}

/// A writable copy (opening takes a lock and starts a segment).
fn copy() -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(golden()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("journal.") || name.starts_with("snapshot.") {
            std::fs::copy(e.path(), to.path().join(&name)).unwrap();
        }
    }
    to
}

fn expected(name: &str) -> String {
    let text = std::fs::read_to_string(golden().join("expected.txt")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap().to_owned()
}

fn opts(clock: &MockClock) -> VaultOptions {
    VaultOptions::new(Keyring::new(MasterSecret::parse(SECRET).unwrap())).clock(clock.clone())
}

#[test]
fn the_golden_vault_opens_with_all_its_state() {
    let dir = copy();
    // 20 s after the last write: the 55 s grace window is still open.
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000 + 30_000));
    let (vault, e, r) = common::open_with(dir.path(), opts(&clock), &clock).unwrap();
    assert_eq!(r.restored, 300 - 1 + 1 + 2, "{r:?}");
    let cache = e.sandbox("cache").unwrap();
    assert_eq!(cache.get("item:0").unwrap().unwrap().value.as_bytes(), b"cached value 0");
    assert_eq!(cache.get("item:299").unwrap().unwrap().value.as_bytes(), b"cached value 299");
    let replaced = cache.get("item:7").unwrap().unwrap();
    assert_eq!((replaced.value.as_bytes(), replaced.meta.version), (&b"replaced"[..], 2));
    assert!(cache.get("item:8").unwrap().is_none());
    assert_eq!(cache.get("after-restart").unwrap().unwrap().value.as_bytes(), b"yes");
    let active = e.sandbox("active").unwrap();
    let s1c = expected("s1c");
    let hit = active.resolve(&expected("s1b"), ResolveOptions::new()).unwrap().expect("s1b is in its grace window");
    assert_eq!(hit.outcome, ResolveOutcome::Grace);
    assert_eq!(hit.token.unwrap().expose(), s1c);
    let s1 = active.get(&s1c).unwrap().unwrap();
    assert_eq!(s1.value.as_bytes(), br#"{"user":1}"#);
    assert_eq!(active.list_subject("user-1").unwrap().len(), 1);
    let s2 = active.get(&expected("s2")).unwrap().unwrap();
    assert_eq!(s2.value.as_bytes(), br#"{"otp":"pending"}"#);
    assert_eq!(s2.meta.expires_at.as_millis(), 1_800_000_010_000 + 3 * 86_400_000, "touched");
    assert!(e.sandbox("otp-pending").unwrap().list_subject("user-2").unwrap().is_empty(), "migrated away");
    assert_eq!(active.list_subject("user-2").unwrap().len(), 1, "the subject moved with it");
    vault.close().unwrap();
    // Later: the grace window has closed, every record is still there.
    drop(e);
    clock.advance(Duration::from_secs(120));
    let (_vault, e, r) = common::open_with(dir.path(), opts(&clock), &clock).unwrap();
    assert_eq!(r.restored, 302);
    assert!(e.sandbox("active").unwrap().get(&expected("s1c")).unwrap().is_some());
    // A token minted by the version that wrote the vault rotates into one
    // of today's format (its digest is computed differently), which
    // resolves; the old one is then retired like any other.
    let active = e.sandbox("active").unwrap();
    let next = active.resolve(&expected("s1c"), ResolveOptions::rotating()).unwrap().unwrap().token.unwrap();
    assert_eq!(active.get(next.expose()).unwrap().unwrap().value.as_bytes(), br#"{"user":1}"#);
    let again = active.resolve(next.expose(), ResolveOptions::rotating()).unwrap().unwrap();
    assert_eq!(again.outcome, ResolveOutcome::Rotated);
    assert_eq!(
        active.resolve(&expected("s1c"), ResolveOptions::new()).unwrap().unwrap().outcome,
        ResolveOutcome::Grace
    );
}

#[test]
fn the_golden_vault_inspects_read_only() {
    let dir = copy();
    let before: Vec<_> = common::vault_files(dir.path()).iter().map(|p| std::fs::read(p).unwrap().len()).collect();
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000 + 30_000));
    let r = inspect(dir.path(), opts(&clock)).unwrap();
    assert_eq!(r.records, 302);
    assert_eq!(r.shards, 64);
    let kinds: Vec<_> = r.files.iter().map(|f| (f.kind, f.generation)).collect();
    assert_eq!(kinds, [(FileKind::Snapshot, 2), (FileKind::Journal, 2), (FileKind::Journal, 3)]);
    let after: Vec<_> = common::vault_files(dir.path()).iter().map(|p| std::fs::read(p).unwrap().len()).collect();
    assert_eq!(before, after);
}

#[test]
fn a_newer_format_version_is_a_clear_error() {
    let dir = copy();
    let path = dir.path().join("journal.000003");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 2; // format version, u16 LE at offset 8
    std::fs::write(&path, &bytes).unwrap();
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
    let err = inspect(dir.path(), opts(&clock)).unwrap_err();
    assert!(matches!(err, VaultError::UnsupportedVersion { found: 2, supported: 1, .. }), "{err}");
    assert!(err.to_string().contains("version 2 is not supported"), "{err}");
}
