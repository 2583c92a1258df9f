//! Shared pieces of the HTTP-level tests: a small app using every extractor,
//! request helpers and a store that is always down.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use xems_axum::{Delivery, LinkOptions, Session, Xems, XemsError, XemsLayer, XemsLayerBuilder};
use xems_core::{
    CreateOptions, Created, Error, MockClock, ResolveOptions, Resolved, Result, SessionId, SessionMeta, SessionStore,
    Stats, UpdateOutcome,
};
use xems_engine::Engine;
use xems_testkit::logs::MARKER;

pub const COOKIE: &str = "xems_token";
pub const HEADER: &str = "x-xypriss-token";

/// An engine on a mock clock (its audit log on: the whole-suite log capture
/// checks those lines too, see `xems_testkit::logs`).
pub fn engine() -> (Engine, MockClock) {
    xems_testkit::logs::capture();
    let clock = MockClock::starting_now();
    let engine = Engine::builder().clock(clock.clone()).sweep_interval(None).build().unwrap();
    (engine, clock)
}

async fn me(session: Session) -> Result<String, XemsError> {
    let v: serde_json::Value = session.json()?;
    Ok(format!("{} {:?}", v["user"], session.outcome()))
}

async fn maybe(session: Option<Session>) -> String {
    match session {
        Some(s) => format!("user {}", s.json::<serde_json::Value>().unwrap()["user"]),
        None => "anonymous".to_owned(),
    }
}

async fn login(xems: Xems, body: String) -> Result<String, XemsError> {
    // body: "<user> [header|both]"
    let mut words = body.split_whitespace();
    let user = words.next().unwrap_or("42").to_owned();
    let delivery = match words.next() {
        Some("header") => Delivery::Header,
        Some("both") => Delivery::CookieAndHeader,
        Some("cookie") => Delivery::Cookie,
        _ => Delivery::Auto,
    };
    let meta = xems
        .link_json(
            &serde_json::json!({"user": user, "note": MARKER}),
            LinkOptions::new().with_subject(user).with_delivery(delivery),
        )
        .await?;
    Ok(meta.id.to_string())
}

async fn logout(xems: Xems) -> Result<String, XemsError> {
    Ok(xems.unlink().await?.to_string())
}

async fn pending(xems: Xems) -> Result<&'static str, XemsError> {
    xems.link_in(
        "otp-pending",
        serde_json::json!({"user": "7", "attempts": 0, "note": MARKER}).to_string().as_bytes(),
        LinkOptions::new().with_ttl(Duration::from_secs(120)).with_subject("7"),
    )
    .await?;
    Ok("pending")
}

async fn verify(xems: Xems) -> Result<(StatusCode, &'static str), XemsError> {
    let Some(temp) = xems.get_in("otp-pending").await? else { return Ok((StatusCode::NOT_FOUND, "no pending")) };
    let v: serde_json::Value = temp.json()?;
    let value = serde_json::to_vec(&serde_json::json!({"user": v["user"], "mfa": true, "note": MARKER})).unwrap();
    match xems.migrate("otp-pending", Some(&value), LinkOptions::new()).await? {
        Some(_) => Ok((StatusCode::OK, "active")),
        None => Ok((StatusCode::NOT_FOUND, "gone")),
    }
}

async fn bump(xems: Xems) -> Result<String, XemsError> {
    let Some(temp) = xems.get_in("otp-pending").await? else { return Ok("none".into()) };
    let value = serde_json::json!({"user": "7", "attempts": 1, "note": MARKER}).to_string();
    let outcome = xems.update_in("otp-pending", temp.meta().version, value.as_bytes()).await?;
    Ok(format!("{outcome:?}").split('(').next().unwrap().split(' ').next().unwrap().to_owned())
}

async fn others(xems: Xems, session: Session) -> Result<String, XemsError> {
    let v: serde_json::Value = session.json()?;
    let subject = v["user"].as_str().unwrap().to_owned();
    Ok(xems.revoke_others(&subject).await?.to_string())
}

async fn sessions(xems: Xems, session: Session) -> Result<String, XemsError> {
    let v: serde_json::Value = session.json()?;
    let list = xems.list_sessions(v["user"].as_str().unwrap()).await?;
    Ok(list.len().to_string())
}

async fn revoke_one(xems: Xems, session: Session, id: String) -> Result<String, XemsError> {
    let v: serde_json::Value = session.json()?;
    let id = SessionId::new(&id).unwrap();
    Ok(xems.revoke_session(v["user"].as_str().unwrap(), &id).await?.to_string())
}

async fn teapot(session: Session) -> (StatusCode, String) {
    (StatusCode::IM_A_TEAPOT, session.id().to_string())
}

/// Every extractor and operation, on one router.
pub fn routes() -> Router {
    xems_testkit::logs::capture();
    Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/public", get(|| async { "public" }))
        .route("/teapot", get(teapot))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/pending", post(pending))
        .route("/verify", post(verify))
        .route("/bump", post(bump))
        .route("/others", post(others))
        .route("/sessions", get(sessions))
        .route("/revoke", post(revoke_one))
}

pub fn app<S: SessionStore>(builder: XemsLayerBuilder<S>) -> Router {
    routes().layer(builder.build().unwrap())
}

pub fn layer_for(engine: Engine) -> XemsLayerBuilder<Engine> {
    xems_testkit::logs::capture();
    XemsLayer::builder(engine)
}

/// What a client holds.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Cookie(String),
    Header(String),
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The session cookie this response sets, if any: (value, full header).
    pub fn set_cookie(&self) -> Option<(String, String)> {
        let all: Vec<_> = self.headers.get_all(header::SET_COOKIE).iter().collect();
        assert!(all.len() <= 1, "at most one Set-Cookie: {all:?}");
        let full = all.first()?.to_str().unwrap().to_owned();
        let value = full.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        Some((value, full))
    }

    /// The token in the response header, if any.
    pub fn header_token(&self) -> Option<String> {
        self.headers.get(HEADER).map(|v| v.to_str().unwrap().to_owned())
    }

    pub fn no_store(&self) -> bool {
        self.headers.get(header::CACHE_CONTROL).is_some_and(|v| v == "no-store")
    }
}

pub async fn send(app: &Router, method: &str, path: &str, auth: &Auth, body: &str) -> Reply {
    xems_testkit::logs::capture();
    let mut req = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Cookie(t) => req = req.header(header::COOKIE, format!("theme=dark; {COOKIE}={t}; lang=en")),
        Auth::Header(t) => req = req.header(HEADER, t),
    }
    let response: Response<Body> = app.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// Logs in through the cookie; returns the cookie value.
pub async fn login_cookie(app: &Router, user: &str) -> String {
    let r = send(app, "POST", "/login", &Auth::None, user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.set_cookie().expect("login sets the cookie").0
}

/// A store whose backend is down: every call fails with `unavailable`.
#[derive(Clone, Debug, Default)]
pub struct DownStore;

fn down<T>() -> Result<T> {
    Err(Error::unavailable(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")))
}

impl SessionStore for DownStore {
    async fn create(&self, _: &str, _: &[u8], _: CreateOptions) -> Result<Created> {
        down()
    }
    async fn resolve(&self, _: &str, _: &str, _: ResolveOptions) -> Result<Option<Resolved>> {
        down()
    }
    async fn set(&self, _: &str, _: &str, _: &[u8], _: CreateOptions) -> Result<SessionMeta> {
        down()
    }
    async fn del(&self, _: &str, _: &str) -> Result<bool> {
        down()
    }
    async fn exists(&self, _: &str, _: &str) -> Result<bool> {
        down()
    }
    async fn touch(&self, _: &str, _: &str, _: Option<Duration>) -> Result<Option<SessionMeta>> {
        down()
    }
    async fn update_if(&self, _: &str, _: &str, _: u64, _: &[u8]) -> Result<UpdateOutcome> {
        down()
    }
    async fn migrate(&self, _: &str, _: &str, _: &str, _: Option<&[u8]>, _: CreateOptions) -> Result<Option<Created>> {
        down()
    }
    async fn list_subject(&self, _: &str, _: &str) -> Result<Vec<SessionMeta>> {
        down()
    }
    async fn revoke_subject(&self, _: &str, _: &str, _: Option<&str>) -> Result<usize> {
        down()
    }
    async fn revoke_session(&self, _: &str, _: &str, _: &SessionId) -> Result<bool> {
        down()
    }
    async fn stats(&self) -> Result<Stats> {
        down()
    }
}

/// Keeps the type in use for the `Arc<dyn DynSessionStore>` test.
pub type DynStore = Arc<dyn xems_core::DynSessionStore>;
