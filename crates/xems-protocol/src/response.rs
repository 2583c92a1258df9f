//! Responses: one JSON object per line, absent fields omitted.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xems_core::{ResolveOutcome, SessionId, SessionMeta, Stats, Timestamp};
use zeroize::Zeroize;

use crate::request::Id;

/// `"ok"` or `"error"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The request succeeded.
    #[default]
    Ok,
    /// The request failed; `error` and `code` say why.
    Error,
}

/// How a resolve was answered (`outcome` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The token is current and was kept.
    Current,
    /// This call rotated the token; `new_token` is its successor.
    Rotated,
    /// A rotated-away token within its grace period; `new_token` is the
    /// session's current token.
    Grace,
}

impl From<ResolveOutcome> for Outcome {
    fn from(o: ResolveOutcome) -> Self {
        match o {
            ResolveOutcome::Current => Outcome::Current,
            ResolveOutcome::Rotated => Outcome::Rotated,
            ResolveOutcome::Grace => Outcome::Grace,
        }
    }
}

impl From<Outcome> for ResolveOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Current => ResolveOutcome::Current,
            Outcome::Rotated => ResolveOutcome::Rotated,
            Outcome::Grace => ResolveOutcome::Grace,
        }
    }
}

/// A record's metadata on the wire (`meta`, and the items of `sessions`):
/// times in milliseconds since the UNIX epoch, durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireMeta {
    /// Public session id (not a credential).
    pub id: SessionId,
    /// Version, bumped by each write of the value.
    pub version: u64,
    /// Creation time.
    pub created_at: u64,
    /// Idle expiry.
    pub expires_at: u64,
    /// Absolute deadline.
    pub absolute_deadline: u64,
    /// Effective idle TTL.
    pub ttl_ms: u64,
    /// Whether the requested TTL was cut to the 5-day cap.
    pub ttl_capped: bool,
}

impl From<&SessionMeta> for WireMeta {
    fn from(m: &SessionMeta) -> Self {
        WireMeta {
            id: m.id,
            version: m.version,
            created_at: m.created_at.as_millis(),
            expires_at: m.expires_at.as_millis(),
            absolute_deadline: m.absolute_deadline.as_millis(),
            ttl_ms: u64::try_from(m.ttl.as_millis()).unwrap_or(u64::MAX),
            ttl_capped: m.ttl_capped,
        }
    }
}

impl From<WireMeta> for SessionMeta {
    fn from(w: WireMeta) -> Self {
        SessionMeta::new(
            w.id,
            w.version,
            Timestamp::from_millis(w.created_at),
            Timestamp::from_millis(w.expires_at),
            Timestamp::from_millis(w.absolute_deadline),
            Duration::from_millis(w.ttl_ms),
            w.ttl_capped,
        )
    }
}

/// One response line. Absent fields are omitted from the JSON, so the
/// host's actions answer in exactly the shape XyPriss expects.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Response {
    /// The request's `id`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// `ok` or `error`.
    pub status: Status,
    /// `ping`: `"pong"`; `get` / `resolve`: the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// `data` already in its JSON form: the inside of a JSON string, escaped
    /// as `serde_json` escapes ([`xems_core::ValueForm::Json`]), written
    /// into the line as it is. A server sets it instead of `data` for a
    /// value its store keeps in that form, so a `get` copies the value
    /// instead of escaping it again. Never read from a line.
    #[serde(skip)]
    pub data_json: Option<Vec<u8>>,
    /// The token the client must use from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_token: Option<String>,
    /// Human-readable reason, with `status: error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Stable machine-readable reason, with `status: error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How a resolve was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The record's metadata (boxed, like `stats`: rare fields kept out of
    /// the response every request builds and moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<WireMeta>>,
    /// `exists`: whether the key resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// `del` (verbose): whether a record was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// `revoke_subject` / `revoke_session`: how many sessions were revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// `update_if` conflict: the version now stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// `list_subject`: the subject's live sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<WireMeta>>,
    /// `stats`: figures and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Box<Stats>>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values and tokens are secrets: show only their lengths.
        f.debug_struct("Response")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("data", &self.data.as_ref().map(|d| format!("<{} bytes>", d.len())))
            .field("data_json", &self.data_json.as_ref().map(|d| format!("<{} bytes>", d.len())))
            .field("new_token", &self.new_token.as_ref().map(|_| "<redacted>"))
            .field("error", &self.error)
            .field("code", &self.code)
            .field("outcome", &self.outcome)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// `{"status":"ok"}`.
    pub fn ok() -> Self {
        Response::default()
    }

    /// `{"status":"error","error":message,"code":code}`.
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Response { status: Status::Error, error: Some(message.into()), code: Some(code.into()), ..Response::default() }
    }

    /// The `not_found` error the host expects for a missing key:
    /// `{"status":"error","error":"not found","code":"not_found"}`.
    pub fn not_found() -> Self {
        Response::error("not_found", "not found")
    }

    /// Sets `id`.
    pub fn with_id(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// Sets `data`.
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets `data` from its JSON form (see [`Response::data_json`]).
    pub fn with_data_json(mut self, text: Vec<u8>) -> Self {
        self.data_json = Some(text);
        self
    }

    /// Sets `new_token`.
    pub fn with_new_token(mut self, token: impl Into<String>) -> Self {
        self.new_token = Some(token.into());
        self
    }

    /// Sets `meta`.
    pub fn with_meta(mut self, meta: &SessionMeta) -> Self {
        self.meta = Some(Box::new(meta.into()));
        self
    }

    /// Whether the status is `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Appends `response` as one JSON line (with its `\n`) to `out`.
///
/// The shapes of the hot path (status, with `id`, `data`, `new_token`,
/// `error`, `code`) are written directly, the strings escaped eight bytes at
/// a time; anything else goes through `serde_json`.
/// Both write the same bytes (a property test holds them to it).
pub fn encode_response(response: &Response, out: &mut Vec<u8>) {
    if !write_simple(response, out) {
        encode_with_serde(response, out);
    }
    out.push(b'\n');
}

fn encode_with_serde(response: &Response, out: &mut Vec<u8>) {
    let start = out.len();
    // A rare shape (with metadata, say) whose data is in its JSON form:
    // serde writes text, so the form is read back first.
    let mut plain = None;
    let response = match &response.data_json {
        None => response,
        Some(text) => {
            let mut copy = response.clone();
            copy.data_json.zeroize();
            copy.data = xems_core::json_text::unescape(text).map(|raw| String::from_utf8_lossy(&raw).into_owned());
            plain.insert(copy)
        }
    };
    let written = serde_json::to_writer(&mut *out, response);
    if let Some(data) = plain.as_mut().and_then(|p| p.data.as_mut()) {
        data.zeroize();
    }
    if written.is_err() {
        // Unreachable with these types (no maps with non-string keys, no
        // failing Serialize impls), but a line must be written whatever
        // happens: the peer matches responses by order.
        out.truncate(start);
        out.extend_from_slice(
            br#"{"status":"error","error":"internal error: cannot encode response","code":"internal"}"#,
        );
    }
}

/// Writes a response that has none of the structured fields, as
/// `serde_json` would; `false` (and nothing written) otherwise.
fn write_simple(r: &Response, out: &mut Vec<u8>) -> bool {
    let Response {
        id,
        status,
        data,
        data_json,
        new_token,
        error,
        code,
        outcome: None,
        meta: None,
        exists: None,
        deleted: None,
        revoked: None,
        current_version: None,
        sessions: None,
        stats: None,
    } = r
    else {
        return false;
    };
    if !write_head(id.as_ref(), *status, out) {
        return false;
    }
    debug_assert!(data.is_none() || data_json.is_none(), "data is set once");
    if let Some(text) = data_json {
        // Already escaped: copied between its quotes.
        out.extend_from_slice(b",\"data\":\"");
        out.extend_from_slice(text);
        out.push(b'"');
    }
    for (name, field) in
        [(&b",\"data\":"[..], data), (b",\"new_token\":", new_token), (b",\"error\":", error), (b",\"code\":", code)]
    {
        if let Some(text) = field {
            out.extend_from_slice(name);
            crate::json::write_str(out, text.as_bytes());
        }
    }
    out.push(b'}');
    true
}

/// Writes `{`, the id and the status of a line; `false` (and nothing
/// written) if the id does not serialize.
fn write_head(id: Option<&Id>, status: Status, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.push(b'{');
    if let Some(id) = id {
        // Rare, and serde_json writes an id as it would anyway.
        out.extend_from_slice(b"\"id\":");
        if serde_json::to_writer(&mut *out, id).is_err() {
            out.truncate(start);
            return false;
        }
        out.push(b',');
    }
    out.extend_from_slice(match status {
        Status::Ok => br#""status":"ok""#,
        Status::Error => br#""status":"error""#,
    });
    true
}

/// An `ok` line whose `data` is written in place, for a server that has a
/// store append the value straight into its output (`SessionStore::
/// resolve_into`): [`begin`](Self::begin) writes the line up to the
/// opening quote of `data`, the value's JSON form is appended, and
/// [`finish`](Self::finish) closes the line. The line is the one
/// [`encode_response`] writes for the same response.
///
/// ```
/// use xems_protocol::DataAnswer;
///
/// let mut out = Vec::new();
/// let answer = DataAnswer::begin(None, &mut out).unwrap();
/// out.extend_from_slice(br#"{\"a\":1}"#);
/// answer.finish(Some("t"), &mut out);
/// assert_eq!(out, br#"{"status":"ok","data":"{\"a\":1}","new_token":"t"}"#.iter().chain(b"\n").copied().collect::<Vec<u8>>());
/// ```
#[derive(Debug)]
#[must_use = "an answer begun is finished or cancelled"]
pub struct DataAnswer {
    start: usize,
    data_at: usize,
}

impl DataAnswer {
    /// Writes the line up to the opening quote of `data`. `None` (nothing
    /// written) if the id does not serialize.
    pub fn begin(id: Option<&Id>, out: &mut Vec<u8>) -> Option<DataAnswer> {
        let start = out.len();
        if !write_head(id, Status::Ok, out) {
            return None;
        }
        out.extend_from_slice(b",\"data\":\"");
        Some(DataAnswer { start, data_at: out.len() })
    }

    /// Escapes what was appended since [`begin`](Self::begin) (raw bytes:
    /// a value its store kept raw) into its JSON form. `false`, and nothing
    /// changed, if those bytes are not UTF-8 text.
    pub fn escape_appended(&self, out: &mut Vec<u8>) -> bool {
        if std::str::from_utf8(&out[self.data_at..]).is_err() {
            return false;
        }
        let raw = zeroize::Zeroizing::new(out.split_off(self.data_at));
        // `write_str` writes the quotes too: the opening one is ours, the
        // closing one `finish`'s.
        out.pop();
        crate::json::write_str(out, &raw);
        out.pop();
        true
    }

    /// Closes `data`, adds `new_token` if there is one, and ends the line.
    pub fn finish(self, new_token: Option<&str>, out: &mut Vec<u8>) {
        out.push(b'"');
        if let Some(token) = new_token {
            out.extend_from_slice(b",\"new_token\":");
            crate::json::write_str(out, token.as_bytes());
        }
        out.extend_from_slice(b"}\n");
    }

    /// Takes the line back: what was written since [`begin`](Self::begin)
    /// is wiped and removed.
    pub fn cancel(self, out: &mut Vec<u8>) {
        out[self.start..].zeroize();
        out.truncate(self.start);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::json::tests::dense_text;

    fn serde_line(r: &Response) -> Vec<u8> {
        let mut out = serde_json::to_vec(r).unwrap();
        out.push(b'\n');
        out
    }

    proptest! {
        /// The direct writer writes what serde_json writes, for every
        /// string and every combination of the fields it handles.
        #[test]
        fn the_fast_path_writes_what_serde_writes(
            data in proptest::option::of(dense_text()),
            token in proptest::option::of(dense_text()),
            error in proptest::option::of(dense_text()),
            code in proptest::option::of(dense_text()),
            id in proptest::option::of(prop_oneof![
                any::<u64>().prop_map(Id::Unsigned),
                any::<i64>().prop_map(Id::Signed),
                dense_text().prop_map(Id::Str),
            ]),
            failed in any::<bool>(),
        ) {
            let r = Response {
                id,
                status: if failed { Status::Error } else { Status::Ok },
                data,
                new_token: token,
                error,
                code,
                ..Response::default()
            };
            let mut out = Vec::new();
            encode_response(&r, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(serde_line(&r)).unwrap());
        }
    }

    proptest! {
        /// `data` given in its JSON form writes the line `data` as text
        /// writes, on both paths (`exists` sends the line through serde).
        #[test]
        fn data_in_its_json_form_writes_the_same_line(
            data in dense_text(),
            token in proptest::option::of(dense_text()),
            structured in any::<bool>(),
        ) {
            let quoted = serde_json::to_string(&data).unwrap();
            let mut text = Response::ok().with_data(data);
            let mut json = Response::ok().with_data_json(quoted.as_bytes()[1..quoted.len() - 1].to_vec());
            for r in [&mut text, &mut json] {
                r.new_token.clone_from(&token);
                r.exists = structured.then_some(true);
            }
            prop_assert_eq!(line(&json), line(&text));
        }
    }

    proptest! {
        /// A line written in place is the line `encode_response` writes,
        /// with the data appended in its JSON form or raw then escaped.
        #[test]
        fn a_data_answer_writes_what_encode_response_writes(
            data in dense_text(),
            token in proptest::option::of(dense_text()),
            id in proptest::option::of(prop_oneof![any::<u64>().prop_map(Id::Unsigned), dense_text().prop_map(Id::Str)]),
            raw in any::<bool>(),
            before in "[a-z]{0,5}",
        ) {
            let mut out = before.as_bytes().to_vec();
            let answer = DataAnswer::begin(id.as_ref(), &mut out).unwrap();
            if raw {
                out.extend_from_slice(data.as_bytes());
                prop_assert!(answer.escape_appended(&mut out));
            } else {
                let quoted = serde_json::to_string(&data).unwrap();
                out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
            }
            answer.finish(token.as_deref(), &mut out);
            let mut expected = before.as_bytes().to_vec();
            let mut r = Response::ok().with_data(data).with_id(id);
            r.new_token = token;
            encode_response(&r, &mut expected);
            prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
        }
    }

    #[test]
    fn a_data_answer_refuses_bytes_that_are_not_text_and_cancels() {
        let mut out = b"kept".to_vec();
        let answer = DataAnswer::begin(None, &mut out).unwrap();
        out.extend_from_slice(&[0xff, 0x00]);
        assert!(!answer.escape_appended(&mut out));
        answer.cancel(&mut out);
        assert_eq!(out, b"kept");
    }

    #[test]
    fn structured_fields_take_the_serde_path() {
        let mut r = Response::ok().with_data("v");
        r.exists = Some(true);
        let mut out = Vec::new();
        assert!(!write_simple(&r, &mut out) && out.is_empty());
        encode_response(&r, &mut out);
        assert_eq!(out, serde_line(&r));
    }

    fn line(r: &Response) -> String {
        let mut out = Vec::new();
        encode_response(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn host_shapes() {
        assert_eq!(line(&Response::ok()), "{\"status\":\"ok\"}\n");
        assert_eq!(line(&Response::ok().with_data("pong")), "{\"status\":\"ok\",\"data\":\"pong\"}\n");
        assert_eq!(
            line(&Response::ok().with_data("{}").with_new_token("t")),
            "{\"status\":\"ok\",\"data\":\"{}\",\"new_token\":\"t\"}\n"
        );
        assert_eq!(
            line(&Response::not_found()),
            "{\"status\":\"error\",\"error\":\"not found\",\"code\":\"not_found\"}\n"
        );
        assert_eq!(line(&Response::ok().with_id(Some(Id::Str("a".into())))), "{\"id\":\"a\",\"status\":\"ok\"}\n");
    }

    #[test]
    fn round_trip() {
        let meta = SessionMeta::new(
            SessionId::from_u64(7),
            3,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
            Timestamp::from_millis(3),
            Duration::from_secs(60),
            false,
        );
        let mut r = Response::ok().with_meta(&meta).with_id(Some(Id::Signed(-1)));
        r.outcome = Some(Outcome::Grace);
        r.stats = Some(Box::default());
        let text = line(&r);
        let back: Response = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(SessionMeta::from(*back.meta.unwrap()), meta);
        assert!(!format!("{:?}", Response::ok().with_new_token("SECRET")).contains("SECRET"));
    }
}
