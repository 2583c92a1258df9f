//! `xems-client` against a real `xems serve` process.

mod common;

use std::time::Duration;

use common::{Server, TOKEN};
use xems_client::Client;
use xems_core::{CreateOptions, Error, ResolveOptions, ResolveOutcome, SessionStore, UpdateOutcome};

async fn client(server: &Server) -> Client {
    Client::builder(server.url()).auth_token(TOKEN).pool_size(2).connect().await.expect("connect")
}

#[tokio::test]
async fn every_operation_round_trips() {
    let server = Server::start(&[]);
    let c = client(&server).await;
    c.ping().await.unwrap();

    // Any bytes survive the trip (values travel as base64).
    let bin = [0u8, 255, 10, 13, b'"', b'\\'];
    let meta = c.set("cache", "k", &bin, CreateOptions::new().with_ttl(Duration::from_secs(60))).await.unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(meta.ttl, Duration::from_secs(60));
    assert_eq!(c.get("cache", "k").await.unwrap().unwrap().value.as_bytes(), &bin);
    assert!(c.exists("cache", "k").await.unwrap());
    assert!(c.touch("cache", "k", Some(Duration::from_secs(120))).await.unwrap().is_some());
    assert_eq!(c.update_if("cache", "k", 5, b"x").await.unwrap(), UpdateOutcome::Conflict { current_version: 1 });
    assert!(matches!(c.update_if("cache", "k", 1, b"x").await.unwrap(), UpdateOutcome::Updated(m) if m.version == 2));
    assert_eq!(c.update_if("cache", "nope", 1, b"x").await.unwrap(), UpdateOutcome::NotFound);
    assert!(c.del("cache", "k").await.unwrap());
    assert!(!c.del("cache", "k").await.unwrap());
    assert!(c.get("cache", "k").await.unwrap().is_none());
    assert!(c.touch("cache", "k", None).await.unwrap().is_none());

    // Sessions: create, rotate, grace, migrate, subjects.
    let created = c.create("otp-pending", b"{\"u\":1}", CreateOptions::new().with_subject("u1")).await.unwrap();
    let t0 = created.token.expose().to_owned();
    let r = c.resolve("otp-pending", &t0, ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Rotated);
    let t1 = r.token.unwrap();
    let g = c.resolve("otp-pending", &t0, ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.unwrap(), t1);
    let moved = c.migrate("otp-pending", t1.expose(), "active", None, CreateOptions::new()).await.unwrap().unwrap();
    assert!(c.resolve("otp-pending", t1.expose(), ResolveOptions::new()).await.unwrap().is_none());
    let active = c.resolve("active", moved.token.expose(), ResolveOptions::new()).await.unwrap().unwrap();
    assert_eq!(active.value.as_bytes(), b"{\"u\":1}");
    let list = c.list_subject("active", "u1").await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(c.revoke_session("active", "u1", &list[0].id).await.unwrap());
    c.create("active", b"a", CreateOptions::new().with_subject("u2")).await.unwrap();
    c.create("active", b"b", CreateOptions::new().with_subject("u2")).await.unwrap();
    assert_eq!(c.revoke_subject("active", "u2", None).await.unwrap(), 2);
    let stats = c.stats().await.unwrap();
    assert!(stats.counters.rotated >= 1);
}

#[tokio::test]
async fn errors_keep_their_codes() {
    let server = Server::start(&[]);
    let c = client(&server).await;
    // Checked locally, with the real variant.
    let e = c.set("bad/name", "k", b"v", CreateOptions::new()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidSandbox { .. }), "{e:?}");
    // Checked by the server, code preserved.
    let e = c.set("s", "", b"v", CreateOptions::new()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_key");
    let e = c.set("s", "k", b"v", CreateOptions::new().with_ttl(Duration::ZERO)).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    let e = c.resolve("s", "k", ResolveOptions::rotating().with_grace(Duration::from_secs(56))).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    // The clock of a normal server cannot be moved.
    assert_eq!(c.debug_advance_clock(Duration::from_secs(1)).await.unwrap_err().code(), "unknown_action");
}

#[tokio::test]
async fn wrong_token_and_missing_server() {
    let server = Server::start(&[]);
    let e = Client::builder(server.url()).auth_token("wrong-token-wrong-token").connect().await.unwrap_err();
    assert_eq!(e.code(), "unauthorized");
    let e = Client::connect(server.url()).await.unwrap();
    assert_eq!(e.ping().await.unwrap_err().code(), "unauthorized");
    drop(server);
    let e = Client::connect("xems://127.0.0.1:1").await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
}

#[tokio::test]
async fn many_requests_in_flight() {
    let server = Server::start(&[]);
    let c = client(&server).await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("t{t}-{i}");
                c.set("load", &key, key.as_bytes(), CreateOptions::new()).await.unwrap();
                let got = c.get("load", &key).await.unwrap().unwrap();
                assert_eq!(got.value.as_bytes(), key.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // All at once on one connection: pipelined, matched in order.
    let c1 = Client::builder(server.unix_url()).pool_size(1).connect().await.unwrap();
    let futs: Vec<_> = (0..1000)
        .map(|i| {
            let c1 = c1.clone();
            async move { c1.exists("load", &format!("t{}-{}", i % 16, i % 200)).await }
        })
        .collect();
    for r in futures_join_all(futs).await {
        assert!(r.unwrap());
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

// Multi-threaded so the client's reader tasks see the old server's hang-up
// while this test blocks on process management, as they would in an app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_server_restart() {
    let mut server = Server::start(&[]);
    let addr = server.tcp().to_owned();
    let c = client(&server).await;
    let u = Client::connect(server.unix_url()).await.unwrap();
    c.set("s", "k", b"v", CreateOptions::new()).await.unwrap();
    u.ping().await.unwrap();
    assert!(server.terminate().success());
    let e = c.ping().await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");

    // Same addresses, new process (and a new, empty store).
    let dir = tempfile::tempdir().unwrap();
    let sock = server.unix.clone().unwrap();
    let _server2 = Server::start_with(dir, &sock, &format!("tcp://{addr}"), &[]);
    c.ping().await.unwrap();
    assert!(c.get("s", "k").await.unwrap().is_none());
    u.ping().await.unwrap();
}
