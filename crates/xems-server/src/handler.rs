//! Turning one decoded request into one response, over any `SessionStore`.

use base64::Engine as _;
use xems_core::json_text::raw_bytes;
use xems_core::{
    CreateOptions, DEFAULT_GRACE, Error, Refresh, ResolveOptions, Resolved, Rotation, SessionStore, Token,
    UpdateOutcome, Value, ValueForm,
};
use xems_protocol::{
    Command, DataAnswer, Encoding, Id, Outcome, Request, Response, RotateSpec, ValueText, WireMeta, encode_response,
};
use zeroize::Zeroize;

/// Answers one request from `store`, appending the response line to `out`.
///
/// This is the whole mapping from the wire to the [`SessionStore`] trait, so
/// any backend can be served. The connection-level actions (`auth`,
/// `debug_advance_clock`) are answered by the connection layer; given here,
/// they get an error. The response's `id` is the request's.
///
/// The request is borrowed and the response encoded here, where it is
/// built: each is a few hundred bytes, and each move of one into or out of
/// a nested future was a copy. The caller drops the request (wiping its key
/// and value) when the batch is done; the response is wiped once written.
pub async fn handle<S: SessionStore>(store: &S, req: &Request<'_>, out: &mut Vec<u8>) {
    let Request { id, verbose, encoding, command, .. } = req;
    let action = command.action();
    if let Err(e) = run(store, command, *verbose, *encoding, id, out).await {
        tracing::debug!(action, code = e.code(), "request failed");
        write(Response::error(e.code(), e.to_string()).with_id(id.clone()), out);
    }
}

/// Appends `response` as one line to `out`, then wipes the value and token
/// it carried.
pub(crate) fn write(mut response: Response, out: &mut Vec<u8>) {
    encode_response(&response, out);
    response.data.zeroize();
    response.data_json.zeroize();
    response.new_token.zeroize();
}

/// The options of a write of `value` (given in the form the request's
/// decoder kept it in: see `docs/DESIGN.md`, "Values in their wire form").
fn create_opts(
    value: Option<&ValueText<'_>>,
    ttl: Option<std::time::Duration>,
    abs: Option<std::time::Duration>,
    subject: Option<&str>,
) -> CreateOptions {
    let mut o = CreateOptions::new();
    o.ttl = ttl;
    o.absolute_ttl = abs;
    o.subject = subject.map(str::to_owned);
    o.value_form = value.map_or(ValueForm::Raw, ValueText::form);
    o
}

/// Finishes (or takes back) an answer whose value `resolve_into` appended
/// to `out`; a store error is returned for `handle` to write.
fn answered_in_place(
    found: Result<Option<Resolved>, Error>,
    answer: DataAnswer,
    id: &Option<Id>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    match found {
        Err(e) => {
            answer.cancel(out);
            Err(e)
        }
        Ok(None) => {
            answer.cancel(out);
            write(Response::not_found().with_id(id.clone()), out);
            Ok(())
        }
        Ok(Some(r)) if r.value.form() == ValueForm::Raw && !answer.escape_appended(out) => {
            answer.cancel(out);
            write(not_utf8().with_id(id.clone()), out);
            Ok(())
        }
        Ok(Some(r)) => {
            answer.finish(r.token.as_ref().map(Token::expose), out);
            Ok(())
        }
    }
}

/// The answer to a UTF-8 read of a value that is not UTF-8.
fn not_utf8() -> Response {
    Response::error("not_utf8", "the stored value is not UTF-8 text; ask again with \"encoding\":\"base64\"")
}

/// How every read asks for its value: in its JSON form when the store kept
/// it so, since that is how it goes out.
fn read_opts() -> ResolveOptions {
    ResolveOptions::new().with_value_form(ValueForm::Json)
}

/// The response carrying a value in the requested encoding; an error when
/// the value is not UTF-8 and UTF-8 was asked for. The value moves into the
/// response without a copy (the connection wipes the response's text once
/// it is encoded); what is not returned is wiped on drop.
fn with_value(value: Value, encoding: Encoding) -> Result<Response, Error> {
    Ok(match (encoding, value.form()) {
        (Encoding::Utf8, ValueForm::Json) => Response::ok().with_data_json(value.into_vec()),
        (Encoding::Utf8, ValueForm::Raw) => match value.into_string() {
            Ok(text) => Response::ok().with_data(text),
            Err(_) => return Ok(not_utf8()),
        },
        (Encoding::Base64, _) => {
            Response::ok().with_data(base64::engine::general_purpose::STANDARD.encode(value.into_raw()?.as_bytes()))
        }
    })
}

/// The response to a successful read: `data`, and `new_token` when the
/// client must switch tokens (after a rotation, or on a grace hit).
fn resolved(r: Resolved, encoding: Encoding, full: bool) -> Result<Response, Error> {
    let mut resp = with_value(r.value, encoding)?;
    if !resp.is_ok() {
        return Ok(resp);
    }
    if let Some(t) = &r.token {
        resp = resp.with_new_token(t.expose());
    }
    if full {
        resp.outcome = Some(Outcome::from(r.outcome));
        resp.meta = Some(Box::new(WireMeta::from(&r.meta)));
    }
    Ok(resp)
}

/// Runs a command and writes its response with `id` to `out`; a store
/// error is returned unwritten.
async fn run<S: SessionStore>(
    store: &S,
    command: &Command<'_>,
    verbose: bool,
    encoding: Encoding,
    id: &Option<Id>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut response = match command {
        Command::Ping => Response::ok().with_data("pong"),
        Command::Set { sandbox, key, value, ttl, absolute_ttl, subject } => {
            let opts = create_opts(Some(value), *ttl, *absolute_ttl, subject.as_deref());
            let meta = store.set(sandbox, key.expose(), value.as_bytes(), opts).await?;
            tracing::trace!(sandbox = &**sandbox, key_len = key.expose().len(), value_len = value.len(), "set");
            if verbose { Response::ok().with_meta(&meta) } else { Response::ok() }
        }
        Command::Get { sandbox, key, rotate, grace, ttl } => {
            // `get` is a resolve with the default options, or rotating.
            let mut opts = read_opts();
            if *rotate {
                opts = opts.with_rotation(Rotation::Always).with_grace(grace.unwrap_or(DEFAULT_GRACE));
                if let Some(ttl) = *ttl {
                    opts = opts.with_refresh(Refresh::To(ttl));
                }
            }
            // The host's shape (no extension fields): the value is opened
            // straight into the answer.
            if !verbose
                && encoding == Encoding::Utf8
                && let Some(answer) = DataAnswer::begin(id.as_ref(), out)
            {
                let found = store.resolve_into(sandbox, key.expose(), opts, out).await;
                return answered_in_place(found, answer, id, out);
            }
            match store.resolve(sandbox, key.expose(), opts).await? {
                Some(r) => resolved(r, encoding, verbose)?,
                None => Response::not_found(),
            }
        }
        Command::Del { sandbox, key } => {
            let deleted = store.del(sandbox, key.expose()).await?;
            let mut resp = Response::ok();
            if verbose {
                resp.deleted = Some(deleted);
            }
            resp
        }
        Command::CreateSession { sandbox, value, ttl, absolute_ttl, subject } => {
            let created = store
                .create(sandbox, value.as_bytes(), create_opts(Some(value), *ttl, *absolute_ttl, subject.as_deref()))
                .await?;
            Response::ok().with_new_token(created.token.expose()).with_meta(&created.meta)
        }
        Command::Resolve { sandbox, key, rotate, grace, ttl, refresh } => {
            let rotation = match *rotate {
                RotateSpec::Never => Rotation::Never,
                RotateSpec::Always => Rotation::Always,
                RotateSpec::OlderThan(d) => Rotation::OlderThan(d),
            };
            let refresh = match (*ttl, *refresh) {
                (Some(t), _) => Refresh::To(t),
                (None, true) => Refresh::Idle,
                (None, false) => Refresh::No,
            };
            let opts =
                read_opts().with_rotation(rotation).with_grace(grace.unwrap_or(DEFAULT_GRACE)).with_refresh(refresh);
            match store.resolve(sandbox, key.expose(), opts).await? {
                Some(r) => resolved(r, encoding, true)?,
                None => Response::not_found(),
            }
        }
        Command::Migrate { sandbox, key, to, value, ttl, absolute_ttl, subject } => {
            let opts = create_opts(value.as_ref(), *ttl, *absolute_ttl, subject.as_deref());
            match store.migrate(sandbox, key.expose(), to, value.as_ref().map(ValueText::as_bytes), opts).await? {
                Some(c) => Response::ok().with_new_token(c.token.expose()).with_meta(&c.meta),
                None => Response::not_found(),
            }
        }
        Command::Touch { sandbox, key, ttl } => match store.touch(sandbox, key.expose(), *ttl).await? {
            Some(meta) => Response::ok().with_meta(&meta),
            None => Response::not_found(),
        },
        Command::Exists { sandbox, key } => {
            let mut resp = Response::ok();
            resp.exists = Some(store.exists(sandbox, key.expose()).await?);
            resp
        }
        Command::UpdateIf { sandbox, key, version, value } => {
            // A compare-and-set takes raw bytes (one form for every backend;
            // it is not on the hot path).
            let value = raw_bytes(value.as_bytes(), value.form())?;
            match store.update_if(sandbox, key.expose(), *version, &value).await? {
                UpdateOutcome::Updated(meta) => Response::ok().with_meta(&meta),
                UpdateOutcome::Conflict { current_version } => {
                    let mut resp = Response::error(
                        "conflict",
                        format!("version conflict: expected {version}, stored {current_version}"),
                    );
                    resp.current_version = Some(current_version);
                    resp
                }
                UpdateOutcome::NotFound => Response::not_found(),
            }
        }
        Command::ListSubject { sandbox, subject } => {
            let list = store.list_subject(sandbox, subject).await?;
            let mut resp = Response::ok();
            resp.sessions = Some(list.iter().map(WireMeta::from).collect());
            resp
        }
        Command::RevokeSubject { sandbox, subject, except } => {
            let n = store.revoke_subject(sandbox, subject, except.as_ref().map(|t| t.expose())).await?;
            let mut resp = Response::ok();
            resp.revoked = Some(n as u64);
            resp
        }
        Command::RevokeSession { sandbox, subject, session_id } => {
            let done = store.revoke_session(sandbox, subject, session_id).await?;
            let mut resp = Response::ok();
            resp.revoked = Some(u64::from(done));
            resp
        }
        Command::Stats => {
            let mut resp = Response::ok();
            resp.stats = Some(Box::new(store.stats().await?));
            resp
        }
        Command::Auth { .. } => Response::error("bad_request", "auth is answered by the connection, not the store"),
        c @ (Command::DebugAdvanceClock { .. } | Command::DebugSweep) => Response::error(
            "unknown_action",
            format!("{} is test-only: start the server with --unsafe-test-clock", c.action()),
        ),
        // `Command` is non-exhaustive for other crates; every action of this
        // protocol version is handled above.
        #[allow(unreachable_patterns)]
        other => Response::error("unknown_action", format!("action {:?} is not supported", other.action())),
    };
    response.id.clone_from(id);
    write(response, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use xems_engine::Engine;
    use xems_protocol::{Status, decode_request};

    use super::*;

    /// The response line to `line`, read back.
    async fn ask(store: &Engine, line: &str) -> Response {
        let mut out = Vec::new();
        handle(store, &decode_request(line.as_bytes()).expect("valid request"), &mut out).await;
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("a response line")
    }

    #[tokio::test]
    async fn verbose_adds_the_extension_fields() {
        xems_testkit::logs::capture();
        let e = Engine::new();
        let r = ask(&e, r#"{"action":"set","sandbox":"s","key":"k","value":"v","verbose":true}"#).await;
        assert_eq!(r.meta.as_ref().map(|m| m.version), Some(1));
        let r = ask(&e, r#"{"action":"get","sandbox":"s","key":"k","rotate":true,"verbose":true}"#).await;
        assert_eq!(r.outcome, Some(Outcome::Rotated));
        assert!(r.new_token.is_some() && r.meta.is_some());
        let r = ask(&e, r#"{"action":"get","sandbox":"s","key":"k"}"#).await;
        assert_eq!((r.outcome, r.meta.is_some()), (None, false), "host shape without verbose");
        assert!(r.new_token.is_some(), "a grace hit names the current token");
        let r = ask(&e, r#"{"action":"del","sandbox":"s","key":"nothing","verbose":true}"#).await;
        assert_eq!(r.deleted, Some(false));
    }

    /// The bytes of the answer to `line`.
    async fn answer_line(store: &Engine, line: &str) -> String {
        let mut out = Vec::new();
        handle(store, &decode_request(line.as_bytes()).expect("valid request"), &mut out).await;
        String::from_utf8(out).expect("UTF-8 answers")
    }

    /// A value comes back spelled as serde_json spells it, whether it was
    /// sent so (kept in that form and copied) or with other escapes
    /// (unescaped, then escaped again); `verbose` answers (the serde path)
    /// agree.
    #[tokio::test]
    async fn values_come_back_as_serde_json_writes_them() {
        xems_testkit::logs::capture();
        let e = Engine::new();
        let canonical = r#""{\"a\":\"b\\c\n\t\u0001\u001f é\"}""#;
        for (sent, back) in [
            (canonical, canonical),
            (r#""a\/b\u0041\u00E9\u001F\ud83d\ude00""#, r#""a/bAé\u001f😀""#),
            (r#""a\/b\"""#, r#""a/b\"""#),
            (r#""plain""#, r#""plain""#),
        ] {
            answer_line(&e, &format!(r#"{{"action":"set","sandbox":"s","key":"k","value":{sent}}}"#)).await;
            let got = answer_line(&e, r#"{"action":"get","sandbox":"s","key":"k"}"#).await;
            assert_eq!(got, format!("{{\"status\":\"ok\",\"data\":{back}}}\n"), "sent {sent}");
            let verbose = ask(&e, r#"{"action":"get","sandbox":"s","key":"k","verbose":true}"#).await;
            assert_eq!(verbose.data, Some(serde_json::from_str::<String>(back).unwrap()), "sent {sent}");
        }
    }

    #[tokio::test]
    async fn binary_values_need_base64_to_be_read() {
        xems_testkit::logs::capture();
        let e = Engine::new();
        e.set("s", "bin", &[0xff, 0x00], CreateOptions::new()).await.unwrap();
        let r = ask(&e, r#"{"action":"get","sandbox":"s","key":"bin"}"#).await;
        assert_eq!((r.status, r.code.as_deref()), (Status::Error, Some("not_utf8")));
        let r = ask(&e, r#"{"action":"get","sandbox":"s","key":"bin","encoding":"base64"}"#).await;
        assert_eq!(r.data.as_deref(), Some("/wA="));
    }

    #[tokio::test]
    async fn store_errors_keep_their_codes() {
        xems_testkit::logs::capture();
        let e = Engine::new();
        let r = ask(&e, r#"{"action":"set","sandbox":"bad name","key":"k","value":"v"}"#).await;
        assert_eq!(r.code.as_deref(), Some("invalid_sandbox"));
        assert!(r.error.unwrap().contains("bad name"));
        let r = ask(&e, r#"{"action":"auth","token":"x"}"#).await;
        assert_eq!(r.status, Status::Error, "auth belongs to the connection layer");
    }
}
