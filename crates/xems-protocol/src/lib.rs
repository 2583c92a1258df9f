//! The xems wire protocol: newline-delimited JSON requests and responses.
//!
//! This crate is pure data and parsing, with no sockets and no runtime: the
//! `xems` binary (stdio sidecar and network server) and `xems-client` both
//! build on it. It accepts exactly the lines the XyPriss host sends to its
//! XEMS sidecar (`ping`, `set`, `get`, `del`) and the xems extensions
//! (`create_session`, `resolve`, `migrate`, ...). The full specification, with
//! every field, default, error code and limit, is `docs/PROTOCOL.md`.
//!
//! ```
//! use xems_protocol::{Command, Response, decode_request, encode_response};
//!
//! let req = decode_request(br#"{"action":"ping","id":7}"#).unwrap();
//! assert!(matches!(req.command, Command::Ping));
//! let mut out = Vec::new();
//! encode_response(&Response::ok().with_data("pong").with_id(req.id), &mut out);
//! assert_eq!(out, b"{\"id\":7,\"status\":\"ok\",\"data\":\"pong\"}\n");
//! ```

mod codec;
mod error;
mod json;
mod request;
mod response;
mod text;
mod wipe;

pub use codec::{DEFAULT_MAX_LINE, Frame, Frames, LineBuffer};
pub use error::{DecodeError, RequestError};
pub use request::{Command, Encoding, Id, Request, RotateSpec, decode_request};
pub use response::{DataAnswer, Outcome, Response, Status, WireMeta, encode_response};
pub use text::{Secret, ValueText};

/// Every action name the protocol knows, in documentation order.
pub const ACTIONS: &[&str] = &[
    "ping",
    "set",
    "get",
    "del",
    "create_session",
    "resolve",
    "migrate",
    "touch",
    "exists",
    "update_if",
    "list_subject",
    "revoke_subject",
    "revoke_session",
    "stats",
    "auth",
    "debug_advance_clock",
    "debug_sweep",
];

/// Runs the decoder and the error encoder over arbitrary bytes, split into
/// lines the way a server splits them, and returns how many response lines
/// were produced (one per input line). The fuzz target and the property
/// tests call this; it must never panic.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) -> usize {
    let mut answered = 0;
    let mut lines = LineBuffer::new(4096);
    let mut out = Vec::new();
    // Feed in uneven chunks so the splitter's state machine is exercised too.
    for chunk in data.chunks(97) {
        lines.extend(chunk);
        // As the server takes them: every frame of a read borrowed at once.
        for frame in lines.frames() {
            answer_frame(frame, &mut out);
            answered += 1;
        }
    }
    if let Some(frame) = lines.finish() {
        answer_frame(frame, &mut out);
        answered += 1;
    }
    answered
}

fn answer_frame(frame: Frame<'_>, out: &mut Vec<u8>) {
    out.clear();
    let response = match frame {
        Frame::Line(line) => match decode_request(line) {
            Ok(req) => Response::ok().with_id(req.id),
            Err(e) => e.to_response(),
        },
        Frame::TooLong { len } => RequestError::from(DecodeError::LineTooLong { len, max: 4096 }).to_response(),
    };
    encode_response(&response, out);
    // Exactly one line, and valid JSON: what a peer counting lines relies on.
    assert_eq!(memchr::memchr_iter(b'\n', out).count(), 1, "one response line per frame");
    assert!(serde_json::from_slice::<Response>(&out[..out.len() - 1]).is_ok(), "responses parse back");
}
