//! No session (401, the optional form), a store that is down (503, never a
//! logout), and extractors without the layer.

use axum::http::StatusCode;
use axum::routing::get;

use crate::common::*;

#[tokio::test]
async fn no_session_is_401() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "GET", "/me", &Auth::None, "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie().is_none());

    let unknown = "A".repeat(66);
    for auth in [Auth::Cookie(unknown.clone()), Auth::Header(unknown), Auth::Cookie("x".repeat(600))] {
        let r = send(&app, "GET", "/me", &auth, "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.set_cookie().is_none(), "an unknown token is not cleared");
    }
}

#[tokio::test]
async fn the_optional_form_gives_none_instead_of_401() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "GET", "/maybe", &Auth::None, "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "anonymous"));
    let r = send(&app, "GET", "/maybe", &Auth::Cookie("B".repeat(66)), "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "anonymous"));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/maybe", &Auth::Cookie(t0), "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "user \"42\""));
    assert!(r.set_cookie().is_some(), "the optional form rotates too");
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_and_never_logs_out() {
    let app = app(xems_axum::XemsLayer::builder(DownStore));
    let cookie = Auth::Cookie("C".repeat(66));
    for (method, path, auth) in [
        ("GET", "/me", cookie.clone()),
        ("GET", "/maybe", cookie.clone()),
        ("GET", "/me", Auth::Header("C".repeat(66))),
        ("POST", "/login", Auth::None),
        ("POST", "/login", cookie.clone()),
        ("POST", "/logout", cookie.clone()),
        ("POST", "/pending", Auth::None),
        ("POST", "/verify", cookie.clone()),
    ] {
        let r = send(&app, method, path, &auth, "42").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(r.headers.get("retry-after").unwrap(), "1");
        assert!(r.set_cookie().is_none(), "{method} {path}: a store failure must not touch the cookie");
        assert!(r.header_token().is_none());
    }
    // A request that never needs the store still works.
    let r = send(&app, "GET", "/public", &cookie, "").await;
    assert_eq!(r.status, StatusCode::OK);
    // Without a token, the optional form needs no store either.
    let r = send(&app, "GET", "/maybe", &Auth::None, "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "anonymous"));
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_500() {
    let app: axum::Router = axum::Router::new().route("/me", get(|_: xems_axum::Session| async { "" }));
    let r = send(&app, "GET", "/me", &Auth::None, "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_value_that_is_not_the_expected_json_is_a_500() {
    use xems_core::SessionStore as _;
    let (engine, _clock) = engine();
    let value = format!("not json {}", xems_testkit::logs::MARKER);
    let created = engine.create("active", value.as_bytes(), xems_core::CreateOptions::new()).await.unwrap();
    let app = app(layer_for(engine));
    let r = send(&app, "GET", "/me", &Auth::Cookie(created.token.expose().to_owned()), "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.set_cookie().is_some(), "the rotation still reaches the client");
}
