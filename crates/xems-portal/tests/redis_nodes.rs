//! The portal on Redis, over real HTTP on loopback:
//!
//! - two `xems-portal --store redis://...` processes (two application nodes
//!   sharing one Redis and one secret): a session signed in on A resolves
//!   and rotates on B, and a burst of concurrent requests carrying the same
//!   cookie, split across A and B, gets no 401 (the requests after the first
//!   rotation land in its grace window on either node and converge on one
//!   successor);
//! - Redis stopped mid-run: the portal answers 503 (no panic, the process
//!   stays up), and once Redis is back on the same port the same session
//!   works again without restarting the portal.
//!
//! `redis-server` is started by the test (`apt-get install redis-server`;
//! scripts/test.sh installs it).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use xems_redis::testing::{RedisServer, ServerOptions};

const SECRET: &str = xems_testkit::secrets::PORTAL_NODES;

/// A running portal, killed on drop; its stderr goes to a file so the test
/// can check it never panicked.
struct Portal {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Into the whole-suite log capture, when there is one.
        xems_testkit::logs::save("portal", &std::fs::read(self.log.path()).unwrap_or_default());
    }
}

impl Portal {
    fn start(store: &str) -> Portal {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = xems_testkit::logs::traced(
            Command::new(env!("CARGO_BIN_EXE_xems-portal"))
                .args(["--listen", "127.0.0.1:0", "--store", store])
                .env("XEMS_SECRET", SECRET)
                .env_remove("XEMS_SECRET_FILE")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(log.reopen().unwrap()),
        )
        .spawn()
        .expect("start xems-portal");
        let line = common::first_line(child.stdout.take().unwrap());
        assert!(line.contains("store: redis://"), "the portal did not start: {line:?}");
        let base = common::base_url(&line);
        Portal { child, base, log }
    }

    fn assert_alive_without_panic(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the portal exited");
        let log = std::fs::read_to_string(self.log.path()).unwrap();
        assert!(!log.contains("panicked"), "the portal panicked:\n{log}");
    }
}

/// Signs the demo user in on `base` (password, then the TOTP code the demo
/// endpoint shows) and returns the active session's cookie.
fn sign_in(base: &str) -> String {
    let login = r#"{"email":"demo@xems.dev","password":"correct-horse-battery"}"#;
    let (status, pending, _) = http(base, "POST", "/api/login", None, login);
    assert_eq!(status, 200);
    let pending = pending.expect("the pending cookie");
    let (status, _, totp) = http(base, "GET", "/api/demo/totp", Some(&pending), "");
    assert_eq!(status, 200);
    let code = totp["code"].as_str().unwrap().to_owned();
    let (status, active, _) = http(base, "POST", "/api/mfa", Some(&pending), &format!(r#"{{"code":"{code}"}}"#));
    assert_eq!(status, 200);
    active.expect("the active cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_portals_share_sessions_through_one_redis() {
    let redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let mut a = Portal::start(&redis.url());
    let mut b = Portal::start(&redis.url());
    let (base_a, base_b) = (a.base.clone(), b.base.clone());

    tokio::task::spawn_blocking(move || {
        let mut cookie = sign_in(&base_a);
        // Signed in on A, used on B: it resolves and rotates there.
        let (status, next, me) = http(&base_b, "GET", "/api/me", Some(&cookie), "");
        assert_eq!((status, me["email"].as_str()), (200, Some("demo@xems.dev")), "{me}");
        assert_eq!(me["token_outcome"], "rotated");
        let next = next.expect("B rotated the token");
        assert_ne!(next, cookie);
        cookie = next;
        // A chain of requests alternating between the nodes, each with the
        // cookie the previous answer set.
        for i in 0..10 {
            let base = if i % 2 == 0 { &base_a } else { &base_b };
            let (status, next, me) = http(base, "GET", "/api/me", Some(&cookie), "");
            assert_eq!(status, 200, "request {i}: {me}");
            cookie = next.expect("rotated on every request");
        }
        // A burst with one cookie, split across A and B, all at once (the
        // threads start together, well inside the 1 s grace period).
        let go = std::sync::Arc::new(std::sync::Barrier::new(24));
        let burst: Vec<_> = (0..24)
            .map(|i| {
                let base = if i % 2 == 0 { base_a.clone() } else { base_b.clone() };
                let (cookie, go) = (cookie.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    http(&base, "GET", &format!("/api/widgets/{}", i % 6), Some(&cookie), "")
                })
            })
            .collect();
        let answers: Vec<_> = burst.into_iter().map(|t| t.join().expect("a burst request")).collect();
        let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
        assert!(statuses.iter().all(|s| *s == 200), "no 401 (nor anything else) in the burst: {statuses:?}");
        let outcomes: Vec<&str> = answers.iter().filter_map(|(_, _, w)| w["outcome"].as_str()).collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "rotated").count(),
            1,
            "one rotation, the rest grace: {outcomes:?}"
        );
        // Every answer leads to the same successor, which works on both nodes.
        let successors: Vec<&String> = answers.iter().filter_map(|(_, c, _)| c.as_ref()).collect();
        assert!(!successors.is_empty() && successors.iter().all(|c| *c == successors[0]), "{successors:?}");
        let (status, next, _) = http(&base_a, "GET", "/api/me", Some(successors[0]), "");
        assert_eq!(status, 200);
        let (status, _, _) = http(&base_b, "GET", "/api/me", Some(&next.expect("rotated")), "");
        assert_eq!(status, 200);
    })
    .await
    .unwrap();
    a.assert_alive_without_panic();
    b.assert_alive_without_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_gives_503_and_the_portal_recovers() {
    // Persistent, so the session itself survives the restart.
    let mut redis = RedisServer::start_with(ServerOptions { persist: true, ..ServerOptions::default() })
        .expect("redis-server (apt-get install redis-server)");
    let mut portal = Portal::start(&redis.url());
    let base = portal.base.clone();
    let cookie = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let cookie = sign_in(&base);
            let (status, next, _) = http(&base, "GET", "/api/me", Some(&cookie), "");
            assert_eq!(status, 200);
            next.expect("rotated")
        })
        .await
        .unwrap()
    };

    redis.stop();
    let (base2, cookie2) = (base.clone(), cookie.clone());
    let down = tokio::task::spawn_blocking(move || {
        let me: Vec<u16> = (0..3).map(|_| http(&base2, "GET", "/api/me", Some(&cookie2), "").0).collect();
        let login = r#"{"email":"demo@xems.dev","password":"correct-horse-battery"}"#;
        let (login_status, _, _) = http(&base2, "POST", "/api/login", None, login);
        (me, login_status)
    })
    .await
    .unwrap();
    assert_eq!(down.0, vec![503, 503, 503], "a resolve with Redis down is 503, never 401 or 500");
    assert_eq!(down.1, 503, "a sign-in with Redis down is 503");
    portal.assert_alive_without_panic();

    redis.restart().expect("restart redis-server on the same port");
    // The same portal process reconnects on its own; until it has, 503.
    let recovered = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, next, me) = http(&base, "GET", "/api/me", Some(&cookie), "");
            match status {
                200 => break (me, next),
                503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => panic!("after the restart: {other} {me}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(recovered.0["email"], "demo@xems.dev", "the same session, kept by Redis");
    assert!(recovered.1.is_some(), "and it rotates again");
    portal.assert_alive_without_panic();
}
