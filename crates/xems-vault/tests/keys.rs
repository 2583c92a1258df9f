//! Secrets and ownership: a wrong secret, secret rotation with a keyring,
//! `rekey`, hardware binding moved to another machine, one owner per vault.

mod common;

use common::*;
use xems_core::{CreateOptions, Keyring, ResolveOptions};
use xems_testkit::logs::marked;
use xems_vault::{MachineId, Opened, VaultError, VaultOptions, inspect, rewrite};

fn key_ids(dir: &std::path::Path, ring: Keyring) -> Vec<String> {
    let r = inspect(dir, VaultOptions::new(ring).clock(clock())).unwrap();
    r.files.iter().map(|f| f.key_id.to_string()).collect()
}

#[test]
fn a_wrong_secret_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let (vault, e, _) = open(dir.path(), &secret(1), &clock);
    e.sandbox("s").unwrap().set("k", b"v", CreateOptions::new()).unwrap();
    vault.close().unwrap();
    drop(e);
    let err = open_with(dir.path(), opts(&secret(2)), &clock).err().unwrap();
    assert!(matches!(err, VaultError::WrongSecret { .. }), "{err}");
    assert!(err.to_string().starts_with("wrong secret or not a xems vault"), "{err}");
    assert!(err.to_string().contains(&secret(1).key_id().to_string()), "names the vault's key id: {err}");
    // Nothing was changed by the failed open.
    assert_eq!(vault_files(dir.path()).len(), 1);
    // A file that is not a vault file under a vault file's name.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("journal.000001"), b"{\"sessions\": []}").unwrap();
    let err = open_with(other.path(), opts(&secret(1)), &clock).err().unwrap();
    assert!(err.to_string().starts_with("wrong secret or not a xems vault"), "{err}");
    // A directory holding something else is never written into.
    let busy = tempfile::tempdir().unwrap();
    std::fs::write(busy.path().join("notes.txt"), b"mine").unwrap();
    let err = open_with(busy.path(), opts(&secret(1)), &clock).err().unwrap();
    assert!(matches!(err, VaultError::NotAVaultDir(_)), "{err}");
    // A path that is a file.
    let file = other.path().join("journal.000001");
    let err = open_with(&file, opts(&secret(1)), &clock).err().unwrap();
    assert!(err.to_string().contains("takes a directory"), "{err}");
}

#[test]
fn secret_rotation_then_rekey() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let (old, new) = (secret(1), secret(2));
    let (vault, e, _) = open(dir.path(), &old, &clock);
    let token =
        e.sandbox("active").unwrap().create(marked("before rotation").as_bytes(), CreateOptions::new()).unwrap().token;
    vault.close().unwrap();
    drop(e);

    // Rotated: --secret new --previous-secret old.
    let ring = Keyring::new(new.clone()).with_previous(old.clone()).unwrap();
    let (vault, e, r) = open_with(dir.path(), VaultOptions::new(ring.clone()), &clock).unwrap();
    assert_eq!(r.restored, 1);
    let a = e.sandbox("active").unwrap();
    // Tokens still resolve: the index keys come from the vault's data root.
    let rotated = a.resolve(token.expose(), ResolveOptions::rotating()).unwrap().expect("old token resolves");
    let token2 = rotated.token.unwrap();
    a.set("written", marked("under the new secret").as_bytes(), CreateOptions::new()).unwrap();
    vault.close().unwrap();
    drop(e);
    let ids = key_ids(dir.path(), ring.clone());
    assert_eq!(ids, [old.key_id().to_string(), new.key_id().to_string()], "old segment, then the new one");
    // The new secret alone cannot read the old segment yet.
    let err = inspect(dir.path(), VaultOptions::new(Keyring::new(new.clone()))).unwrap_err();
    assert!(matches!(err, VaultError::WrongSecret { .. }), "{err}");

    // Rekey: everything under the new secret only.
    let mut calls = 0;
    let done = rewrite(dir.path(), VaultOptions::new(ring).clock(clock.clone()), &mut |_, _| calls += 1).unwrap();
    assert!(calls >= 1);
    assert_eq!(done.records, 2);
    assert_eq!(done.key_id, new.key_id());
    assert!(done.key_ids_before.contains(&old.key_id()));
    assert!(done.files.iter().all(|f| f.key_id == new.key_id()), "{:?}", done.files);
    let (_vault, e, r) = open(dir.path(), &new, &clock);
    assert_eq!(r.restored, 2);
    let a = e.sandbox("active").unwrap();
    assert_eq!(a.get(token2.expose()).unwrap().unwrap().value.as_bytes(), marked("before rotation").as_bytes());
    assert_eq!(a.get("written").unwrap().unwrap().value.as_bytes(), marked("under the new secret").as_bytes());
    let g = a.resolve(token.expose(), ResolveOptions::new()).unwrap().expect("the rotated-away token is in grace");
    assert_eq!(g.token.unwrap(), token2, "a grace hit after the rekey names the current token");
    // The old secret no longer opens it.
    drop(_vault);
    let err = inspect(dir.path(), VaultOptions::new(Keyring::new(old))).unwrap_err();
    assert!(matches!(err, VaultError::WrongSecret { .. }), "{err}");
}

#[test]
fn online_compaction_moves_everything_to_the_new_secret() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let (old, new) = (secret(3), secret(4));
    let (vault, e, _) = open(dir.path(), &old, &clock);
    e.sandbox("s").unwrap().set("k", b"v", CreateOptions::new()).unwrap();
    vault.close().unwrap();
    drop(e);
    let ring = Keyring::new(new.clone()).with_previous(old).unwrap();
    let (vault, e, _) = open_with(dir.path(), VaultOptions::new(ring), &clock).unwrap();
    vault.compact(&e).unwrap();
    vault.close().unwrap();
    drop(e);
    let ids = key_ids(dir.path(), Keyring::new(new.clone()));
    assert!(ids.iter().all(|i| *i == new.key_id().to_string()), "{ids:?}");
}

#[test]
fn hardware_binding() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let s = secret(5);
    let (a, b) = (MachineId::from_bytes(b"machine-a"), MachineId::from_bytes(b"machine-b"));
    let bound = |m: &MachineId| opts(&s).hardware_bind(true).machine_id(m.clone());
    let (vault, e, _) = open_with(dir.path(), bound(&a), &clock).unwrap();
    e.sandbox("s").unwrap().set("k", b"v", CreateOptions::new()).unwrap();
    vault.close().unwrap();
    drop(e);
    // Moved to another machine: a clear error, not "wrong secret".
    let err = open_with(dir.path(), bound(&b), &clock).err().unwrap();
    assert!(matches!(err, VaultError::OtherMachine { .. }), "{err}");
    assert!(err.to_string().contains("another machine"), "{err}");
    let err = open_with(dir.path(), opts(&s).machine_id(b.clone()), &clock).err().unwrap();
    assert!(matches!(err, VaultError::OtherMachine { .. }), "without --hardware-bind too: {err}");
    // On its machine it opens, with or without the flag, and stays bound.
    let (vault, e, r) = open_with(dir.path(), opts(&s).machine_id(a.clone()), &clock).unwrap();
    assert_eq!(r.restored, 1);
    vault.close().unwrap();
    drop(e);
    let report = inspect(dir.path(), opts(&s).machine_id(a.clone())).unwrap();
    assert!(report.hardware_bound && report.files.iter().all(|f| f.hardware_bound));
    // Unbinding (on its machine) lets it move.
    rewrite(dir.path(), opts(&s).machine_id(a.clone()), &mut |_, _| {}).unwrap();
    let (_vault, _e, r) = open_with(dir.path(), opts(&s).machine_id(b.clone()), &clock).unwrap();
    assert_eq!(r.restored, 1);
    drop(_vault);
    // Asking to bind a vault that is not bound is refused with the way to do it.
    let err = open_with(dir.path(), bound(&b), &clock).err().unwrap();
    assert!(err.to_string().contains("rekey --hardware-bind"), "{err}");
    rewrite(dir.path(), bound(&b), &mut |_, _| {}).unwrap();
    assert!(matches!(open_with(dir.path(), bound(&a), &clock).err().unwrap(), VaultError::OtherMachine { .. }));
}

#[test]
fn one_owner_per_vault() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let (vault, _e, _) = open(dir.path(), &secret(6), &clock);
    let err = Opened::open(dir.path(), opts(&secret(6))).unwrap_err();
    match &err {
        VaultError::InUse { pid, .. } => assert_eq!(*pid, std::process::id()),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&format!("vault in use by PID {}", std::process::id())), "{err}");
    // The tools refuse too.
    assert!(matches!(inspect(dir.path(), opts(&secret(6))), Err(VaultError::InUse { .. })));
    drop(vault);
    assert!(Opened::open(dir.path(), opts(&secret(6))).is_ok());
}
