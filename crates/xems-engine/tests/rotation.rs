//! Engine-specific rotation behavior beyond the conformance suite: the
//! retired-token window, and events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use xems_core::{CreateOptions, Event, EventKind, EventSink, MockClock, ResolveOptions, ResolveOutcome, Timestamp};
use xems_engine::Engine;

fn engine(clock: &MockClock) -> Engine {
    Engine::builder().clock(clock.clone()).sweep_interval(None).build().unwrap()
}

fn clock() -> MockClock {
    xems_testkit::logs::capture();
    MockClock::new(Timestamp::from_millis(1_800_000_000_000))
}

/// Rotates `n` times with `grace`, `step` apart; returns every token, oldest first.
fn chain(engine: &Engine, clock: &MockClock, n: usize, grace: Duration, step: Duration) -> Vec<String> {
    let s = engine.sandbox("active").unwrap();
    let mut tokens = vec![s.create(b"v", CreateOptions::new()).unwrap().token.expose().to_owned()];
    for _ in 0..n {
        let r = s.resolve(tokens.last().unwrap(), ResolveOptions::rotating().with_grace(grace)).unwrap().unwrap();
        tokens.push(r.token.unwrap().expose().to_owned());
        clock.advance(step);
    }
    tokens
}

#[test]
fn retired_tokens_beyond_the_window_are_forgotten() {
    let clock = clock();
    let e = engine(&clock);
    let tokens = chain(&e, &clock, 20, Duration::ZERO, Duration::from_millis(1));
    let s = e.sandbox("active").unwrap();
    assert_eq!(s.census().retired, 4, "the last 4 retired tokens are remembered");
    // The 16 oldest are forgotten: a plain miss, the session lives on.
    for t in &tokens[..16] {
        assert!(s.resolve(t, ResolveOptions::new()).unwrap().is_none());
    }
    assert!(s.exists(tokens.last().unwrap()).unwrap());
    assert_eq!(futures_stats(&e).reuse_detected, 0);
    // A remembered one is a replay: the session is revoked.
    assert!(s.resolve(&tokens[18], ResolveOptions::new()).unwrap().is_none());
    assert_eq!(futures_stats(&e).reuse_detected, 1);
    assert!(!s.exists(tokens.last().unwrap()).unwrap());
    assert_eq!(s.census().retired, 0, "revocation removes every retired token");
    assert_eq!(s.census().records, 0);
}

#[test]
fn tokens_in_grace_are_never_pushed_out_by_a_rotation_burst() {
    let clock = clock();
    let e = engine(&clock);
    // 40 rotations 10 ms apart: all 40 retired tokens are within 1 s.
    let tokens = chain(&e, &clock, 40, Duration::from_secs(1), Duration::from_millis(10));
    let s = e.sandbox("active").unwrap();
    let current = tokens.last().unwrap();
    for t in &tokens[..40] {
        let r = s.resolve(t, ResolveOptions::rotating()).unwrap().expect("in grace");
        assert_eq!(r.outcome, ResolveOutcome::Grace);
        assert_eq!(r.token.unwrap().expose(), current);
    }
    // Once their grace is over, the window shrinks back at the next rotation.
    clock.advance(Duration::from_secs(2));
    s.resolve(current, ResolveOptions::rotating()).unwrap().unwrap();
    assert_eq!(s.census().retired, 4);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(EventKind, String, String)>>);

impl EventSink for Recorder {
    fn on_event(&self, e: &Event<'_>) {
        let fp = e.fingerprint.map(|f| f.to_string()).unwrap_or_default();
        self.0.lock().unwrap().push((e.kind, e.sandbox.to_owned(), fp));
    }
}

#[test]
fn events_name_the_sandbox_and_never_the_token() {
    let clock = clock();
    let recorder = Arc::new(Recorder::default());
    let e = Engine::builder().clock(clock.clone()).sweep_interval(None).event_sink(recorder.clone()).build().unwrap();
    let s = e.sandbox("active").unwrap();
    let t0 = s.create(b"v", CreateOptions::new()).unwrap().token;
    let t1 = s.resolve(t0.expose(), ResolveOptions::rotating()).unwrap().unwrap().token.unwrap();
    s.resolve(t0.expose(), ResolveOptions::new()).unwrap().unwrap();
    clock.advance(Duration::from_secs(2));
    assert!(s.resolve(t0.expose(), ResolveOptions::new()).unwrap().is_none());
    let events = recorder.0.lock().unwrap().clone();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Created,
            EventKind::Rotated,
            EventKind::Resolved,
            EventKind::GraceHit,
            EventKind::ReuseDetected,
            EventKind::Deleted
        ]
    );
    for (_, sandbox, fp) in &events {
        assert_eq!(sandbox, "active");
        assert!(!t0.expose().contains(fp.as_str()) || fp.is_empty());
        assert!(!fp.contains(t1.expose()));
    }
    assert_eq!(events[0].2.len(), 16, "created carries a fingerprint");
}

fn futures_stats(e: &Engine) -> xems_core::Counters {
    use xems_core::SessionStore;
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(e.stats()).unwrap().counters
}
