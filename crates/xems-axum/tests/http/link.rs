//! xLink, xUnlink, migration between sandboxes, compare-and-set, and a
//! user's other sessions.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn xlink_sets_a_safe_cookie() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "POST", "/login", &Auth::None, "42").await;
    assert_eq!(r.status, StatusCode::OK);
    let (token, full) = r.set_cookie().unwrap();
    assert_eq!(token.len(), 66, "an engine-minted token");
    assert_eq!(full, format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict"));
    assert!(r.no_store());
    assert!(r.header_token().is_none(), "a cookie login never shows the token to page scripts");
    assert!(!r.body.contains(&token), "the token is not in the body");

    let r = send(&app, "POST", "/login", &Auth::None, "42 both").await;
    let (cookie, _) = r.set_cookie().unwrap();
    assert_eq!(r.header_token().as_deref(), Some(cookie.as_str()));
}

#[tokio::test]
async fn a_new_link_replaces_the_session_the_client_held() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false));
    let first = login_cookie(&app, "42").await;
    let r = send(&app, "POST", "/login", &Auth::Cookie(first.clone()), "42").await;
    let (second, _) = r.set_cookie().unwrap();
    assert_ne!(second, first);
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(first), "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(second), "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn xunlink_revokes_and_clears_the_cookie() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0.clone()), "").await;
    let (t1, _) = r.set_cookie().unwrap();

    let r = send(&app, "POST", "/logout", &Auth::Cookie(t1.clone()), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "true");
    let (value, full) = r.set_cookie().expect("logout clears the cookie");
    assert_eq!(value, "");
    assert_eq!(
        full,
        format!(
            "{COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=Strict"
        )
    );
    assert!(r.no_store());
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(t1), "").await.status, StatusCode::UNAUTHORIZED);
    // The rotated-away token within its grace is dead too.
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(t0), "").await.status, StatusCode::UNAUTHORIZED);

    // Logging out without a session still clears the cookie.
    let r = send(&app, "POST", "/logout", &Auth::None, "").await;
    assert_eq!(r.body, "false");
    assert_eq!(r.set_cookie().unwrap().0, "");
}

#[tokio::test]
async fn migration_moves_a_pending_session_to_the_active_sandbox() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "POST", "/pending", &Auth::None, "").await;
    let (temp, _) = r.set_cookie().unwrap();

    // The pending session is no active session.
    let r = send(&app, "GET", "/me", &Auth::Cookie(temp.clone()), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie().is_none(), "a miss leaves the cookie alone");

    let r = send(&app, "POST", "/verify", &Auth::Cookie(temp.clone()), "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "active"));
    let (active, _) = r.set_cookie().expect("migration sets the new cookie");
    assert_ne!(active, temp);
    assert!(r.no_store());

    let r = send(&app, "GET", "/me", &Auth::Cookie(active), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "\"7\" Rotated");

    // The temporary token died at once.
    let r = send(&app, "POST", "/verify", &Auth::Cookie(temp), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.set_cookie().is_none());
}

#[tokio::test]
async fn compare_and_set_counts_writes_once() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine));
    let r = send(&app, "POST", "/pending", &Auth::None, "").await;
    let (temp, _) = r.set_cookie().unwrap();
    let r = send(&app, "POST", "/bump", &Auth::Cookie(temp.clone()), "").await;
    assert_eq!(r.body, "Updated");
    assert_eq!(send(&app, "POST", "/bump", &Auth::None, "").await.body, "none");
}

#[tokio::test]
async fn log_out_everywhere_else() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false));
    let laptop = login_cookie(&app, "42").await;
    let phone = login_cookie(&app, "42").await;
    let tablet = login_cookie(&app, "42").await;
    let other_user = login_cookie(&app, "43").await;

    let r = send(&app, "GET", "/sessions", &Auth::Cookie(laptop.clone()), "").await;
    assert_eq!(r.body, "3");

    let r = send(&app, "POST", "/others", &Auth::Cookie(laptop.clone()), "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "2"));
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(phone), "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(tablet), "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(laptop.clone()), "").await.status, StatusCode::OK);
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(other_user), "").await.status, StatusCode::OK);
    assert_eq!(send(&app, "GET", "/sessions", &Auth::Cookie(laptop), "").await.body, "1");
}

#[tokio::test]
async fn revoke_one_session_by_id() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false));
    let laptop = login_cookie(&app, "42").await;
    let r = send(&app, "POST", "/login", &Auth::None, "42").await;
    let phone_id = r.body.clone();
    let (phone, _) = r.set_cookie().unwrap();
    let r = send(&app, "POST", "/revoke", &Auth::Cookie(laptop), &phone_id).await;
    assert_eq!(r.body, "true");
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(phone), "").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn works_with_a_store_chosen_at_run_time() {
    let (engine, _clock) = engine();
    let store: DynStore = std::sync::Arc::new(engine);
    let app = app(xems_axum::XemsLayer::builder(store));
    let t0 = login_cookie(&app, "42").await;
    let r = send(&app, "GET", "/me", &Auth::Cookie(t0), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie().is_some());
}

/// Tokens travel in the cookie or the header only: one in the URL (where
/// it would land in access logs, history and Referer headers) is ignored.
#[tokio::test]
async fn a_token_in_the_url_is_ignored() {
    let (engine, _clock) = engine();
    let app = app(layer_for(engine).with_auto_rotation(false));
    let token = login_cookie(&app, "42").await;
    for path in [format!("/me?{COOKIE}={token}"), format!("/me?token={token}"), format!("/me?{HEADER}={token}")] {
        let r = send(&app, "GET", &path, &Auth::None, "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.set_cookie().is_none() && r.header_token().is_none());
    }
    assert_eq!(send(&app, "GET", "/me", &Auth::Cookie(token), "").await.status, StatusCode::OK);
}
