//! The same small axum app, four ways: without sessions, with
//! tower-sessions (reading and modifying the session on every request),
//! and with xems-axum rotating on every request or not at all.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_sessions::{MemoryStore, SessionManagerLayer};
use xems_axum::{LinkOptions, Session, Xems, XemsError, XemsLayer};

/// The widget every case answers with (the same bytes in every case).
fn widget(n: u64) -> String {
    format!(r#"{{"widget":"cpu","value":42,"n":{n}}}"#)
}

/// Which app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// No session middleware at all: the ceiling.
    NoSession,
    /// tower-sessions with its `MemoryStore`: the session is read and
    /// modified on every request (it never rotates its id).
    TowerSessions,
    /// xems-axum on the embedded engine, a new token on every request.
    XemsRotating,
    /// xems-axum on the embedded engine, never rotating.
    XemsStatic,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Case; 4] = [Case::NoSession, Case::TowerSessions, Case::XemsRotating, Case::XemsStatic];

    /// The case of a name.
    pub fn from_name(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The case's name in tables and in the RESULT line.
    pub fn name(self) -> &'static str {
        match self {
            Case::NoSession => "no_session",
            Case::TowerSessions => "tower_sessions",
            Case::XemsRotating => "xems_rotating",
            Case::XemsStatic => "xems_static",
        }
    }

    /// The request a connection sends once before it is measured, to get a
    /// session (`None`: the first measured request creates it, or there is
    /// none).
    pub fn login(self) -> Option<&'static str> {
        match self {
            Case::XemsRotating | Case::XemsStatic => Some("POST /login"),
            Case::NoSession | Case::TowerSessions => None,
        }
    }

    /// The app.
    pub fn router(self) -> Router {
        match self {
            Case::NoSession => Router::new().route("/widget", get(|| async { widget(1) })),
            Case::TowerSessions => {
                async fn handler(session: tower_sessions::Session) -> Result<String, StatusCode> {
                    // A failure would be a broken benchmark: answer with an
                    // error status, which the load generator counts.
                    let n: u64 = session.get("n").await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?.unwrap_or(0);
                    session.insert("n", n + 1).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                    Ok(widget(n))
                }
                let layer = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
                Router::new().route("/widget", get(handler)).layer(layer)
            }
            Case::XemsRotating | Case::XemsStatic => {
                async fn handler(session: Session) -> Result<String, XemsError> {
                    let v: serde_json::Value = session.json()?;
                    Ok(widget(v["n"].as_u64().unwrap_or(0)))
                }
                async fn login(xems: Xems) -> Result<&'static str, XemsError> {
                    xems.link(br#"{"user":42,"n":0}"#, LinkOptions::new()).await?;
                    Ok("ok")
                }
                let layer = XemsLayer::builder(xems_engine::Engine::new())
                    .with_auto_rotation(self == Case::XemsRotating)
                    .with_secure(false)
                    .build()
                    .expect("a valid configuration");
                Router::new().route("/widget", get(handler)).route("/login", post(login)).layer(layer)
            }
        }
    }
}
