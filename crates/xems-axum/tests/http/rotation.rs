//! Reading the token (cookie, then header), rotation on, off and by interval,
//! grace hits, and what the response carries.

use std::time::Duration;

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn cookie_client_gets_a_new_cookie_on_every_request() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let t0 = login_cookie(&app, "42").await;

    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "\"42\" Rotated");
    let (t1, full) = r.set_cookie().expect("rotation sets the cookie");
    assert_ne!(t1, t0);
    assert_eq!(full, format!("{COOKIE}={t1}; Path=/; HttpOnly; Secure; SameSite=Strict"));
    assert!(r.no_store(), "a response setting the session cookie is not cacheable");
    assert!(r.header_token().is_none(), "a cookie client never gets the token in a header");

    let r = send(&app, "GET", "/me", &Auth::Cookie(t1.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let (t2, _) = r.set_cookie().unwrap();
    assert!(t2 != t1 && t2 != t0);
}

#[tokio::test]
async fn header_client_gets_the_new_token_in_the_header() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "POST", "/login", &Auth::None, "42 header").await;
    assert!(r.set_cookie().is_none(), "header delivery sets no cookie");
    assert!(r.no_store());
    let t0 = r.header_token().expect("the token is in the header");

    let r = send(&app, "GET", "/me", &Auth::Header(t0.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie().is_none(), "a header client gets no cookie");
    let t1 = r.header_token().expect("rotation answers in the header");
    assert_ne!(t1, t0);
    assert!(r.no_store());

    // A later link from a header client answers in the header too (Auto).
    let r = send(&app, "POST", "/login", &Auth::Header(t1), "43").await;
    assert!(r.set_cookie().is_none());
    assert!(r.header_token().is_some());
}

#[tokio::test]
async fn the_cookie_is_read_before_the_header() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false));
    let alice = login_cookie(&app, "alice").await;
    let bob = login_cookie(&app, "bob").await;
    let req = axum::http::Request::builder()
        .uri("/me")
        .header("cookie", format!("{COOKIE}={alice}"))
        .header(HEADER, bob.as_str())
        .body(axum::body::Body::empty())
        .unwrap();
    let r = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    let body = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"\"alice\" Current");

    // An emptied cookie is no cookie: the header is used.
    let req = axum::http::Request::builder()
        .uri("/me")
        .header("cookie", format!("{COOKIE}="))
        .header(HEADER, bob.as_str())
        .body(axum::body::Body::empty())
        .unwrap();
    let r = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let body = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"\"bob\" Current");
}

#[tokio::test]
async fn rotation_off_keeps_the_token_and_sets_nothing() {
    let (engine, clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false).with_ttl("10m"));
    let t0 = login_cookie(&app, "42").await;
    for _ in 0..3 {
        // Idle refresh on each request: 9 minutes apart, a 10-minute TTL.
        clock.advance(Duration::from_secs(9 * 60));
        let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "\"42\" Current");
        assert!(r.set_cookie().is_none());
        assert!(!r.no_store(), "nothing credential-bearing in this response");
    }
    clock.advance(Duration::from_secs(10 * 60));
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "idle for the whole TTL: expired");
}

#[tokio::test]
async fn interval_rotation_rotates_only_old_tokens() {
    let (engine, clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation("5m"));
    let t0 = login_cookie(&app, "42").await;
    clock.advance(Duration::from_secs(4 * 60));
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.body, "\"42\" Current");
    assert!(r.set_cookie().is_none(), "younger than 5 minutes: kept");
    clock.advance(Duration::from_secs(2 * 60));
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.body, "\"42\" Rotated");
    let (t1, _) = r.set_cookie().expect("older than 5 minutes: rotated");
    assert_ne!(t1, t0);
    let r = send(&app, "GET", "/me", &Auth::Cookie(t1), "").await;
    assert!(r.set_cookie().is_none(), "the new token is young again");
}

#[tokio::test]
async fn a_grace_hit_hands_out_the_current_token() {
    let (engine, clock) = engine();
    let app = app(layer_for(engine).with_grace_period(Duration::from_secs(2)));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    let (t1, _) = r.set_cookie().unwrap();

    // A concurrent request that still carried t0 arrives within the grace.
    clock.advance(Duration::from_millis(1500));
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "\"42\" Grace");
    let (current, _) = r.set_cookie().expect("a grace hit hands out the current token");
    assert_eq!(current, t1, "no new token is minted on a grace hit");
    assert!(r.no_store());

    // Past the grace, t0 is a replay: refused, and the session is revoked.
    clock.advance(Duration::from_secs(1));
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie().is_none());
    let r = send(&app, "GET", "/me", &Auth::Cookie(t1), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "reuse detection revoked the whole session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_requests_converges_on_one_token() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let mut token = login_cookie(&app, "42").await;
    for _ in 0..20 {
        let replies = futures_join(&app, &token, 12).await;
        let mut handed: Vec<String> = Vec::new();
        for r in &replies {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            handed.push(r.set_cookie().expect("every reply of a burst carries the current token").0);
        }
        handed.dedup();
        assert_eq!(handed.len(), 1, "exactly one successor per burst");
        token = handed.pop().unwrap();
    }
}

async fn futures_join(app: &axum::Router, token: &str, n: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (app, auth) = (app.clone(), Auth::Cookie(token.to_owned()));
            tokio::spawn(async move { send(&app, "GET", "/me", &auth, "").await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn routes_that_do_not_ask_for_the_session_do_not_rotate() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/public", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie().is_none());
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0), "").await;
    assert_eq!(r.body, "\"42\" Rotated", "t0 was still current");
}

#[tokio::test]
async fn a_rotated_token_is_delivered_whatever_the_status() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/teapot", &Auth::Cookie(t0.clone()), "").await;
    assert_eq!(r.status, StatusCode::IM_A_TEAPOT);
    let (t1, _) = r.set_cookie().expect("the client must learn its new token even on an error page");
    assert_ne!(t1, t0);
}

#[tokio::test]
async fn cookie_attributes_follow_the_configuration() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine)
        .with_cookie_name("__Host-sid")
        .with_same_site(xems_axum::SameSite::Lax)
        .with_cookie_max_age("1h"));
    let r = send(&app, "POST", "/login", &Auth::None, "42").await;
    let full = r.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    let token = full.split(';').next().unwrap().strip_prefix("__Host-sid=").unwrap().to_owned();
    assert_eq!(token.len(), 66, "an engine-minted token");
    assert_eq!(full, format!("__Host-sid={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=3600"));

    let (engine, _clock) = self::engine();
    let plain = self::app(layer_for(engine).with_secure(false).with_http_only(false).with_cookie_path("/app"));
    let r = send(&plain, "POST", "/login", &Auth::None, "42").await;
    let (_, full) = r.set_cookie().unwrap();
    assert!(full.ends_with("; Path=/app; SameSite=Strict"), "{full}");
}
