//! Rotation details beyond the conformance suite: the retired-token window,
//! grace windows surviving a burst of rotations, and what a rotation leaves
//! in Redis (minted tokens need no key of their own; a rotated-away caller
//! key keeps its pointer exactly as long as it is remembered).

mod common;

use std::time::Duration;

use xems_core::{CreateOptions, MockClock, ResolveOptions, ResolveOutcome, SessionStore};
use xems_redis::RedisStore;
use xems_testkit::Setup;
use xems_testkit::logs::marked;

async fn store(clock: &MockClock) -> RedisStore {
    common::builder(&common::standalone().url(), &Setup::standard(), clock).connect().await.unwrap()
}

/// A store with a known key prefix, to look at its keys.
async fn store_with_prefix(clock: &MockClock, prefix: &str) -> RedisStore {
    common::builder(&common::standalone().url(), &Setup::standard(), clock).prefix(prefix).connect().await.unwrap()
}

/// The names of the store's keys of sessions (not of sandboxes), sorted.
fn session_keys(prefix: &str) -> Vec<String> {
    let v = common::standalone().query(redis::cmd("KEYS").arg(format!("{prefix}:{{r*"))).expect("KEYS");
    let mut keys: Vec<String> = redis::from_redis_value(v).expect("key names");
    keys.sort();
    keys
}

/// How many of `keys` are pointers (`...:t:<digest>`).
fn pointers(keys: &[String]) -> usize {
    keys.iter().filter(|k| k.contains("}:t:")).count()
}

async fn chain(s: &RedisStore, clock: &MockClock, n: usize, grace: Duration) -> Vec<String> {
    let mut tokens =
        vec![s.create("active", marked("v").as_bytes(), CreateOptions::new()).await.unwrap().token.expose().to_owned()];
    for _ in 0..n {
        let opts = ResolveOptions::rotating().with_grace(grace);
        let r = s.resolve("active", tokens.last().unwrap(), opts).await.unwrap().unwrap();
        tokens.push(r.token.unwrap().expose().to_owned());
        clock.advance(Duration::from_millis(1));
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_retired_tokens_are_forgotten_recent_ones_detect_reuse() {
    let clock = MockClock::starting_now();
    let s = store(&clock).await;
    let tokens = chain(&s, &clock, 40, Duration::ZERO).await;
    // At least the last 4 are remembered (pruned in batches, so at most 8).
    for t in &tokens[..32] {
        assert!(s.resolve("active", t, ResolveOptions::new()).await.unwrap().is_none());
    }
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 0, "forgotten tokens are plain misses");
    assert!(s.exists("active", tokens.last().unwrap()).await.unwrap());
    assert!(s.resolve("active", &tokens[37], ResolveOptions::new()).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 1, "a remembered one is a replay");
    assert!(!s.exists("active", tokens.last().unwrap()).await.unwrap(), "and revokes the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_grace_survive_a_burst_of_rotations() {
    let clock = MockClock::starting_now();
    let s = store(&clock).await;
    let tokens = chain(&s, &clock, 60, Duration::from_secs(1)).await;
    let current = tokens.last().unwrap();
    for t in &tokens[..60] {
        let r = s.resolve("active", t, ResolveOptions::rotating()).await.unwrap().expect("in grace");
        assert_eq!(r.outcome, ResolveOutcome::Grace);
        assert_eq!(r.token.unwrap().expose(), current);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_minted_token_writes_no_key_per_token() {
    let clock = MockClock::starting_now();
    let prefix = common::fresh_prefix();
    let s = store_with_prefix(&clock, &prefix).await;
    let first = s.create("active", b"v", CreateOptions::new()).await.unwrap().token;
    assert_eq!(first.expose().len(), 66, "a minted token carries its selector");
    assert_eq!(session_keys(&prefix).len(), 1, "a new session is its record only: {:?}", session_keys(&prefix));
    let mut t = first.clone();
    for _ in 0..50 {
        let opts = ResolveOptions::rotating().with_grace(Duration::from_secs(1));
        t = s.resolve("active", t.expose(), opts).await.unwrap().unwrap().token.unwrap();
        clock.advance(Duration::from_millis(1));
    }
    // 50 rotations inside one grace period: all but the last 4 (the window,
    // kept in the record) wait out their grace in the retired-token index.
    let keys = session_keys(&prefix);
    assert_eq!(keys.len(), 2, "the record and its retired-token index, whatever the rotations: {keys:?}");
    assert_eq!(pointers(&keys), 0);
    // Every one of the 50 retired tokens is still in grace and converges.
    let g = s.resolve("active", first.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.unwrap().expose(), t.expose());
    assert!(s.del("active", t.expose()).await.unwrap());
    assert!(session_keys(&prefix).is_empty(), "deleting a session leaves nothing: {:?}", session_keys(&prefix));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_caller_key_keeps_its_pointer_while_remembered() {
    let clock = MockClock::starting_now();
    let prefix = common::fresh_prefix();
    let s = store_with_prefix(&clock, &prefix).await;
    s.set("active", "caller-key-1", b"v1", CreateOptions::new()).await.unwrap();
    assert_eq!(pointers(&session_keys(&prefix)), 1, "a caller key is found through its pointer");
    // Its first rotation mints a token naming the family.
    let opts = ResolveOptions::rotating().with_grace(Duration::from_secs(1));
    let r = s.resolve("active", "caller-key-1", opts).await.unwrap().unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Rotated);
    assert_eq!(r.value.as_bytes(), b"v1");
    let next = r.token.unwrap();
    assert_eq!(next.expose().len(), 66);
    let g = s.resolve("active", "caller-key-1", ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(g.outcome, ResolveOutcome::Grace, "the key is retired with a grace window");
    assert_eq!(g.token.unwrap().expose(), next.expose(), "and leads to the successor");
    assert_eq!(pointers(&session_keys(&prefix)), 1, "the retired key keeps its pointer while remembered");
    // Rotations past the window (4, pruned in batches of up to 8) forget the
    // key, and its pointer goes with it.
    clock.advance(Duration::from_secs(2));
    let mut t = next;
    for _ in 0..10 {
        t = s.resolve("active", t.expose(), ResolveOptions::rotating()).await.unwrap().unwrap().token.unwrap();
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(pointers(&session_keys(&prefix)), 0, "forgotten: {:?}", session_keys(&prefix));
    assert!(s.resolve("active", "caller-key-1", ResolveOptions::new()).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 0, "a forgotten key is a plain miss");

    // A replayed key past its grace revokes the family, pointer included.
    s.set("active", "caller-key-2", b"v2", CreateOptions::new()).await.unwrap();
    let t2 = s.resolve("active", "caller-key-2", ResolveOptions::rotating()).await.unwrap().unwrap().token.unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(s.resolve("active", "caller-key-2", ResolveOptions::new()).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 1);
    assert!(!s.exists("active", t2.expose()).await.unwrap(), "the family is revoked");
    assert!(s.del("active", t.expose()).await.unwrap());
    assert!(session_keys(&prefix).is_empty(), "nothing of either family is left: {:?}", session_keys(&prefix));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rotated_slower_than_its_grace_is_its_record_only() {
    let clock = MockClock::starting_now();
    let prefix = common::fresh_prefix();
    let s = store_with_prefix(&clock, &prefix).await;
    let mut tokens = vec![s.create("active", b"v", CreateOptions::new()).await.unwrap().token];
    for _ in 0..20 {
        let opts = ResolveOptions::rotating().with_grace(Duration::from_secs(1));
        let r = s.resolve("active", tokens.last().unwrap().expose(), opts).await.unwrap().unwrap();
        tokens.push(r.token.unwrap());
        clock.advance(Duration::from_secs(2));
    }
    let keys = session_keys(&prefix);
    assert_eq!(keys.len(), 1, "the last retired tokens live in the record: {keys:?}");
    // The window still detects a replay; older tokens are forgotten.
    assert!(s.resolve("active", tokens[5].expose(), ResolveOptions::new()).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 0);
    assert!(s.resolve("active", tokens[18].expose(), ResolveOptions::new()).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_1024_retired_tokens_are_remembered_even_in_grace() {
    let clock = MockClock::starting_now();
    let s = store(&clock).await;
    let opts = ResolveOptions::rotating().with_grace(Duration::from_secs(55));
    let mut tokens = vec![s.create("active", b"v", CreateOptions::new()).await.unwrap().token];
    for _ in 0..1030 {
        let r = s.resolve("active", tokens.last().unwrap().expose(), opts).await.unwrap().unwrap();
        tokens.push(r.token.unwrap());
        clock.advance(Duration::from_millis(1));
    }
    let current = tokens.last().unwrap().expose().to_owned();
    // 1030 retired, all in grace: the 6 oldest are forgotten, plain misses.
    for t in &tokens[..6] {
        assert!(s.resolve("active", t.expose(), ResolveOptions::new()).await.unwrap().is_none());
    }
    assert_eq!(s.stats().await.unwrap().counters.reuse_detected, 0);
    for t in [&tokens[6], &tokens[500], &tokens[1026], &tokens[1029]] {
        let g = s.resolve("active", t.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
        assert_eq!(g.outcome, ResolveOutcome::Grace);
        assert_eq!(g.token.unwrap().expose(), current);
    }
}
