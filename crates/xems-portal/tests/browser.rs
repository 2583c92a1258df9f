//! The portal in a real headless Chromium, driven through chromedriver:
//! log in, enter the TOTP code, open the dashboard, run 20 bursts of 12
//! concurrent widget fetches with rotation on every request (zero 401s),
//! check that page scripts cannot see the token, log out, and check that
//! the old cookie is refused, in the browser and replayed by a plain HTTP
//! client.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`
//! (`./scripts/test.sh` installs them). A missing binary fails the test
//! with that message; it is never skipped. `CHROMIUM` and `CHROMEDRIVER`
//! override the binaries' paths. Screenshots of the MFA step, the dashboard
//! and the sessions page are saved to `<target>/test-output/portal-*.png`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

fn find_binary(env: &str, names: &[&str], package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser test needs {} and could not find it: install the Debian package `{package}` \
         (apt-get install -y chromium chromium-driver, or run ./scripts/test.sh, which installs it), \
         or point {env} at the binary",
        names[0]
    );
}

/// `<target>/test-output`, next to `debug/` where this test runs from.
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).expect("create the test output folder");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_chromedriver(chromedriver: &Path) -> (common::Running, String) {
    let port = free_port();
    let child = Command::new(chromedriver)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
    let running = common::Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, format!("http://127.0.0.1:{port}"))
}

/// One request from a plain HTTP/1.1 client (no browser): the status and
/// the `Location` header.
fn raw_get(base: &str, path: &str, cookie: &str) -> (u16, Option<String>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect to the portal");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .map(str::to_owned);
    (status, location)
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}")).text().await.unwrap()
}

async fn wait_for_path(c: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.expect("current url");
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "expected to reach {path}, still at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn session_cookie(c: &Client) -> Option<fantoccini::cookies::Cookie<'static>> {
    c.get_all_cookies().await.expect("cookies").into_iter().find(|k| k.name().ends_with("xems_token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_login_dashboard_bursts_and_logout_in_chromium() {
    let chromium = find_binary("CHROMIUM", &["chromium", "chromium-browser", "google-chrome"], "chromium");
    let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"], "chromium-driver");
    let started = Instant::now();

    let (_portal, _, base) = common::start_portal(&[]);
    let (_driver, driver_url) = start_chromedriver(&chromedriver);
    let profile = tempfile::tempdir().expect("a fresh user-data-dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1360,1020",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a Chromium session through chromedriver");

    // 1. Password, read off the login page as a visitor would.
    c.goto(&format!("{base}/login")).await.unwrap();
    let email = text(&c, "#demo-email").await;
    let password = text(&c, "#demo-password").await;
    c.find(Locator::Css("#email")).await.unwrap().send_keys(&email).await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(&password).await.unwrap();
    c.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/mfa").await;
    let pending = session_cookie(&c).await.expect("the pending session's cookie");
    assert_eq!(pending.http_only(), Some(true));

    // 2. The TOTP code from the demo authenticator on the page.
    let out = output_dir();
    std::fs::write(out.join("portal-mfa.png"), c.screenshot().await.expect("a screenshot")).expect("save");
    let code = text(&c, "#demo-code").await;
    assert_eq!(code.len(), 6, "{code:?}");
    c.find(Locator::Css("#code")).await.unwrap().send_keys(&code).await.unwrap();
    c.find(Locator::Css("#mfa-submit")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/dashboard").await;
    let active = session_cookie(&c).await.expect("the signed-in session's cookie");
    assert_ne!(active.value(), pending.value(), "migration hands out a new token");
    assert_eq!(active.http_only(), Some(true), "the token is HttpOnly");
    assert_eq!(active.secure(), Some(true), "the token is Secure (accepted on 127.0.0.1)");
    assert_eq!(raw_get(&base, "/api/me", &format!("{}={}", pending.name(), pending.value())).0, 401, "temp token dead");

    // 3. Twenty bursts of twelve concurrent widget fetches, rotating on
    //    every request.
    let before: Value = c.execute("return window.xemsStats();", vec![]).await.unwrap();
    let stats = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.xemsRunBursts(20, 40).then(done, (e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .expect("the bursts ran");
    println!("dashboard stats before: {before}, after: {stats}");
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("stats.{k} in {stats}"));
    let burst_requests = n("requests") - before["requests"].as_u64().unwrap_or(0);
    assert!(burst_requests >= 240, "20 bursts of 12 requests: {stats}");
    assert_eq!(n("unauthorized"), 0, "zero 401s with rotation on every request: {stats}");
    assert_eq!(n("failed"), 0, "no other failure: {stats}");
    assert_eq!(n("ok"), n("requests"));
    assert!(n("rotated") >= 20, "at least one rotation per burst: {stats}");

    // 4. Page scripts cannot read the token.
    let after = session_cookie(&c).await.expect("still signed in");
    assert_ne!(after.value(), active.value(), "the token rotated during the bursts");
    let document_cookie: Value = c.execute("return document.cookie;", vec![]).await.unwrap();
    let document_cookie = document_cookie.as_str().unwrap_or_default().to_owned();
    assert!(!document_cookie.contains(after.value()), "document.cookie exposes the token: {document_cookie:?}");
    assert!(!document_cookie.contains("xems_token"), "document.cookie shows the session cookie: {document_cookie:?}");

    let screenshot = c.screenshot().await.expect("a screenshot");
    let shot = out.join("portal-dashboard.png");
    std::fs::write(&shot, screenshot).expect("save the screenshot");
    println!("dashboard screenshot: {}", shot.display());

    // The sessions page lists this session as the current one.
    c.goto(&format!("{base}/sessions")).await.unwrap();
    let table = text(&c, "#sessions-table").await;
    assert!(table.contains("this device"), "{table}");
    std::fs::write(out.join("portal-sessions.png"), c.screenshot().await.expect("a screenshot")).expect("save");

    // 5. Logout; the protected page is then refused.
    let last = session_cookie(&c).await.expect("still signed in");
    let replay = format!("{}={}", last.name(), last.value());
    c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/login").await;
    assert!(session_cookie(&c).await.is_none(), "logout cleared the cookie");
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    wait_for_path(&c, "/login").await;
    let status: Value = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/me', { cache: 'no-store' }).then((r) => done(r.status), () => done(0));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401), "the API refuses the logged-out browser");

    // 6. The last cookie, replayed by a plain HTTP client, is refused.
    assert_eq!(raw_get(&base, "/api/me", &replay).0, 401);
    let (status, location) = raw_get(&base, "/dashboard", &replay);
    assert_eq!((status, location.as_deref()), (303, Some("/login")));

    c.close().await.expect("close the browser");
    println!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
