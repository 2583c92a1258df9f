//! A restart restores every live record exactly: values, versions, TTLs,
//! rotation state (grace windows, retired tokens), subjects; expired records
//! are dropped. With and without compaction in between.

mod common;

use std::time::Duration;

use common::*;
use xems_core::{Clock, CreateOptions, ResolveOptions, ResolveOutcome, ValueForm};
use xems_testkit::logs::marked;

fn scenario(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(1);
    let clock = clock();
    let (vault, e1, r) = open(dir.path(), &s, &clock);
    assert_eq!(r.restored, 0);
    let active = e1.sandbox("active").unwrap();
    let pending = e1.sandbox("otp-pending").unwrap();
    let a0 = active.create(marked("alpha").as_bytes(), CreateOptions::new().with_subject("u1")).unwrap().token;
    let a1 = active
        .resolve(a0.expose(), ResolveOptions::rotating().with_grace(Duration::from_millis(100)))
        .unwrap()
        .unwrap()
        .token
        .unwrap();
    clock.advance(Duration::from_millis(500));
    let a2 = active
        .resolve(a1.expose(), ResolveOptions::rotating().with_grace(Duration::from_secs(55)))
        .unwrap()
        .unwrap()
        .token
        .unwrap();
    active.set("user:1:profile", b"v1", CreateOptions::new()).unwrap();
    active.set("user:1:profile", b"v3", CreateOptions::new().with_ttl(Duration::from_secs(3600))).unwrap();
    let t = active.create(b"touched", CreateOptions::new().with_ttl(Duration::from_secs(60))).unwrap().token;
    let short = active.create(b"short", CreateOptions::new().with_ttl(Duration::from_secs(40))).unwrap().token;
    clock.advance(Duration::from_secs(30));
    active.touch(t.expose(), None).unwrap().unwrap();
    let gone = active.create(b"gone", CreateOptions::new()).unwrap().token;
    assert!(active.del(gone.expose()).unwrap());
    let temp = pending.create(b"temp", CreateOptions::new()).unwrap().token;
    let moved =
        pending.migrate(temp.expose(), &active, None, CreateOptions::new().with_subject("u1")).unwrap().unwrap().token;
    if compact {
        let c = vault.compact(&e1).unwrap();
        assert_eq!(c.records, 5);
        // Writes after the compaction land in the new journal segment.
        active.set("after", b"compaction", CreateOptions::new()).unwrap();
    }
    vault.close().unwrap();
    drop(e1);

    // 20 s later: `short` (40 s TTL, 30 s in) has expired.
    clock.advance(Duration::from_secs(20));
    let (vault, e2, r) = open(dir.path(), &s, &clock);
    assert_eq!(r.restored, if compact { 5 } else { 4 }, "{r:?}");
    assert_eq!(r.expired, 1, "{r:?}");
    let active = e2.sandbox("active").unwrap();
    let got = active.resolve(a2.expose(), ResolveOptions::new()).unwrap().expect("current token resolves");
    assert_eq!(got.value.as_bytes(), marked("alpha").as_bytes());
    let g = active.resolve(a1.expose(), ResolveOptions::new()).unwrap().expect("in grace after restart");
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.unwrap(), a2, "a grace hit names the current token");
    let p = active.get("user:1:profile").unwrap().unwrap();
    assert_eq!((p.value.as_bytes(), p.meta.version), (&b"v3"[..], 2));
    assert_eq!(p.meta.ttl.as_millis(), 3_600_000);
    let touched = active.get(t.expose()).unwrap().unwrap();
    assert_eq!(touched.meta.expires_at.as_millis(), T0 + 500 + 30_000 + 60_000);
    assert!(active.get(short.expose()).unwrap().is_none(), "expired");
    assert!(active.get(gone.expose()).unwrap().is_none());
    assert!(e2.sandbox("otp-pending").unwrap().get(temp.expose()).unwrap().is_none());
    assert_eq!(active.get(moved.expose()).unwrap().unwrap().value.as_bytes(), b"temp");
    assert_eq!(active.list_subject("u1").unwrap().len(), 2);
    if compact {
        assert_eq!(active.get("after").unwrap().unwrap().value.as_bytes(), b"compaction");
    }
    // A token past its grace is still remembered: replaying it revokes.
    assert!(active.resolve(a0.expose(), ResolveOptions::new()).unwrap().is_none());
    assert!(active.get(a2.expose()).unwrap().is_none(), "reuse after restart revokes the session");
    // ... and the revocation itself is journaled.
    vault.close().unwrap();
    drop(e2);
    let (_vault, e3, _) = open(dir.path(), &s, &clock);
    assert!(e3.sandbox("active").unwrap().get(a2.expose()).unwrap().is_none());
    assert!(e3.sandbox("active").unwrap().get(moved.expose()).unwrap().is_some());
    assert!(clock.now().as_millis() > T0);
}

#[test]
fn restart_from_the_journal() {
    scenario(false);
}

#[test]
fn restart_from_a_snapshot_and_journal() {
    scenario(true);
}

#[test]
fn many_restarts_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(2);
    let clock = clock();
    let mut expected: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
    for round in 0..6u32 {
        let (vault, e, r) = open(dir.path(), &s, &clock);
        assert_eq!(r.restored as usize, expected.len(), "round {round}");
        let sb = e.sandbox("cache").unwrap();
        for (k, v) in &expected {
            assert_eq!(sb.get(k).unwrap().expect(k).value.as_bytes(), v.as_slice(), "round {round}");
        }
        for i in 0..50u32 {
            let k = format!("k{}", (round * 31 + i) % 97);
            let v = format!("round {round} item {i}").into_bytes();
            sb.set(&k, &v, CreateOptions::new()).unwrap();
            expected.insert(k, v);
            if i % 7 == 0 {
                let k = format!("k{}", (round * 13 + i) % 97);
                sb.del(&k).unwrap();
                expected.remove(&k);
            }
            if round % 2 == 1 && i == 25 {
                vault.compact(&e).unwrap();
            }
        }
        if round == 4 {
            // Dropped without close: the writer still syncs on drop.
            drop(vault);
        } else {
            vault.close().unwrap();
        }
    }
    // Old generations are removed by compaction and at open.
    assert!(vault_files(dir.path()).len() <= 3, "{:?}", vault_files(dir.path()));
}

/// A journaling engine keeps values given in their JSON form as raw bytes
/// (the journal and snapshots take raw bytes): they restart as the values
/// they stood for.
#[test]
fn values_given_in_their_json_form_restart_raw() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(3);
    let clock = clock();
    let in_json = || CreateOptions::new().with_value_form(ValueForm::Json);
    let takes_json = ResolveOptions::new().with_value_form(ValueForm::Json);
    let (vault, e1, _) = open(dir.path(), &s, &clock);
    let active = e1.sandbox("active").unwrap();
    active.set("k", br#"{\"a\":\"b\\c\n\u0001\"}"#, in_json()).unwrap();
    let t = active.create(br#"\"quoted\""#, in_json()).unwrap().token;
    let got = active.resolve("k", takes_json).unwrap().unwrap();
    assert_eq!((got.value.form(), got.value.as_bytes()), (ValueForm::Raw, &b"{\"a\":\"b\\c\n\x01\"}"[..]));
    vault.close().unwrap();
    drop(e1);

    let (_vault, e2, r) = open(dir.path(), &s, &clock);
    assert_eq!(r.restored, 2, "{r:?}");
    let active = e2.sandbox("active").unwrap();
    assert_eq!(active.get("k").unwrap().unwrap().value.as_bytes(), b"{\"a\":\"b\\c\n\x01\"}");
    assert_eq!(active.resolve(t.expose(), takes_json).unwrap().unwrap().value.as_bytes(), b"\"quoted\"");
}
