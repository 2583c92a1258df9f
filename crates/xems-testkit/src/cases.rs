//! The conformance cases. Each is generic over a [`Backend`] and panics
//! with a message saying what went wrong.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use xems_core::{
    CreateOptions, Refresh, ResolveOptions, ResolveOutcome, Resolved, Rotation, SessionStore, UpdateOutcome, Value,
    ValueForm,
};

use crate::{Backend, Harness, Setup, stats};

const SEC: Duration = Duration::from_secs(1);

/// `$text`, a space and the leak marker ([`crate::logs::MARKER`]), as
/// bytes. The cases' values carry the marker so that the whole-suite log
/// scan finds any value that reaches a log line.
macro_rules! marked {
    ($text:literal) => {
        concat!($text, " ", marker!()).as_bytes()
    };
}

/// The value most cases store.
const V: &[u8] = marked!("v");
/// JSON values, as an application stores them.
const USER_42: &[u8] = concat!(r#"{"user":42,"note":""#, marker!(), r#""}"#).as_bytes();
const USER_7: &[u8] = concat!(r#"{"user":7,"note":""#, marker!(), r#""}"#).as_bytes();

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn start<B: Backend>() -> B::Harness {
    B::start(Setup::standard()).await
}

fn rotating(grace: Duration) -> ResolveOptions {
    ResolveOptions::rotating().with_grace(grace)
}

async fn resolve<S: SessionStore>(s: &S, sandbox: &str, token: &str, opts: ResolveOptions) -> Option<Resolved> {
    s.resolve(sandbox, token, opts).await.expect("resolve does not fail")
}

async fn new_token<S: SessionStore>(s: &S, sandbox: &str, value: &[u8], opts: CreateOptions) -> String {
    s.create(sandbox, value, opts).await.expect("create").token.expose().to_owned()
}

/// A session created with `create` resolves to its value, version 1.
pub async fn create_then_resolve<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let created = s.create("active", USER_42, CreateOptions::new()).await.unwrap();
    // At least 256 bits in URL- and cookie-safe base64.
    let text = created.token.expose();
    assert!(text.len() >= 43, "a token carries at least 256 bits: {} characters", text.len());
    assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "URL- and cookie-safe");
    assert_eq!(created.meta.version, 1);
    assert_eq!(created.meta.ttl, xems_core::DEFAULT_TTL);
    let r = resolve(s, "active", created.token.expose(), ResolveOptions::new()).await.expect("live");
    assert_eq!(r.value.as_bytes(), USER_42);
    assert_eq!(r.outcome, ResolveOutcome::Current);
    assert!(r.token.is_none(), "no rotation asked: no new token");
    assert_eq!(r.meta.id, created.meta.id);
    let other = s.create("active", b"x", CreateOptions::new()).await.unwrap();
    assert_ne!(other.token, created.token);
    assert_ne!(other.meta.id, created.meta.id);
    assert!(stats(s).await.counters.created >= 2);
}

/// Caller keys: set, get, replace (version bump), exists, del.
pub async fn caller_keys_set_get_del_exists<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let key = concat!("9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617-", marker!());
    let m1 = s.set("otp-pending", key, marked!("one"), CreateOptions::new().with_ttl(120 * SEC)).await.unwrap();
    assert_eq!(m1.version, 1);
    assert_eq!(m1.ttl, 120 * SEC);
    assert!(s.exists("otp-pending", key).await.unwrap());
    let got = s.get("otp-pending", key).await.unwrap().expect("set then get");
    assert_eq!(got.value.as_bytes(), marked!("one"));
    let m2 = s.set("otp-pending", key, marked!("two"), CreateOptions::new()).await.unwrap();
    assert_eq!(m2.version, 2, "replacing bumps the version");
    assert_eq!(m2.id, m1.id, "replacing keeps the record");
    assert_eq!(s.get("otp-pending", key).await.unwrap().unwrap().value.as_bytes(), marked!("two"));
    assert!(s.del("otp-pending", key).await.unwrap());
    assert!(!s.del("otp-pending", key).await.unwrap(), "second delete finds nothing");
    assert!(!s.exists("otp-pending", key).await.unwrap());
    assert!(s.get("otp-pending", key).await.unwrap().is_none());
}

/// Unknown tokens and keys are plain misses, not errors.
pub async fn unknown_addresses<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let fake = xems_core::Token::mint(3);
    assert!(resolve(s, "active", fake.expose(), ResolveOptions::rotating()).await.is_none());
    assert!(s.get("active", "no-such-key").await.unwrap().is_none());
    assert!(!s.exists("active", "no-such-key").await.unwrap());
    assert!(!s.del("active", "no-such-key").await.unwrap());
    assert!(s.touch("active", "no-such-key", None).await.unwrap().is_none());
    assert_eq!(s.update_if("active", "no-such-key", 1, b"x").await.unwrap(), UpdateOutcome::NotFound);
    assert!(s.migrate("active", fake.expose(), "other", None, CreateOptions::new()).await.unwrap().is_none());
    assert_eq!(stats(s).await.counters.rotated, 0, "a miss never mints");
}

/// A token or key of sandbox A never resolves in sandbox B.
pub async fn sandboxes_are_isolated<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t = new_token(s, "sandbox-a", marked!("secret-a"), CreateOptions::new()).await;
    assert!(resolve(s, "sandbox-b", &t, ResolveOptions::rotating()).await.is_none());
    assert!(!s.exists("sandbox-b", &t).await.unwrap());
    assert!(!s.del("sandbox-b", &t).await.unwrap());
    s.set("sandbox-a", "shared-key", b"in a", CreateOptions::new()).await.unwrap();
    assert!(s.get("sandbox-b", "shared-key").await.unwrap().is_none());
    s.set("sandbox-b", "shared-key", b"in b", CreateOptions::new()).await.unwrap();
    assert_eq!(s.get("sandbox-a", "shared-key").await.unwrap().unwrap().value.as_bytes(), b"in a");
    assert_eq!(s.get("sandbox-b", "shared-key").await.unwrap().unwrap().value.as_bytes(), b"in b");
    // Still resolvable where it belongs, after the attempts elsewhere.
    assert_eq!(resolve(s, "sandbox-a", &t, ResolveOptions::new()).await.unwrap().value.as_bytes(), marked!("secret-a"));
}

/// Malformed requests are errors with stable codes; nothing is lost.
pub async fn bad_input_is_a_clear_error<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t = new_token(s, "active", marked!("keep me"), CreateOptions::new()).await;
    for bad in ["", "has space", "slash/no", &"x".repeat(65)] {
        let e = s.create(bad, V, CreateOptions::new()).await.unwrap_err();
        assert_eq!(e.code(), "invalid_sandbox", "{bad:?}: {e}");
        let e = s.get(bad, "k").await.unwrap_err();
        assert_eq!(e.code(), "invalid_sandbox", "{bad:?}: {e}");
    }
    let e = s.get("active", "").await.unwrap_err();
    assert_eq!(e.code(), "invalid_key", "{e}");
    let e = s.set("active", &"k".repeat(513), V, CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_key", "{e}");
    let e = s.resolve("active", &t, rotating(56 * SEC)).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "a grace above 55 s: {e}");
    let e = s.create("active", V, CreateOptions::new().with_ttl(Duration::ZERO)).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "a zero TTL: {e}");
    let e = s.create("active", V, CreateOptions::new().with_subject("")).await.unwrap_err();
    assert_eq!(e.code(), "invalid_key", "an empty subject: {e}");
    // The session created before all this is untouched, and no failed call
    // rotated it.
    let r = resolve(s, "active", &t, ResolveOptions::new()).await.expect("still there");
    assert_eq!(r.value.as_bytes(), marked!("keep me"));
    assert_eq!(r.meta.version, 1);
}

/// Resolving with rotation mints one successor; the old token within its
/// grace returns that successor and mints nothing.
pub async fn rotation_mints_one_successor_and_grace_returns_it<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t0 = new_token(s, "active", V, CreateOptions::new()).await;
    let r1 = resolve(s, "active", &t0, rotating(SEC)).await.expect("current token resolves");
    assert_eq!(r1.outcome, ResolveOutcome::Rotated);
    let t1 = r1.token.expect("rotation returns the successor");
    assert_ne!(t1.expose(), t0);
    assert_eq!(r1.value.as_bytes(), V);
    h.advance(ms(500)).await;
    let before = stats(s).await.counters;
    let g = resolve(s, "active", &t0, rotating(SEC)).await.expect("old token within grace");
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.as_ref().expect("grace hit names the current token"), &t1);
    assert_eq!(g.value.as_bytes(), V);
    let after = stats(s).await.counters;
    assert_eq!(after.rotated, before.rotated, "a grace hit never mints");
    assert_eq!(after.grace_hits, before.grace_hits + 1);
    // The successor is the current token: it rotates in turn.
    let r2 = resolve(s, "active", t1.expose(), rotating(SEC)).await.expect("successor resolves");
    assert_eq!(r2.outcome, ResolveOutcome::Rotated);
    let t2 = r2.token.unwrap();
    // The first token, still within its window, now leads to the newest.
    let g = resolve(s, "active", &t0, ResolveOptions::new()).await.expect("still in grace");
    assert_eq!(g.token.as_ref(), Some(&t2));
}

/// A rotated token presented after its grace is refused, the session is
/// revoked, and the reuse is counted.
pub async fn reuse_after_grace_revokes_the_session<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t0 = new_token(s, "active", V, CreateOptions::new()).await;
    let t1 = resolve(s, "active", &t0, rotating(SEC)).await.unwrap().token.unwrap();
    h.advance(SEC).await;
    let before = stats(s).await.counters.reuse_detected;
    assert!(resolve(s, "active", &t0, rotating(SEC)).await.is_none(), "replay after grace is refused");
    assert_eq!(stats(s).await.counters.reuse_detected, before + 1, "reuse is reported");
    assert!(
        resolve(s, "active", t1.expose(), ResolveOptions::new()).await.is_none(),
        "the whole session is revoked, current token included"
    );
    assert!(!s.exists("active", t1.expose()).await.unwrap());
}

/// With the reuse policy set to refuse the token only, the session lives on.
pub async fn reuse_policy_can_refuse_only_the_token<B: Backend>() {
    let h = B::start(Setup::refuse_token_on_reuse()).await;
    let s = h.store();
    let t0 = new_token(s, "active", V, CreateOptions::new()).await;
    let t1 = resolve(s, "active", &t0, rotating(SEC)).await.unwrap().token.unwrap();
    h.advance(2 * SEC).await;
    assert!(resolve(s, "active", &t0, ResolveOptions::new()).await.is_none());
    assert_eq!(stats(s).await.counters.reuse_detected, 1);
    assert_eq!(resolve(s, "active", t1.expose(), ResolveOptions::new()).await.unwrap().value.as_bytes(), V);
}

/// A grace of zero retires the old token at once.
pub async fn zero_grace_retires_at_once<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t0 = new_token(s, "active", V, CreateOptions::new()).await;
    let t1 = resolve(s, "active", &t0, rotating(Duration::ZERO)).await.unwrap().token.unwrap();
    h.advance(ms(1)).await;
    assert!(resolve(s, "active", &t0, ResolveOptions::new()).await.is_none());
    assert!(resolve(s, "active", t1.expose(), ResolveOptions::new()).await.is_none(), "replay revoked the session");
}

/// 64 tasks resolve one token with rotation at once: all succeed, exactly
/// one successor is minted, all receive it.
pub async fn concurrent_resolves_converge_on_one_successor<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store().clone();
    let t0 = new_token(&s, "active", marked!("burst"), CreateOptions::new()).await;
    let before = stats(&s).await.counters.rotated;
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (s, t0, barrier) = (s.clone(), t0.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.resolve("active", &t0, rotating(SEC)).await
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    let mut rotated = 0;
    for task in tasks {
        let r = task.await.expect("task").expect("no error").expect("every resolve succeeds");
        assert_eq!(r.value.as_bytes(), marked!("burst"));
        if r.outcome == ResolveOutcome::Rotated {
            rotated += 1;
        }
        tokens.insert(r.token.expect("each answer names the successor").expose().to_owned());
    }
    assert_eq!(rotated, 1, "exactly one resolve rotates");
    assert_eq!(tokens.len(), 1, "all 64 receive the same successor");
    assert_eq!(stats(&s).await.counters.rotated, before + 1, "exactly one successor minted");
    assert!(!tokens.contains(&t0));
}

/// The dashboard burst: 50 rounds of 12 concurrent rotating resolves, each
/// round sending the tokens the previous rounds returned (old and new mixed,
/// as a browser does). Zero failures.
pub async fn dashboard_burst_never_fails<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store().clone();
    let t0 = new_token(&s, "active", marked!("dashboard"), CreateOptions::new()).await;
    let before = stats(&s).await.counters.rotated;
    // What the cookie jar holds for each widget: the last token its response
    // carried. Every third widget lags one round behind.
    let mut jar = vec![t0.clone(); 12];
    let mut previous = jar.clone();
    let mut failures = 0;
    for _round in 0..50 {
        let sent: Vec<String> =
            (0..12).map(|i| if i % 3 == 0 { previous[i].clone() } else { jar[i].clone() }).collect();
        let tasks: Vec<_> = sent
            .iter()
            .cloned()
            .map(|token| {
                let s = s.clone();
                tokio::spawn(async move { s.resolve("active", &token, rotating(SEC)).await })
            })
            .collect();
        previous = jar.clone();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("task") {
                Ok(Some(r)) => {
                    assert_eq!(r.value.as_bytes(), marked!("dashboard"));
                    jar[i] = r.token.map(|t| t.expose().to_owned()).unwrap_or_else(|| sent[i].clone());
                }
                Ok(None) | Err(_) => failures += 1,
            }
        }
        h.advance(ms(10)).await;
    }
    assert_eq!(failures, 0, "no request of the burst may fail");
    assert_eq!(stats(&s).await.counters.rotated, before + 50, "one rotation per round, never a cascade");
}

/// `Rotation::OlderThan` rotates by the store's clock.
pub async fn interval_rotation_follows_the_store_clock<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let every5m = ResolveOptions::new().with_rotation(Rotation::OlderThan(300 * SEC)).with_refresh(Refresh::Idle);
    let t0 = new_token(s, "active", V, CreateOptions::new()).await;
    let r = resolve(s, "active", &t0, every5m).await.unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Current);
    h.advance(240 * SEC).await;
    assert_eq!(resolve(s, "active", &t0, every5m).await.unwrap().outcome, ResolveOutcome::Current);
    h.advance(60 * SEC).await;
    let r = resolve(s, "active", &t0, every5m).await.unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Rotated, "five minutes old: rotate");
    let t1 = r.token.unwrap();
    h.advance(60 * SEC).await;
    assert_eq!(resolve(s, "active", t1.expose(), every5m).await.unwrap().outcome, ResolveOutcome::Current);
}

/// Rotation keeps the session's id, creation time and absolute deadline.
pub async fn rotation_keeps_identity_and_lifetime<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let c = s.create("active", V, CreateOptions::new().with_absolute_ttl(3600 * SEC)).await.unwrap();
    h.advance(10 * SEC).await;
    let r = resolve(s, "active", c.token.expose(), rotating(SEC)).await.unwrap();
    assert_eq!(r.meta.id, c.meta.id);
    assert_eq!(r.meta.created_at, c.meta.created_at);
    assert_eq!(r.meta.absolute_deadline, c.meta.absolute_deadline);
    assert_eq!(r.meta.version, c.meta.version, "rotation does not write the value");
}

/// A record is live until the millisecond before its deadline, gone at it.
pub async fn ttl_exact_expiry_instant<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t = new_token(s, "active", V, CreateOptions::new().with_ttl(10 * SEC)).await;
    s.set("active", "key", b"k", CreateOptions::new().with_ttl(10 * SEC)).await.unwrap();
    h.advance(ms(9_999)).await;
    assert!(resolve(s, "active", &t, ResolveOptions::new()).await.is_some(), "1 ms before the deadline");
    assert!(s.exists("active", "key").await.unwrap());
    h.advance(ms(1)).await;
    assert!(resolve(s, "active", &t, ResolveOptions::new()).await.is_none(), "at the deadline");
    assert!(!s.exists("active", "key").await.unwrap());
}

/// TTLs above five days are cut to five days, and reported as cut.
pub async fn ttl_is_capped_at_five_days<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let c = s.create("active", V, CreateOptions::new().with_ttl(6 * 86_400 * SEC)).await.unwrap();
    assert_eq!(c.meta.ttl, xems_core::MAX_TTL);
    assert!(c.meta.ttl_capped);
    let ok = s.create("active", V, CreateOptions::new().with_ttl(xems_core::MAX_TTL)).await.unwrap();
    assert!(!ok.meta.ttl_capped);
    h.advance(xems_core::MAX_TTL - ms(1)).await;
    assert!(resolve(s, "active", c.token.expose(), ResolveOptions::new()).await.is_some());
    h.advance(ms(1)).await;
    assert!(resolve(s, "active", c.token.expose(), ResolveOptions::new()).await.is_none());
}

/// Refreshing slides the idle expiry but never past the absolute deadline.
pub async fn idle_versus_absolute_lifetime<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let opts = CreateOptions::new().with_ttl(600 * SEC).with_absolute_ttl(1800 * SEC);
    let t = new_token(s, "active", V, opts).await;
    let idle = ResolveOptions::new().with_refresh(Refresh::Idle);
    for _ in 0..3 {
        h.advance(540 * SEC).await;
        let r = resolve(s, "active", &t, idle).await.expect("refreshed in time");
        assert!(r.meta.expires_at <= r.meta.absolute_deadline);
    }
    // 27 minutes in: the idle expiry would allow 37, the absolute says 30.
    h.advance(179 * SEC).await;
    assert!(resolve(s, "active", &t, idle).await.is_some(), "29:59");
    h.advance(SEC).await;
    assert!(resolve(s, "active", &t, idle).await.is_none(), "absolute deadline reached");
    // Without refresh, the idle TTL ends the session.
    let t = new_token(s, "active", V, CreateOptions::new().with_ttl(600 * SEC)).await;
    h.advance(300 * SEC).await;
    assert!(s.get("active", &t).await.unwrap().is_some());
    h.advance(300 * SEC).await;
    assert!(s.get("active", &t).await.unwrap().is_none(), "get does not slide the expiry");
}

/// `Refresh::To` sets a new TTL; `touch` slides without reading.
pub async fn refresh_and_touch<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t = new_token(s, "active", V, CreateOptions::new().with_ttl(60 * SEC)).await;
    let r = resolve(s, "active", &t, ResolveOptions::new().with_refresh(Refresh::To(3600 * SEC))).await.unwrap();
    assert_eq!(r.meta.ttl, 3600 * SEC);
    h.advance(1800 * SEC).await;
    let m = s.touch("active", &t, None).await.unwrap().expect("touch a live session");
    assert_eq!(m.ttl, 3600 * SEC);
    h.advance(3000 * SEC).await;
    assert!(s.exists("active", &t).await.unwrap(), "touch slid the expiry");
    let m = s.touch("active", &t, Some(10 * SEC)).await.unwrap().unwrap();
    assert_eq!(m.ttl, 10 * SEC);
    h.advance(10 * SEC).await;
    assert!(!s.exists("active", &t).await.unwrap());
}

/// Migration moves a session to another sandbox: the old token is dead at
/// once, the new one resolves there with the value (or a new value).
pub async fn migrate_is_atomic<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let temp = new_token(s, "otp-pending", USER_7, CreateOptions::new().with_ttl(120 * SEC)).await;
    let before = stats(s).await.counters.migrated;
    let moved = s
        .migrate("otp-pending", &temp, "active", None, CreateOptions::new().with_subject("user-7"))
        .await
        .unwrap()
        .expect("the temporary session migrates");
    assert_eq!(stats(s).await.counters.migrated, before + 1);
    assert_ne!(moved.token.expose(), temp);
    assert_eq!(moved.meta.ttl, xems_core::DEFAULT_TTL, "the new session has its own lifetime");
    assert!(resolve(s, "otp-pending", &temp, ResolveOptions::new()).await.is_none(), "temporary token is dead");
    assert!(resolve(s, "active", &temp, ResolveOptions::new()).await.is_none(), "and never valid in the target");
    let r = resolve(s, "active", moved.token.expose(), ResolveOptions::new()).await.unwrap();
    assert_eq!(r.value.as_bytes(), USER_7);
    assert_eq!(s.list_subject("active", "user-7").await.unwrap().len(), 1);
    // A second migration of the same temporary token finds nothing.
    assert!(s.migrate("otp-pending", &temp, "active", None, CreateOptions::new()).await.unwrap().is_none());
    // With a new value.
    let temp2 = new_token(s, "otp-pending", b"old", CreateOptions::new()).await;
    let moved2 = s.migrate("otp-pending", &temp2, "active", Some(b"new"), CreateOptions::new()).await.unwrap().unwrap();
    assert_eq!(
        resolve(s, "active", moved2.token.expose(), ResolveOptions::new()).await.unwrap().value.as_bytes(),
        b"new"
    );
    // A full target refuses, and the source session survives.
    for i in 0..5 {
        s.set("tiny", &format!("k{i}"), b"x", CreateOptions::new()).await.unwrap();
    }
    let temp3 = new_token(s, "otp-pending", b"keep", CreateOptions::new()).await;
    let e = s.migrate("otp-pending", &temp3, "tiny", None, CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "sandbox_full");
    assert_eq!(resolve(s, "otp-pending", &temp3, ResolveOptions::new()).await.unwrap().value.as_bytes(), b"keep");
}

/// `update_if` writes only at the expected version.
pub async fn update_if_is_compare_and_set<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let t = new_token(s, "active", b"v1", CreateOptions::new()).await;
    let UpdateOutcome::Updated(m) = s.update_if("active", &t, 1, b"v2").await.unwrap() else {
        panic!("expected version 1 matches")
    };
    assert_eq!(m.version, 2);
    assert_eq!(s.update_if("active", &t, 1, b"stale").await.unwrap(), UpdateOutcome::Conflict { current_version: 2 });
    assert_eq!(s.get("active", &t).await.unwrap().unwrap().value.as_bytes(), b"v2");
    // Through a rotated token within grace, the session's record is updated.
    let t1 = resolve(s, "active", &t, rotating(SEC)).await.unwrap().token.unwrap();
    assert!(matches!(s.update_if("active", &t, 2, b"v3").await.unwrap(), UpdateOutcome::Updated(_)));
    assert_eq!(s.get("active", t1.expose()).await.unwrap().unwrap().value.as_bytes(), b"v3");
}

/// 16 writers increment a counter with read + `update_if` retries: no update
/// is lost.
pub async fn concurrent_update_if_loses_nothing<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store().clone();
    s.set("active", "counter", b"0", CreateOptions::new()).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let r = s.get("active", "counter").await.unwrap().unwrap();
                    let n: u64 = r.value.as_str().unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match s.update_if("active", "counter", r.meta.version, next.as_bytes()).await.unwrap() {
                        UpdateOutcome::Updated(_) => return,
                        UpdateOutcome::Conflict { .. } => continue,
                        UpdateOutcome::NotFound => panic!("counter vanished"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let r = s.get("active", "counter").await.unwrap().unwrap();
    assert_eq!(r.value.as_str().unwrap(), "16");
    assert_eq!(r.meta.version, 17);
}

/// A subject's sessions can be listed and revoked, all or but one.
pub async fn subjects_list_and_revoke<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let u1 = CreateOptions::new().with_subject("user-1");
    let a = new_token(s, "active", b"a", u1.clone()).await;
    h.advance(ms(5)).await;
    let b = new_token(s, "active", b"b", u1.clone()).await;
    h.advance(ms(5)).await;
    let c = new_token(s, "active", b"c", u1.clone()).await;
    let other = new_token(s, "active", b"o", CreateOptions::new().with_subject("user-2")).await;
    let elsewhere = new_token(s, "other", b"x", u1.clone()).await;
    let listed = s.list_subject("active", "user-1").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.windows(2).all(|w| w[0].created_at <= w[1].created_at), "oldest first");
    // Rotation does not lose the subject.
    let a1 = resolve(s, "active", &a, rotating(SEC)).await.unwrap().token.unwrap();
    assert_eq!(s.list_subject("active", "user-1").await.unwrap().len(), 3);
    // Log out everywhere else (the current session named by a rotated token in grace).
    assert_eq!(s.revoke_subject("active", "user-1", Some(&a)).await.unwrap(), 2);
    assert!(resolve(s, "active", &b, ResolveOptions::new()).await.is_none());
    assert!(resolve(s, "active", &c, ResolveOptions::new()).await.is_none());
    assert!(resolve(s, "active", a1.expose(), ResolveOptions::new()).await.is_some());
    assert!(resolve(s, "active", &other, ResolveOptions::new()).await.is_some(), "other users untouched");
    assert!(resolve(s, "other", &elsewhere, ResolveOptions::new()).await.is_some(), "other sandboxes untouched");
    // Revoke one by id.
    let listed = s.list_subject("active", "user-1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(s.revoke_session("active", "user-1", &listed[0].id).await.unwrap());
    assert!(!s.revoke_session("active", "user-1", &listed[0].id).await.unwrap());
    assert!(resolve(s, "active", a1.expose(), ResolveOptions::new()).await.is_none());
    assert!(s.list_subject("active", "user-1").await.unwrap().is_empty());
    assert_eq!(s.revoke_subject("active", "user-2", None).await.unwrap(), 1);
}

/// A sandbox at its record limit refuses (default policy), and takes new
/// records again once one is gone.
pub async fn limit_refuses_when_full<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(new_token(s, "tiny", format!("{i}").as_bytes(), CreateOptions::new()).await);
    }
    let refused = stats(s).await.counters.refused;
    let e = s.create("tiny", b"one too many", CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "sandbox_full", "{e}");
    assert!(e.to_string().contains("tiny"), "the error names the sandbox: {e}");
    assert_eq!(stats(s).await.counters.refused, refused + 1);
    for t in &tokens {
        assert!(s.exists("tiny", t).await.unwrap(), "refusing loses nothing");
    }
    // Replacing a value in a full sandbox is not a new record.
    s.set("tiny", &tokens[0], b"replaced", CreateOptions::new()).await.unwrap();
    assert!(s.del("tiny", &tokens[1]).await.unwrap());
    new_token(s, "tiny", b"fits again", CreateOptions::new()).await;
    assert_eq!(stats(s).await.sandbox("tiny").unwrap().records, 5);
}

/// With evict-soonest-expiring, a full sandbox evicts the record that
/// expires first.
pub async fn limit_evicts_soonest_expiring<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let a = new_token(s, "evict", b"a", CreateOptions::new().with_ttl(60 * SEC)).await;
    let b = new_token(s, "evict", b"b", CreateOptions::new().with_ttl(600 * SEC)).await;
    let c = new_token(s, "evict", b"c", CreateOptions::new().with_ttl(300 * SEC)).await;
    let d = new_token(s, "evict", b"d", CreateOptions::new().with_ttl(3600 * SEC)).await;
    assert!(!s.exists("evict", &a).await.unwrap(), "the soonest-expiring record is evicted");
    for t in [&b, &c, &d] {
        assert!(s.exists("evict", t).await.unwrap());
    }
    let e = new_token(s, "evict", b"e", CreateOptions::new().with_ttl(7200 * SEC)).await;
    assert!(!s.exists("evict", &c).await.unwrap(), "then the next soonest");
    assert!(s.exists("evict", &e).await.unwrap());
    assert_eq!(stats(s).await.counters.evicted, 2);
}

/// Flooding one sandbox never evicts or refuses in another.
pub async fn flooding_one_sandbox_spares_the_others<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let keep = new_token(s, "active", marked!("precious"), CreateOptions::new().with_ttl(SEC)).await;
    for i in 0..100 {
        new_token(s, "evict", format!("{i}").as_bytes(), CreateOptions::new().with_ttl(3600 * SEC)).await;
        let _ = s.create("tiny", b"flood", CreateOptions::new()).await;
    }
    assert_eq!(stats(s).await.sandbox("evict").unwrap().records, 3);
    assert_eq!(
        resolve(s, "active", &keep, ResolveOptions::new()).await.expect("untouched").value.as_bytes(),
        marked!("precious")
    );
}

/// Values above the per-value limit are refused with a clear error.
pub async fn oversized_values_are_refused<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    s.set("capped", "k", &[b'a'; 1024], CreateOptions::new()).await.expect("exactly the limit fits");
    let e = s.set("capped", "k", &[b'b'; 1025], CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "value_too_large", "{e}");
    assert!(e.to_string().contains("1025") && e.to_string().contains("1024"), "{e}");
    assert_eq!(s.get("capped", "k").await.unwrap().unwrap().value.as_bytes(), &[b'a'; 1024], "nothing lost");
    let e = s.create("capped", &[0; 2048], CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "value_too_large");
    let big = vec![b'x'; (10 << 20) + 1];
    let e = s.create("active", &big, CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "value_too_large", "the default limit is 10 MiB");
}

/// What a reader that takes the JSON form may get for a value whose raw
/// bytes are `raw`: the value in either form, as the backend keeps it.
fn assert_same_value(got: &Value, raw: &[u8], what: &str) {
    let as_raw = got.clone().into_raw().unwrap_or_else(|e| panic!("{what}: the JSON form reads back: {e}"));
    assert_eq!(as_raw.as_bytes(), raw, "{what}: same value");
    if got.form() == ValueForm::Json {
        let quoted = serde_json::to_vec(std::str::from_utf8(raw).expect("JSON-form values are text")).unwrap();
        assert_eq!(got.as_bytes(), &quoted[1..quoted.len() - 1], "{what}: the JSON form as serde_json writes it");
    }
}

/// Values given in their JSON form (as the protocol server gives them)
/// read back raw by default, in either form for a reader that takes the
/// JSON form; the size limit is on the raw bytes.
pub async fn values_in_their_json_form<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let raw = concat!("{\"user\":42,\"note\":\"a\\b\n\u{1}", marker!(), "\"}");
    let text = serde_json::to_string(raw).unwrap();
    let json = &text.as_bytes()[1..text.len() - 1];
    let in_json = || CreateOptions::new().with_value_form(ValueForm::Json);
    let takes_json = || ResolveOptions::new().with_value_form(ValueForm::Json);

    s.set("active", "k", json, in_json()).await.unwrap();
    let got = s.get("active", "k").await.unwrap().expect("set then get");
    assert_eq!((got.value.form(), got.value.as_bytes()), (ValueForm::Raw, raw.as_bytes()), "raw by default");
    let got = resolve(s, "active", "k", takes_json()).await.expect("live");
    assert_same_value(&got.value, raw.as_bytes(), "get taking the JSON form");

    let token = new_token(s, "active", json, in_json()).await;
    let r = resolve(s, "active", &token, rotating(SEC).with_value_form(ValueForm::Json)).await.expect("live");
    assert_same_value(&r.value, raw.as_bytes(), "rotating resolve");
    let next = r.token.expect("rotated").expose().to_owned();
    let moved = s.migrate("active", &next, "other", None, CreateOptions::new()).await.unwrap().expect("migrated");
    let got = resolve(s, "other", moved.token.expose(), ResolveOptions::new()).await.expect("live");
    assert_eq!(got.value.as_bytes(), raw.as_bytes(), "migration keeps the value");
    let got = resolve(s, "other", moved.token.expose(), takes_json()).await.expect("live");
    assert_same_value(&got.value, raw.as_bytes(), "migrated, taking the JSON form");
    let moved = s.migrate("other", moved.token.expose(), "active", Some(json), in_json()).await.unwrap().unwrap();
    let got = resolve(s, "active", moved.token.expose(), ResolveOptions::new()).await.expect("live");
    assert_eq!(got.value.as_bytes(), raw.as_bytes(), "a new value in the JSON form on migration");

    // A compare-and-set takes raw bytes; a raw value stays raw.
    let version = s.get("active", "k").await.unwrap().unwrap().meta.version;
    let outcome = s.update_if("active", "k", version, b"plain \"raw\"").await.unwrap();
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    let got = resolve(s, "active", "k", takes_json()).await.expect("live");
    assert_same_value(&got.value, b"plain \"raw\"", "after update_if");
    s.set("active", "raw", V, CreateOptions::new()).await.unwrap();
    let got = resolve(s, "active", "raw", takes_json()).await.expect("live");
    assert_same_value(&got.value, V, "a raw value, taking the JSON form");

    // 600 quotes: 1200 bytes in the JSON form, 600 raw, under the limit.
    s.set("capped", "q", "\\\"".repeat(600).as_bytes(), in_json()).await.expect("the limit is on the raw bytes");
    assert_eq!(s.get("capped", "q").await.unwrap().unwrap().value.as_bytes(), "\"".repeat(600).as_bytes());
    let e = s.set("capped", "q", "\\n".repeat(1025).as_bytes(), in_json()).await.unwrap_err();
    assert_eq!(e.code(), "value_too_large", "{e}");
    assert!(e.to_string().contains("1025"), "the raw size is reported: {e}");
}

/// `resolve_into` appends what `resolve` returns, in the same form, and
/// nothing on a miss; a rotation through it rotates as `resolve` does.
pub async fn resolve_into_appends_the_value<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let text = serde_json::to_string(std::str::from_utf8(USER_42).unwrap()).unwrap();
    let json = &text.as_bytes()[1..text.len() - 1];
    s.set("active", "k", json, CreateOptions::new().with_value_form(ValueForm::Json)).await.unwrap();
    s.set("active", "raw", V, CreateOptions::new()).await.unwrap();
    for (key, form) in [("k", ValueForm::Json), ("k", ValueForm::Raw), ("raw", ValueForm::Json)] {
        let opts = ResolveOptions::new().with_value_form(form);
        let whole = resolve(s, "active", key, opts).await.expect("live");
        let mut out = b"before|".to_vec();
        let r = s.resolve_into("active", key, opts, &mut out).await.unwrap().expect("live");
        assert!(r.value.is_empty(), "the value went to out");
        assert_eq!(r.value.form(), whole.value.form(), "{key} {form:?}: same form");
        assert_eq!(&out[..7], b"before|", "appended, not overwritten");
        assert_eq!(&out[7..], whole.value.as_bytes(), "{key} {form:?}: same bytes");
        assert_eq!((r.meta.id, r.meta.version), (whole.meta.id, whole.meta.version));
    }
    let mut out = b"x".to_vec();
    assert!(s.resolve_into("active", "absent", ResolveOptions::new(), &mut out).await.unwrap().is_none());
    assert_eq!(out, b"x", "nothing appended on a miss");

    let token = new_token(s, "active", USER_7, CreateOptions::new()).await;
    let mut out = Vec::new();
    let r = s.resolve_into("active", &token, rotating(SEC), &mut out).await.unwrap().expect("live");
    assert_eq!((r.outcome, out.as_slice()), (ResolveOutcome::Rotated, USER_7));
    let next = r.token.expect("a successor").expose().to_owned();
    let mut out = Vec::new();
    let r = s.resolve_into("active", &token, rotating(SEC), &mut out).await.unwrap().expect("in grace");
    assert_eq!(r.outcome, ResolveOutcome::Grace);
    assert_eq!(r.token.map(|t| t.expose().to_owned()), Some(next), "a grace hit names the successor");
    assert_eq!(out, USER_7);
}

/// Expired records are never returned and their memory is reclaimed.
pub async fn expired_records_are_reclaimed<B: Backend>() {
    let h = start::<B>().await;
    let s = h.store();
    let mut tokens = Vec::new();
    for i in 0..200 {
        tokens.push(new_token(s, "short", format!("{i}").as_bytes(), CreateOptions::new().with_ttl(SEC)).await);
    }
    let long = new_token(s, "short", b"long", CreateOptions::new().with_ttl(3600 * SEC)).await;
    assert_eq!(stats(s).await.sandbox("short").unwrap().records, 201);
    h.advance(2 * SEC).await;
    h.sweep().await;
    let st = stats(s).await;
    assert_eq!(st.sandbox("short").map_or(0, |x| x.records), 1, "expired records are reclaimed");
    assert!(st.counters.expired >= 200);
    for t in tokens.iter().take(10) {
        assert!(resolve(s, "short", t, ResolveOptions::new()).await.is_none());
    }
    assert!(s.exists("short", &long).await.unwrap());
}
