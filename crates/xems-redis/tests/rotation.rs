//! Rotation details beyond the conformance suite: the retired-token window
//! and grace windows surviving a burst of rotations.

mod common;

use std::time::Duration;

use xems_core::{CreateOptions, MockClock, ResolveOptions, ResolveOutcome, SessionStore};
use xems_redis::RedisStore;
use xems_testkit::Setup;
use xems_testkit::logs::marked;

async fn store(clock: &MockClock) -> RedisStore {
    common::builder(&common::standalone().url(), &Setup::standard(), clock).connect().await.unwrap()
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
