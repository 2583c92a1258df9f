//! The cost of one request inside the server, without the network: each
//! case's router called through `tower::Service` on one thread, with the
//! cookie carried from response to request as over the wire. It isolates
//! what the session layer adds to a request from what the kernel and hyper
//! cost, and it is far less sensitive to other load on the machine than the
//! loopback figures.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use tower::{Service, ServiceExt as _};

use crate::apps::Case;

/// Nanoseconds per request of `case`, over `duration` after a warm-up.
pub(crate) async fn ns_per_request(case: Case, duration: Duration) -> Result<f64, String> {
    // `with_state` turns the handlers into routes once, as `axum::serve` does
    // for each connection (without it every call would rebuild them).
    let mut router = case.router().with_state(()).into_service::<Body>();
    let mut cookie: Option<String> = None;
    if let Some(login) = case.login() {
        let (method, path) = login.split_once(' ').expect("METHOD PATH");
        let req = Request::builder().method(method).uri(path).body(Body::empty()).map_err(|e| e.to_string())?;
        let res = router.ready().await.map_err(|e| e.to_string())?.call(req).await.map_err(|e| e.to_string())?;
        cookie = set_cookie(&res);
    }
    let mut one = async |cookie: &mut Option<String>| -> Result<(), String> {
        let mut req = Request::builder().uri("/widget");
        if let Some(c) = cookie.as_deref() {
            req = req.header(header::COOKIE, c);
        }
        let req = req.body(Body::empty()).map_err(|e| e.to_string())?;
        let res = router.ready().await.map_err(|e| e.to_string())?.call(req).await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("{} answered {}", case.name(), res.status()));
        }
        if let Some(c) = set_cookie(&res) {
            *cookie = Some(c);
        }
        let _ = axum::body::to_bytes(res.into_body(), 1 << 16).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    let warm_until = Instant::now() + duration / 4;
    while Instant::now() < warm_until {
        one(&mut cookie).await?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            one(&mut cookie).await?;
        }
        n += 64;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

fn set_cookie<B>(res: &axum::http::Response<B>) -> Option<String> {
    let v = res.headers().get(header::SET_COOKIE)?.to_str().ok()?;
    Some(v.split(';').next()?.to_owned())
}

/// Nanoseconds per `SessionStore::resolve` of the embedded engine alone, as
/// the layer calls it (idle refresh, the default grace), rotating or not:
/// the store's share of an xems-axum request.
pub(crate) async fn store_resolve_ns(rotate: bool, duration: Duration) -> Result<f64, String> {
    use xems_core::{CreateOptions, Refresh, ResolveOptions, Rotation, SessionStore as _};
    let engine = xems_engine::Engine::new();
    let created =
        engine.create("active", br#"{"user":42,"n":0}"#, CreateOptions::new()).await.map_err(|e| e.to_string())?;
    let opts = ResolveOptions::new()
        .with_rotation(if rotate { Rotation::Always } else { Rotation::Never })
        .with_refresh(Refresh::Idle);
    let mut token = created.token;
    let mut one = async || -> Result<(), String> {
        let r = engine.resolve("active", token.expose(), opts).await.map_err(|e| e.to_string())?;
        let r = r.ok_or("the session vanished")?;
        if let Some(next) = r.token {
            token = next;
        }
        Ok(())
    };
    let warm_until = Instant::now() + duration / 4;
    while Instant::now() < warm_until {
        one().await?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            one().await?;
        }
        n += 64;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}
