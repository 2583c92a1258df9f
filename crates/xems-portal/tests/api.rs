//! The portal's MFA flow through its JSON API, in process: password, the
//! `otp-pending` session and its attempt limit, migration, logout.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use xems_portal::{DEMO_EMAIL, DEMO_PASSWORD, MAX_OTP_ATTEMPTS, PortalOptions};

const COOKIE: &str = "__Host-xems_token";

fn portal() -> Router {
    portal_on().0
}

/// The portal and a handle on its store (its audit log on: the whole-suite
/// log capture checks those lines too).
fn portal_on() -> (Router, xems_engine::Engine) {
    xems_testkit::logs::capture();
    assert_eq!(DEMO_PASSWORD, xems_testkit::secrets::DEMO_PASSWORD, "the log scan looks for the demo password");
    let engine = xems_engine::Engine::builder().build().unwrap();
    (xems_portal::app(Arc::new(engine.clone()), PortalOptions::new()).unwrap(), engine)
}

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    json: Value,
    location: Option<String>,
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>, body: Option<Value>) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("{COOKIE}={c}"));
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let cookie = res.headers().get(header::SET_COOKIE).map(|v| {
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("Secure") && v.contains("SameSite=Strict"), "{v}");
        v.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
    });
    let location = res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, cookie, json, location }
}

async fn login(app: &Router) -> String {
    let r = call(app, "POST", "/api/login", None, Some(json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["attempts_left"], MAX_OTP_ATTEMPTS);
    let cookie = r.cookie.expect("the pending token travels in the cookie");
    assert!(!r.json.to_string().contains(&cookie), "never in the body");
    cookie
}

async fn demo_code(app: &Router, pending: &str) -> String {
    let r = call(app, "GET", "/api/demo/totp", Some(pending), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json["code"].as_str().unwrap().to_owned()
}

/// A code that is not the current one (nor, with overwhelming probability,
/// the one of the step before or after).
fn wrong(code: &str) -> String {
    code.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect()
}

#[tokio::test]
async fn the_whole_flow() {
    let (app, store) = portal_on();
    // A wrong password carrying the log scan's marker: no log line may show it.
    let bad_password = xems_testkit::logs::marked("nope");
    let r = call(&app, "POST", "/api/login", None, Some(json!({"email": DEMO_EMAIL, "password": bad_password}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.cookie.is_none());

    let pending = login(&app).await;
    // The pending session is not a signed-in session.
    assert_eq!(call(&app, "GET", "/api/me", Some(&pending), None).await.status, StatusCode::UNAUTHORIZED);
    let r = call(&app, "GET", "/dashboard", Some(&pending), None).await;
    assert_eq!(r.location.as_deref(), Some("/login"));

    let code = demo_code(&app, &pending).await;
    let r = call(&app, "POST", "/api/mfa", Some(&pending), Some(json!({"code": wrong(&code)}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["attempts_left"], MAX_OTP_ATTEMPTS - 1);
    assert!(r.cookie.is_none(), "a wrong code keeps the pending cookie");

    let r = call(&app, "POST", "/api/mfa", Some(&pending), Some(json!({"code": code}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let active = r.cookie.expect("migration sets the new cookie (xLink)");
    assert_ne!(active, pending);

    // The temporary token died at once.
    assert_eq!(call(&app, "GET", "/api/demo/totp", Some(&pending), None).await.status, StatusCode::UNAUTHORIZED);
    let r = call(&app, "POST", "/api/mfa", Some(&pending), Some(json!({"code": code}))).await;
    assert_eq!(r.status, StatusCode::GONE);

    // Signed in; every request rotates the token.
    let r = call(&app, "GET", "/api/me", Some(&active), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["email"], DEMO_EMAIL);
    assert_eq!(r.json["token_outcome"], "rotated");
    let next = r.cookie.expect("rotated");
    let r = call(&app, "GET", "/api/widgets/2", Some(&next), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["title"], "Tokens rotated");
    let next = r.cookie.unwrap();
    assert_eq!(call(&app, "GET", "/api/widgets/12", Some(&next), None).await.status, StatusCode::NOT_FOUND);

    let r = call(&app, "GET", "/api/sessions", Some(&next), None).await;
    let next = r.cookie.unwrap();
    assert_eq!(r.json["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["sessions"][0]["current"], true);

    // A second device of the same user (its session made in the store: a
    // second TOTP login would wait for the next 30 s step), then "log out
    // everywhere else" from the first.
    use xems_core::SessionStore as _;
    let value = br#"{"uid":"u-1","email":"demo@xems.dev","name":"Demo User","role":"admin","login_at":0}"#;
    let phone = store.create("active", value, xems_core::CreateOptions::new().with_subject("u-1")).await.unwrap();
    let phone = phone.token.expose().to_owned();
    let r = call(&app, "GET", "/api/sessions", Some(&next), None).await;
    let next = r.cookie.unwrap();
    assert_eq!(r.json["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(call(&app, "GET", "/api/me", Some(&phone), None).await.status, StatusCode::OK);
    let phone = call(&app, "GET", "/api/me", Some(&phone), None).await; // grace hit: still in
    assert_eq!(phone.status, StatusCode::OK);
    let phone = phone.cookie.unwrap();
    let r = call(&app, "POST", "/api/sessions/revoke-others", Some(&next), None).await;
    assert_eq!((r.status, r.json["revoked"].as_u64()), (StatusCode::OK, Some(1)));
    let next = r.cookie.unwrap();
    assert_eq!(call(&app, "GET", "/api/me", Some(&phone), None).await.status, StatusCode::UNAUTHORIZED);
    let r = call(&app, "GET", "/api/sessions", Some(&next), None).await;
    let next = r.cookie.unwrap();
    assert_eq!(r.json["sessions"].as_array().unwrap().len(), 1);

    let r = call(&app, "POST", "/api/logout", Some(&next), None).await;
    assert_eq!((r.status, r.json["revoked"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(r.cookie.as_deref(), Some(""), "logout clears the cookie");
    assert_eq!(call(&app, "GET", "/api/me", Some(&next), None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logging_in_again_replaces_what_the_cookie_held() {
    let (app, store) = portal_on();
    let first = login(&app).await;
    let r =
        call(&app, "POST", "/api/login", Some(&first), Some(json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD})))
            .await;
    assert_eq!(r.status, StatusCode::OK);
    let second = r.cookie.expect("a new pending cookie");
    assert_ne!(second, first);
    assert_eq!(call(&app, "GET", "/api/demo/totp", Some(&first), None).await.status, StatusCode::UNAUTHORIZED);
    use xems_core::SessionStore as _;
    assert_eq!(store.stats().await.unwrap().sandbox("otp-pending").map(|s| s.records), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn otp_attempts_are_counted_atomically() {
    let app = portal();
    let pending = login(&app).await;
    let code = demo_code(&app, &pending).await;
    let bad = wrong(&code);
    // Twelve concurrent guesses: exactly five are judged, the rest find the
    // attempt budget spent.
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (app, pending, bad) = (app.clone(), pending.clone(), bad.clone());
            tokio::spawn(
                async move { call(&app, "POST", "/api/mfa", Some(&pending), Some(json!({"code": bad}))).await },
            )
        })
        .collect();
    let mut judged = 0;
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::UNAUTHORIZED => judged += 1,
            StatusCode::GONE => refused += 1,
            other => panic!("unexpected {other}: {:?}", r.json),
        }
    }
    assert_eq!(judged, MAX_OTP_ATTEMPTS - 1, "the fifth wrong code closes the attempt");
    assert_eq!(judged + refused, 12);
    // The right code is now refused too: the pending session is gone.
    let r = call(&app, "POST", "/api/mfa", Some(&pending), Some(json!({"code": code}))).await;
    assert_eq!(r.status, StatusCode::GONE);
}

#[tokio::test]
async fn pages_render_and_redirect() {
    let app = portal();
    let req = Request::builder().uri("/login").body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers().get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains(DEMO_EMAIL) && html.contains(DEMO_PASSWORD), "the demo account is shown");

    for path in ["/", "/dashboard", "/sessions"] {
        let r = call(&app, "GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location.as_deref(), Some("/login"), "{path}");
    }
    assert_eq!(call(&app, "GET", "/mfa", None, None).await.location.as_deref(), Some("/login?notice=expired"));
}
