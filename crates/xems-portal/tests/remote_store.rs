//! `xems-portal --store unix://PATH`: the binary keeps its sessions in an
//! `xems serve` server (run in this test's process on a Unix socket).

mod common;

use std::time::{Duration, Instant};

use common::http;
use tokio_util::sync::CancellationToken;
use xems_core::SessionStore as _;
use xems_server::{ConnConfig, ListenAddr, ServeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_keeps_its_sessions_in_xems_serve() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("xems.sock");
    xems_testkit::logs::capture();
    let store = xems_engine::Engine::builder().build().unwrap();
    let shutdown = CancellationToken::new();
    let cfg = ServeConfig {
        listen: vec![ListenAddr::Unix(socket.clone())],
        max_connections: 64,
        shutdown_grace: Duration::from_secs(1),
        conn: ConnConfig {
            max_line: 1 << 20,
            auth_token: None,
            auth_timeout: Duration::from_secs(10),
            test_hooks: None,
        },
    };
    let server = tokio::spawn(xems_server::serve(store.clone(), cfg, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "xems serve did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let store_url = format!("unix://{}", socket.display());
    let (_portal, line, base) = common::start_portal(&["--store", &store_url]);
    assert!(line.contains("store: unix://"), "{line}");

    let result = tokio::task::spawn_blocking(move || {
        let login = r#"{"email":"demo@xems.dev","password":"correct-horse-battery"}"#;
        let (status, pending, _) = http(&base, "POST", "/api/login", None, login);
        assert_eq!(status, 200);
        let pending = pending.expect("the pending cookie");
        let (status, _, totp) = http(&base, "GET", "/api/demo/totp", Some(&pending), "");
        assert_eq!(status, 200);
        let code = totp["code"].as_str().unwrap().to_owned();
        let (status, active, _) = http(&base, "POST", "/api/mfa", Some(&pending), &format!(r#"{{"code":"{code}"}}"#));
        assert_eq!(status, 200);
        let active = active.expect("the active cookie");
        let (status, next, me) = http(&base, "GET", "/api/me", Some(&active), "");
        assert_eq!((status, me["email"].as_str()), (200, Some("demo@xems.dev")));
        next.expect("rotated")
    })
    .await
    .unwrap();

    // The session lives in the server's store, not in the portal.
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.sandbox("active").map(|s| s.records), Some(1));
    assert_eq!(stats.sandbox("otp-pending").map_or(0, |s| s.records), 0, "the pending session migrated");
    assert!(stats.counters.migrated >= 1 && stats.counters.rotated >= 1);

    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let (status, cleared, _) =
        tokio::task::spawn_blocking(move || http(&base, "POST", "/api/logout", Some(&result), "")).await.unwrap();
    assert_eq!((status, cleared.as_deref().map(|c| c.ends_with('='))), (200, Some(true)));
    assert_eq!(store.stats().await.unwrap().sandbox("active").map_or(0, |s| s.records), 0);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
