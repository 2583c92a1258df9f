//! The error of the extractors and of [`Xems`](crate::Xems) operations, and
//! how each becomes an HTTP response.

use std::sync::Arc;

use axum_core::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

/// Why a session could not be had, or an operation on it failed.
///
/// As a response: [`NoSession`](Self::NoSession) is `401`,
/// [`Unavailable`](Self::Unavailable) is `503` with `Retry-After: 1`, every
/// other variant is `500`. None of them clears the client's cookie: a store
/// failure never logs anyone out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XemsError {
    /// The request carries no token, or one that resolves to nothing
    /// (unknown, expired, revoked, or replayed after its grace period).
    #[error("no session")]
    NoSession,
    /// The store cannot be reached, or is full: retry later.
    #[error("session store unavailable")]
    Unavailable(#[source] Arc<xems_core::Error>),
    /// The store refused the operation (a bad sandbox name, an oversized
    /// value, ...): a bug in the application, not in the request.
    #[error("session store error")]
    Store(#[source] Arc<xems_core::Error>),
    /// The session value is not the JSON the handler expects.
    #[error("session value is not the expected JSON")]
    Json(#[source] serde_json::Error),
    /// An extractor ran on a route without an `XemsLayer`.
    #[error("no XemsLayer on this route: add it with Router::layer")]
    MissingLayer,
}

impl XemsError {
    /// Classifies and logs a store error; called once where it happens.
    pub(crate) fn store(op: &'static str, e: xems_core::Error) -> Self {
        log_store_error(op, &e);
        Self::from_cached(&Arc::new(e))
    }

    /// Classifies an error that was logged when it happened.
    pub(crate) fn from_cached(e: &Arc<xems_core::Error>) -> Self {
        if is_unavailable(e) { XemsError::Unavailable(e.clone()) } else { XemsError::Store(e.clone()) }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            XemsError::NoSession => StatusCode::UNAUTHORIZED,
            XemsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            XemsError::Store(_) | XemsError::Json(_) | XemsError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A full sandbox is a capacity problem: answer like an unavailable store.
fn is_unavailable(e: &xems_core::Error) -> bool {
    e.is_unavailable() || e.code() == "sandbox_full"
}

/// One clear line per store failure. The error's text never holds a token
/// or a value (stores keep them out of their errors).
pub(crate) fn log_store_error(op: &'static str, e: &xems_core::Error) {
    if is_unavailable(e) {
        tracing::error!(
            target: "xems::axum",
            op,
            code = e.code(),
            error = %e,
            "session store unavailable: answering 503 and keeping the client's cookie"
        );
    } else {
        tracing::error!(target: "xems::axum", op, code = e.code(), error = %e, "session store refused the operation");
    }
}

impl IntoResponse for XemsError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            XemsError::NoSession => "no session: log in first",
            XemsError::Unavailable(_) => "the session store is unavailable; try again in a moment",
            XemsError::MissingLayer => {
                tracing::error!(target: "xems::axum", "a session extractor ran on a route without XemsLayer");
                "internal error"
            }
            _ => "internal error",
        };
        let mut response = (status, body).into_response();
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
