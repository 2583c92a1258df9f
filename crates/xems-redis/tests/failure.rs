//! Redis going away mid-run: clear `unavailable` errors, no panic; and the
//! same store recovering once the server is back on the same port.

mod common;

use std::time::{Duration, Instant};

use xems_core::{CreateOptions, MockClock, ResolveOptions, SessionStore};
use xems_redis::testing::{RedisServer, ServerOptions};
use xems_testkit::Setup;
use xems_testkit::logs::marked;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_redis_gives_unavailable_and_the_store_recovers() {
    xems_testkit::logs::capture();
    let mut server = RedisServer::start_with(ServerOptions { persist: true, ..ServerOptions::default() })
        .expect("start redis-server");
    let clock = MockClock::starting_now();
    let store = common::builder(&server.url(), &Setup::standard(), &clock)
        .response_timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let created = store.create("active", marked("survives").as_bytes(), CreateOptions::new()).await.unwrap();
    let token = created.token.expose().to_owned();
    assert!(store.resolve("active", &token, ResolveOptions::new()).await.unwrap().is_some());

    server.stop();
    let started = Instant::now();
    for _ in 0..3 {
        let e = store.resolve("active", &token, ResolveOptions::rotating()).await.unwrap_err();
        assert_eq!(e.code(), "unavailable", "{e}");
        assert!(e.is_unavailable());
        let e = store.create("active", b"x", CreateOptions::new()).await.unwrap_err();
        assert_eq!(e.code(), "unavailable", "{e}");
        let e = store.stats().await.unwrap_err();
        assert_eq!(e.code(), "unavailable", "{e}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "errors come quickly: {:?}", started.elapsed());

    server.restart().expect("restart redis-server on the same port");
    // The same store object reconnects on its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    let resolved = loop {
        match store.resolve("active", &token, ResolveOptions::rotating()).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), "unavailable", "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    };
    let r = resolved.expect("the session persisted by Redis resolves again");
    assert_eq!(r.value.as_bytes(), marked("survives").as_bytes());
    let next = r.token.expect("and rotates");
    assert!(store.resolve("active", next.expose(), ResolveOptions::new()).await.unwrap().is_some());
    store.create("active", b"new", CreateOptions::new()).await.expect("new sessions after recovery");
}

#[tokio::test]
async fn nothing_listening_is_a_clear_connect_error() {
    xems_testkit::logs::capture();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = xems_redis::RedisStore::builder(&format!("redis://127.0.0.1:{port}"))
        .secret(common::secret())
        .connection_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot connect to Redis"), "{e}");
}

#[tokio::test]
async fn a_store_without_a_secret_refuses_to_start() {
    xems_testkit::logs::capture();
    let e = xems_redis::RedisStore::builder("redis://127.0.0.1:1").connect().await.unwrap_err();
    assert!(matches!(e, xems_redis::ConfigError::MissingSecret), "{e}");
    assert!(e.to_string().contains("secret"), "{e}");
}
