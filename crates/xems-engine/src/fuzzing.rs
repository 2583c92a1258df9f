//! Entry point of the `token` fuzz target in `fuzz/` (also run over its
//! committed corpus by this crate's tests, on stable). Not part of the API.

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use xems_core::{CreateOptions, Error, ResolveOptions, SessionStore, Token, UpdateOutcome};

use crate::Engine;

/// Runs a store call to completion: without a journal the engine answers
/// without ever waiting.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the engine waited without a journal"),
    }
}

struct Fixture {
    engine: Engine,
    current: Token,
}

const CALLER_KEY: &str = "caller-key";

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let engine = Engine::builder().sweep_interval(None).audit_log(false).build().expect("a default engine");
        let created = ready(engine.create("s", b"value", CreateOptions::new())).expect("create");
        // Rotate once with a grace period, so a retired address is in play.
        let opts = ResolveOptions::rotating().with_grace(Duration::from_secs(55));
        let rotated = ready(engine.resolve("s", created.token.expose(), opts)).expect("resolve").expect("live");
        ready(engine.set("s", CALLER_KEY, b"v", CreateOptions::new())).expect("set");
        Fixture { engine, current: rotated.token.expect("a successor") }
    })
}

/// Fails unless `e` is a clean refusal of a bad address.
fn refused(e: &Error) {
    assert!(matches!(e, Error::InvalidKey(_)), "unexpected error for a forged address: {e}");
}

/// Arbitrary text as a token or key (and as a sandbox name) in every
/// operation that takes one, on an engine holding a session and a caller
/// key: forgeries never resolve, never change anything, and errors are
/// clean.
pub fn tokens(data: &[u8]) {
    let f = fixture();
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text == CALLER_KEY {
        return;
    }
    let e = &f.engine;
    let resolving = [
        ready(e.resolve("s", text, ResolveOptions::rotating())),
        ready(e.resolve("s", text, ResolveOptions::new())),
        ready(e.get("s", text)),
    ];
    for r in resolving {
        match r {
            Ok(None) => {}
            Ok(Some(_)) => panic!("a forged address resolved"),
            Err(e) => refused(&e),
        }
    }
    match ready(e.exists("s", text)) {
        Ok(found) => assert!(!found, "a forged address exists"),
        Err(e) => refused(&e),
    }
    match ready(e.touch("s", text, None)) {
        Ok(found) => assert!(found.is_none(), "a forged address was touched"),
        Err(e) => refused(&e),
    }
    match ready(e.update_if("s", text, 1, b"x")) {
        Ok(outcome) => assert!(matches!(outcome, UpdateOutcome::NotFound), "a forged address was updated"),
        Err(e) => refused(&e),
    }
    match ready(e.migrate("s", text, "t", None, CreateOptions::new())) {
        Ok(moved) => assert!(moved.is_none(), "a forged address was migrated"),
        Err(e) => refused(&e),
    }
    match ready(e.del("s", text)) {
        Ok(deleted) => assert!(!deleted, "a forged address deleted something"),
        Err(e) => refused(&e),
    }
    // The text as a sandbox name: found nothing, or a clean error.
    if let Ok(found) = ready(e.get(text, CALLER_KEY)) {
        assert!(found.is_none() || text == "s");
    }
    // Nothing real was touched.
    assert!(ready(e.exists("s", f.current.expose())).expect("exists"), "the fixture's session is gone");
    assert!(ready(e.exists("s", CALLER_KEY)).expect("exists"), "the fixture's caller key is gone");
}
