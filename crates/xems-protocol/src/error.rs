//! Why a line could not be turned into a request.

use xems_core::DurationError;

use crate::request::Id;
use crate::response::Response;

/// Why a line is not a valid request. Every variant has a stable
/// [`code`](DecodeError::code) that goes on the error response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The line is longer than the server's limit.
    #[error("line of {len} bytes is longer than the limit of {max} bytes")]
    LineTooLong {
        /// The line's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line is empty (or only whitespace).
    #[error("empty line: expected one JSON object per line")]
    Empty,
    /// The line is not valid UTF-8.
    #[error("invalid request: the line is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The line is not a JSON object of the expected shape (invalid UTF-8,
    /// invalid JSON, a field of the wrong type, a duplicate field...).
    #[error("invalid request: {0}")]
    Json(#[source] serde_json::Error),
    /// The line has no `action`.
    #[error("missing field \"action\"")]
    MissingAction,
    /// The action is not one this server knows.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// A field the action needs is absent.
    #[error("action {action:?} needs field {field:?}")]
    MissingField {
        /// The action.
        action: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field has the right JSON type but an unusable content.
    #[error("invalid field {field:?}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A duration field does not follow the TTL grammar.
    #[error("invalid field {field:?}: {source}")]
    Duration {
        /// The field.
        field: &'static str,
        /// The parse error (quotes the input).
        #[source]
        source: DurationError,
    },
}

impl DecodeError {
    /// The stable error code sent on the response.
    ///
    /// ```
    /// use xems_protocol::DecodeError;
    /// assert_eq!(DecodeError::UnknownAction("x".into()).code(), "unknown_action");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::LineTooLong { .. } => "line_too_long",
            DecodeError::UnknownAction(_) => "unknown_action",
            DecodeError::Duration { .. } => "invalid_duration",
            DecodeError::InvalidField { field: "grace_period", .. } => "invalid_argument",
            DecodeError::Empty
            | DecodeError::NotUtf8 { .. }
            | DecodeError::Json(_)
            | DecodeError::MissingAction
            | DecodeError::MissingField { .. }
            | DecodeError::InvalidField { .. } => "bad_request",
        }
    }
}

/// A [`DecodeError`] together with the request's `id`, when the line was
/// readable enough to find one, so that the error response can echo it.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct RequestError {
    /// The `id` of the failed request, if it could be read.
    pub id: Option<Id>,
    /// What went wrong.
    #[source]
    pub kind: DecodeError,
}

impl RequestError {
    /// The error response for this request.
    pub fn to_response(&self) -> Response {
        Response::error(self.kind.code(), self.kind.to_string()).with_id(self.id.clone())
    }
}

impl From<DecodeError> for RequestError {
    fn from(kind: DecodeError) -> Self {
        RequestError { id: None, kind }
    }
}
