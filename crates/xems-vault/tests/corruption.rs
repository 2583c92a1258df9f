//! Damage and tampering: a flipped byte anywhere, records swapped,
//! duplicated or moved, files missing or from another vault, and
//! truncation at every record boundary and inside records.
//!
//! The tests find record boundaries from the format alone (a 220-byte
//! header, then frames of `len u32 LE || !len u32 LE || len bytes`), as an
//! independent reader would.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use xems_core::{CreateOptions, ResolveOptions};
use xems_testkit::logs::marked;
use xems_vault::{Opened, Report, VaultError, inspect};

const HEADER: usize = 220;

/// A vault with every kind of file: snapshot.000002 (blocks and end),
/// journal.000002 (not the last) and journal.000003 (the last).
fn build(dir: &Path) {
    let s = secret(1);
    let clock = clock();
    let (vault, e, _) = open(dir, &s, &clock);
    let a = e.sandbox("active").unwrap();
    let c = e.sandbox("cache").unwrap();
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(
            a.create(marked(&format!("session {i}")).as_bytes(), CreateOptions::new().with_subject("u")).unwrap().token,
        );
        c.set(&format!("k{i}"), &[i as u8; 40], CreateOptions::new()).unwrap();
    }
    vault.compact(&e).unwrap();
    for t in &tokens[..4] {
        a.resolve(t.expose(), ResolveOptions::rotating()).unwrap().unwrap();
    }
    c.del("k1").unwrap();
    vault.close().unwrap();
    drop(e);
    clock.advance(Duration::from_secs(1));
    let (vault, e, _) = open(dir, &s, &clock);
    let c = e.sandbox("cache").unwrap();
    for i in 0..5 {
        c.set(&format!("new{i}"), b"after restart", CreateOptions::new()).unwrap();
    }
    c.del("k2").unwrap();
    vault.close().unwrap();
}

fn report(dir: &Path) -> Result<Report, VaultError> {
    inspect(dir, opts(&secret(1)).clock(clock()))
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// (start, end) of every frame of a file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = HEADER;
    while pos < bytes.len() {
        let n = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()), !(n as u32));
        out.push((pos, pos + 8 + n));
        pos += 8 + n;
    }
    assert_eq!(pos, bytes.len());
    out
}

fn copy_vault(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

fn names(dir: &Path) -> Vec<String> {
    vault_files(dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn the_built_vault_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    assert_eq!(names(dir.path()), ["journal.000002", "journal.000003", "snapshot.000002"]);
    let r = report(dir.path()).unwrap();
    assert_eq!(r.records, 12 + 12 - 2 + 5, "{r:?}");
    assert!(r.torn_tail.is_none());
}

#[test]
fn every_flipped_byte_is_detected() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let mut checked = 0;
    for name in names(base.path()) {
        let bytes = std::fs::read(file(base.path(), &name)).unwrap();
        let fr = frames(&bytes);
        // Every header byte, every frame-header byte, the first and last
        // bytes of every frame body, and every 7th byte in between.
        let mut positions: Vec<usize> = (0..HEADER).collect();
        for (start, end) in &fr {
            positions.extend(*start..start + 8);
            positions.extend([start + 8, end - 1]);
            positions.extend((start + 8..*end).step_by(7));
        }
        positions.sort_unstable();
        positions.dedup();
        let dir = copy_vault(base.path());
        let path = file(dir.path(), &name);
        for &pos in &positions {
            for flip in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[pos] ^= flip;
                std::fs::write(&path, &damaged).unwrap();
                match report(dir.path()) {
                    Err(e) => {
                        let text = e.to_string();
                        assert!(!text.is_empty());
                    }
                    Ok(r) => panic!("{name}: flipping byte {pos} (^{flip:#x}) went unnoticed: {r:?}"),
                }
                checked += 1;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        report(dir.path()).expect("restored file is sound");
    }
    assert!(checked > 2000, "{checked}");
}

#[test]
fn a_flipped_byte_stops_the_real_open_and_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    for (name, pos) in
        [("snapshot.000002", 300), ("journal.000002", 240), ("journal.000003", 230), ("journal.000003", 20)]
    {
        let dir = copy_vault(base.path());
        let path = file(dir.path(), name);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        bytes[pos.min(len - 1)] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let snapshot = |d: &Path| -> Vec<(PathBuf, usize, u64)> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    let b = std::fs::read(&p).unwrap();
                    let sum = b.iter().fold(0u64, |h, x| h.wrapping_mul(31).wrapping_add(u64::from(*x)));
                    (p, b.len(), sum)
                })
                .filter(|(p, ..)| !p.ends_with("LOCK"))
                .collect()
        };
        let mut before = snapshot(dir.path());
        before.sort();
        let err = open_with(dir.path(), opts(&secret(1)), &clock()).expect_err("damage is an error");
        assert!(matches!(err, VaultError::Corrupt { .. } | VaultError::WrongSecret { .. }), "{name}@{pos}: {err}");
        let mut after = snapshot(dir.path());
        after.sort();
        assert!(before == after, "a failed open must not change the vault (nor leave a file behind)");
    }
}

#[test]
fn records_cannot_be_swapped_duplicated_or_moved() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let j3 = std::fs::read(file(base.path(), "journal.000003")).unwrap();
    let j2 = std::fs::read(file(base.path(), "journal.000002")).unwrap();
    let snap = std::fs::read(file(base.path(), "snapshot.000002")).unwrap();
    let f3 = frames(&j3);
    let f2 = frames(&j2);
    let fs = frames(&snap);
    let piece = |b: &[u8], f: (usize, usize)| b[f.0..f.1].to_vec();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("swap two journal records", "journal.000003", {
            let mut v = j3[..f3[1].0].to_vec();
            v.extend(piece(&j3, f3[2]));
            v.extend(piece(&j3, f3[1]));
            v.extend_from_slice(&j3[f3[2].1..]);
            v
        }),
        ("duplicate the last record", "journal.000003", {
            let mut v = j3.clone();
            v.extend(piece(&j3, *f3.last().unwrap()));
            v
        }),
        ("drop a middle record", "journal.000003", {
            let mut v = j3[..f3[1].0].to_vec();
            v.extend_from_slice(&j3[f3[1].1..]);
            v
        }),
        ("move a record from another segment", "journal.000003", {
            let mut v = j3.clone();
            v.extend(piece(&j2, f2[1]));
            v
        }),
        ("move a snapshot block into a journal", "journal.000003", {
            let mut v = j3.clone();
            v.extend(piece(&snap, fs[0]));
            v
        }),
        ("reorder snapshot blocks", "snapshot.000002", {
            assert!(fs.len() >= 3, "two blocks and the end");
            let mut v = snap[..fs[0].0].to_vec();
            v.extend(piece(&snap, fs[1]));
            v.extend(piece(&snap, fs[0]));
            v.extend_from_slice(&snap[fs[1].1..]);
            v
        }),
        ("drop a snapshot block", "snapshot.000002", {
            let mut v = snap[..fs[0].0].to_vec();
            v.extend_from_slice(&snap[fs[0].1..]);
            v
        }),
        ("data after the snapshot's end", "snapshot.000002", {
            let mut v = snap.clone();
            v.extend(piece(&snap, fs[0]));
            v
        }),
        ("journal header on the snapshot", "snapshot.000002", {
            let mut v = j2[..HEADER].to_vec();
            v.extend_from_slice(&snap[HEADER..]);
            v
        }),
    ];
    for (what, name, bytes) in cases {
        let dir = copy_vault(base.path());
        std::fs::write(file(dir.path(), name), &bytes).unwrap();
        let err = report(dir.path()).expect_err(what);
        assert!(err.is_corruption(), "{what}: {err}");
    }
}

#[test]
fn missing_or_foreign_files_are_detected() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    for name in ["snapshot.000002", "journal.000002"] {
        let dir = copy_vault(base.path());
        std::fs::remove_file(file(dir.path(), name)).unwrap();
        let err = report(dir.path()).expect_err(name);
        assert!(err.is_corruption() && err.to_string().contains("missing"), "{name}: {err}");
    }
    // A file of another vault (same secret) in its place.
    let other = tempfile::tempdir().unwrap();
    build(other.path());
    let dir = copy_vault(base.path());
    std::fs::copy(file(other.path(), "journal.000003"), file(dir.path(), "journal.000003")).unwrap();
    let err = report(dir.path()).unwrap_err();
    assert!(err.to_string().contains("another vault"), "{err}");
    // A renamed file (generation in the name and the header disagree).
    let dir = copy_vault(base.path());
    std::fs::rename(file(dir.path(), "journal.000003"), file(dir.path(), "journal.000004")).unwrap();
    assert!(report(dir.path()).unwrap_err().is_corruption());
}

#[test]
fn truncating_the_last_segment() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let name = "journal.000003";
    let full = std::fs::read(file(base.path(), name)).unwrap();
    let fr = frames(&full);
    let total = report(base.path()).unwrap().journal_changes;
    let in_last = fr.len() as u64 - 1; // frame 0 is the link
    for (i, &(start, end)) in fr.iter().enumerate() {
        // At a record boundary: a shorter, sound journal (a crash before the write).
        let dir = copy_vault(base.path());
        let path = file(dir.path(), name);
        std::fs::write(&path, &full[..end]).unwrap();
        let r = report(dir.path()).unwrap();
        assert_eq!(r.journal_changes, total - in_last + i as u64, "cut after record {i}");
        assert!(r.torn_tail.is_none());
        // Inside a record: a torn tail, reported, and cut off by the next open.
        for cut in [start + 3, start + 8, (start + end) / 2, end - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let r = report(dir.path()).unwrap();
            let torn = r.torn_tail.clone().expect("a torn tail");
            assert_eq!((torn.offset, torn.bytes), (start as u64, (cut - start) as u64));
            assert_eq!(r.journal_changes, total - in_last + (i as u64).saturating_sub(1), "cut inside record {i}");
        }
        // An all-zero tail (a file system that grew the file before the data landed).
        let mut zeros = full[..end].to_vec();
        zeros.extend_from_slice(&[0; 100]);
        std::fs::write(&path, &zeros).unwrap();
        assert!(report(dir.path()).unwrap().torn_tail.is_some());
    }
    // The real open cuts the torn tail and continues.
    let dir = copy_vault(base.path());
    let path = file(dir.path(), name);
    let (start, end) = fr[fr.len() - 1];
    std::fs::write(&path, &full[..(start + end) / 2]).unwrap();
    let (vault, e, rec) = open_with(dir.path(), opts(&secret(1)), &clock()).unwrap();
    let torn = rec.torn_tail.expect("reported");
    assert_eq!(torn.offset, start as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), start as u64, "cut at the last whole record");
    e.sandbox("cache").unwrap().set("later", b"x", CreateOptions::new()).unwrap();
    vault.close().unwrap();
    drop(e);
    let r = report(dir.path()).unwrap();
    assert!(r.torn_tail.is_none());
    assert_eq!(r.journal_changes, total - 1 + 1);
}

#[test]
fn truncating_anything_else_is_an_error() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    for name in ["journal.000002", "snapshot.000002"] {
        let full = std::fs::read(file(base.path(), name)).unwrap();
        let fr = frames(&full);
        let mut cuts: Vec<usize> = vec![0, 8, HEADER - 1, HEADER];
        for &(start, end) in &fr[..fr.len() - 1] {
            cuts.extend([end, start + 4, (start + end) / 2]);
        }
        let (s, e) = fr[fr.len() - 1];
        cuts.extend([s, (s + e) / 2, e - 1]);
        for cut in cuts {
            let dir = copy_vault(base.path());
            std::fs::write(file(dir.path(), name), &full[..cut]).unwrap();
            match report(dir.path()) {
                Err(e) => {
                    assert!(e.is_corruption() || matches!(e, VaultError::NotAVault { .. }), "{name} cut at {cut}: {e}")
                }
                Ok(r) => panic!("{name} cut at {cut} went unnoticed: {r:?}"),
            }
        }
    }
    // A failed open leaves the files as they were.
    let dir = copy_vault(base.path());
    let path = file(dir.path(), "journal.000002");
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    assert!(Opened::open(dir.path(), opts(&secret(1))).is_err());
    assert_eq!(std::fs::read(&path).unwrap().len(), full.len() - 3);
}
