//! Requests: the typed form of one input line, and the decoder.
//!
//! Decoding runs in two steps: the line is read into a flat, borrowed
//! struct of optional fields, then `build` checks that the action has the
//! fields it needs and parses durations. The first step has a fast path
//! (`scan`) for the lines clients actually send; whatever it does not take
//! goes to serde, which reads it the same way or names the field and column
//! of the error. Unknown fields are ignored and `null` counts as
//! absent, so older servers accept newer clients' lines.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use xems_core::{MAX_GRACE, SessionId, parse_duration};

use crate::error::{DecodeError, RequestError};
use crate::text::{Secret, ValueText};

mod scan;

/// The optional request id, echoed on the response: a string or an integer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    /// A string.
    Str(String),
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Unsigned(n) => s.serialize_u64(*n),
            Id::Signed(n) => s.serialize_i64(*n),
            Id::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(if v >= 0 { Id::Unsigned(v as u64) } else { Id::Signed(v) })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// How `value` in the request and `data` in the response are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 text (the default, and what the XyPriss host uses).
    #[default]
    Utf8,
    /// Standard base64 with padding: any bytes.
    Base64,
}

/// The `rotate` field of `resolve`: a boolean, or an interval such as `"5m"`
/// (rotate only when the current token is older than that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateSpec {
    /// `false`: never rotate.
    Never,
    /// `true`: rotate on every resolve.
    Always,
    /// A duration: rotate when the token is older than this.
    OlderThan(Duration),
}

/// One decoded request, borrowing its text from the line it was decoded
/// from (see [`Secret`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The id to echo, if the client sent one.
    pub id: Option<Id>,
    /// `"verbose": true`: host actions answer with the extension fields too
    /// (`meta`, `outcome`, `deleted`).
    pub verbose: bool,
    /// How `value` was encoded and how `data` must be.
    pub encoding: Encoding,
    /// What to do.
    pub command: Command<'a>,
}

/// What a request asks for. Keys, tokens and values are held in redacted-
/// `Debug` types that borrow from the line ([`Secret`], [`ValueText`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `ping`: answers `"pong"`.
    Ping,
    /// `set`: writes a value under a caller key.
    Set {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Caller key or token.
        key: Secret<'a>,
        /// The value.
        value: ValueText<'a>,
        /// Idle TTL (store default 15 minutes when absent).
        ttl: Option<Duration>,
        /// Absolute lifetime.
        absolute_ttl: Option<Duration>,
        /// Subject (user id).
        subject: Option<Cow<'a, str>>,
    },
    /// `get`: reads a value; with `rotate`, rotates the token.
    Get {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Caller key or token.
        key: Secret<'a>,
        /// Rotate atomically and answer the successor in `new_token`.
        rotate: bool,
        /// Grace period of the rotated-away token (default 1000 ms).
        grace: Option<Duration>,
        /// With `rotate`: the new idle TTL.
        ttl: Option<Duration>,
    },
    /// `del`: deletes a record and every token of its session.
    Del {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Caller key or token.
        key: Secret<'a>,
    },
    /// `create_session`: creates a session and mints its token.
    CreateSession {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// The value.
        value: ValueText<'a>,
        /// Idle TTL.
        ttl: Option<Duration>,
        /// Absolute lifetime.
        absolute_ttl: Option<Duration>,
        /// Subject (user id).
        subject: Option<Cow<'a, str>>,
    },
    /// `resolve`: resolves a token, with the full set of options.
    Resolve {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// The token.
        key: Secret<'a>,
        /// Rotation policy.
        rotate: RotateSpec,
        /// Grace period.
        grace: Option<Duration>,
        /// New idle TTL to slide to.
        ttl: Option<Duration>,
        /// Slide the idle expiry by the record's own TTL.
        refresh: bool,
    },
    /// `migrate`: moves a session into another sandbox under a new token.
    Migrate {
        /// Source namespace.
        sandbox: Cow<'a, str>,
        /// The token.
        key: Secret<'a>,
        /// Destination namespace.
        to: Cow<'a, str>,
        /// Replacement value.
        value: Option<ValueText<'a>>,
        /// Idle TTL in the destination.
        ttl: Option<Duration>,
        /// Absolute lifetime in the destination.
        absolute_ttl: Option<Duration>,
        /// Subject (kept from the source when absent).
        subject: Option<Cow<'a, str>>,
    },
    /// `touch`: slides the idle expiry.
    Touch {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Key or token.
        key: Secret<'a>,
        /// New idle TTL.
        ttl: Option<Duration>,
    },
    /// `exists`: whether a key or token resolves.
    Exists {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Key or token.
        key: Secret<'a>,
    },
    /// `update_if`: compare-and-set on the version.
    UpdateIf {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Key or token.
        key: Secret<'a>,
        /// The version the caller read.
        version: u64,
        /// The new value.
        value: ValueText<'a>,
    },
    /// `list_subject`: the live sessions of a subject.
    ListSubject {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Subject.
        subject: Cow<'a, str>,
    },
    /// `revoke_subject`: revokes every session of a subject.
    RevokeSubject {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Subject.
        subject: Cow<'a, str>,
        /// A token whose session is spared.
        except: Option<Secret<'a>>,
    },
    /// `revoke_session`: revokes one session of a subject by public id.
    RevokeSession {
        /// Namespace.
        sandbox: Cow<'a, str>,
        /// Subject.
        subject: Cow<'a, str>,
        /// The session's public id.
        session_id: SessionId,
    },
    /// `stats`: figures and counters.
    Stats,
    /// `auth`: the network handshake.
    Auth {
        /// The shared token.
        token: Secret<'a>,
    },
    /// `debug_advance_clock`: test-only, accepted only by a server started
    /// with `--unsafe-test-clock`.
    DebugAdvanceClock {
        /// How far to move the clock.
        by: Duration,
    },
    /// `debug_sweep`: test-only, reclaims expired records now; accepted only
    /// by a server started with `--unsafe-test-clock`.
    DebugSweep,
}

impl Command<'_> {
    /// The action name of this command.
    pub fn action(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Set { .. } => "set",
            Command::Get { .. } => "get",
            Command::Del { .. } => "del",
            Command::CreateSession { .. } => "create_session",
            Command::Resolve { .. } => "resolve",
            Command::Migrate { .. } => "migrate",
            Command::Touch { .. } => "touch",
            Command::Exists { .. } => "exists",
            Command::UpdateIf { .. } => "update_if",
            Command::ListSubject { .. } => "list_subject",
            Command::RevokeSubject { .. } => "revoke_subject",
            Command::RevokeSession { .. } => "revoke_session",
            Command::Stats => "stats",
            Command::Auth { .. } => "auth",
            Command::DebugAdvanceClock { .. } => "debug_advance_clock",
            Command::DebugSweep => "debug_sweep",
        }
    }

    /// The `(sandbox, key)` this command reads or writes, for the commands
    /// that address one record (a server hints its store with the
    /// addresses of a batch, see `SessionStore::prefetch`).
    pub fn address(&self) -> Option<(&str, &str)> {
        match self {
            Command::Set { sandbox, key, .. }
            | Command::Get { sandbox, key, .. }
            | Command::Del { sandbox, key }
            | Command::Resolve { sandbox, key, .. }
            | Command::Migrate { sandbox, key, .. }
            | Command::Touch { sandbox, key, .. }
            | Command::Exists { sandbox, key }
            | Command::UpdateIf { sandbox, key, .. } => Some((sandbox.as_ref(), key.expose())),
            _ => None,
        }
    }
}

/// A `value` as it appears on the line, read in the same pass as the rest
/// of the line: a string's text (borrowed when it has no escapes), or a mark
/// that it is an object or array (whose compact text is the value; read
/// again from the line, the rare case) or some other JSON type (an error).
#[cfg_attr(test, derive(Debug))]
enum RawField<'a> {
    /// A string's content.
    Text(Cow<'a, [u8]>),
    /// A string's escaped text, written exactly as `serde_json` writes it:
    /// the value is kept in this JSON form (the store copies it into a
    /// `get`'s answer instead of escaping it again). Valid UTF-8: a slice
    /// of the line between ASCII quotes.
    Json(&'a [u8]),
    Structured,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a JSON object or array")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawField::Text(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawField::Text(Cow::Owned(v.as_bytes().to_vec())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawField::Text(Cow::Owned(v.into_bytes())))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(RawField::Structured)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(RawField::Structured)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawField::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawField::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawField::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawField::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `value` of a line whose value is an object or array, as its text.
#[derive(Deserialize)]
struct StructuredValue<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
}

/// `rotate` as sent: a boolean or a string.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum RawRotate<'a> {
    Bool(bool),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRotate<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRotate<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a duration string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawRotate::Bool(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawRotate::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawRotate::Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-negative number of milliseconds. JavaScript hosts send numbers, so
/// a finite fractional value is accepted too and rounded down.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(test, derive(PartialEq))]
struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v).map(Millis).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                if (0.0..1.8e19).contains(&v) {
                    // In range, so the cast cannot saturate.
                    Ok(Millis(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The flat form of a line: every field any action uses, all optional.
/// It holds keys, tokens and values in plaintext: `Debug` (for the tests'
/// comparisons) exists in test builds only, so no log line can print one.
#[derive(Default, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Raw<'a> {
    id: Option<Id>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sandbox: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<RawField<'a>>,
    #[serde(borrow)]
    encoding: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ttl: Option<Cow<'a, str>>,
    #[serde(borrow)]
    absolute_ttl: Option<Cow<'a, str>>,
    #[serde(borrow)]
    rotate: Option<RawRotate<'a>>,
    grace_period: Option<Millis>,
    refresh: Option<bool>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow)]
    except: Option<Cow<'a, str>>,
    version: Option<u64>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    verbose: Option<bool>,
    by_ms: Option<u64>,
}

/// Only the id, to echo it on the error response of a line that parses as
/// JSON but not as a request.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<Id>,
}

/// Decodes one line (without its newline) into a request.
///
/// Never panics, whatever the bytes: invalid UTF-8, invalid JSON, wrong
/// types, huge numbers and deep nesting all come back as a [`RequestError`]
/// whose message says what is wrong and whose `id` is the request's when it
/// could be read.
///
/// # Errors
///
/// See [`DecodeError`].
///
/// ```
/// use xems_protocol::{Command, decode_request};
///
/// let req = decode_request(br#"{"action":"get","sandbox":"s","key":"k","rotate":true}"#).unwrap();
/// assert!(matches!(req.command, Command::Get { rotate: true, .. }));
/// let err = decode_request(br#"{"action":"get","id":"a1","sandbox":"s","key":7}"#).unwrap_err();
/// assert_eq!(err.kind.code(), "bad_request");
/// assert_eq!(err.id, Some(xems_protocol::Id::Str("a1".into())));
/// ```
pub fn decode_request(line: &[u8]) -> Result<Request<'_>, RequestError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty.into());
    }
    // Checked up front: serde_json does not validate strings it skips.
    let line = std::str::from_utf8(line)
        .map_err(|e| RequestError::from(DecodeError::NotUtf8 { valid_up_to: e.valid_up_to() }))?;
    // Read in place: `Raw` is a few hundred bytes, and each move of it was
    // a `memcpy` on the hot path.
    let mut raw = Raw::default();
    if !scan::scan(line, &mut raw) {
        raw = match serde_json::from_str(line) {
            Ok(raw) => raw,
            Err(e) => {
                let id = serde_json::from_str::<IdOnly>(line).ok().and_then(|r| r.id);
                return Err(RequestError { id, kind: DecodeError::Json(e) });
            }
        };
    }
    let id = raw.id.take();
    let verbose = raw.verbose.unwrap_or(false);
    match build(&mut raw, line) {
        Ok((encoding, command)) => Ok(Request { id, verbose, encoding, command }),
        Err(kind) => Err(RequestError { id, kind }),
    }
}

fn build<'a>(raw: &mut Raw<'a>, line: &'a str) -> Result<(Encoding, Command<'a>), DecodeError> {
    let action = raw.action.as_deref().ok_or(DecodeError::MissingAction)?;
    let encoding = match raw.encoding.as_deref() {
        None | Some("utf8") | Some("utf-8") => Encoding::Utf8,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(DecodeError::InvalidField {
                field: "encoding",
                reason: format!("expected \"utf8\" or \"base64\", got {:?}", truncate(other)),
            });
        }
    };
    let action = static_action(action)?;
    let mut f = Fields {
        line,
        action,
        encoding,
        value: raw.value.take(),
        sandbox: raw.sandbox.take(),
        key: raw.key.take(),
        subject: raw.subject.take(),
        to: raw.to.take(),
    };
    let raw = &*raw;
    let command = match f.action {
        "ping" => Command::Ping,
        "set" => Command::Set {
            sandbox: f.sandbox()?,
            key: f.key()?,
            value: f.value()?,
            ttl: f.duration("ttl", raw.ttl.as_deref())?,
            absolute_ttl: f.duration("absolute_ttl", raw.absolute_ttl.as_deref())?,
            subject: f.subject.take(),
        },
        "get" => {
            let rotate = match &raw.rotate {
                None | Some(RawRotate::Bool(false)) => false,
                Some(RawRotate::Bool(true)) => true,
                Some(RawRotate::Text(_)) => {
                    return Err(DecodeError::InvalidField {
                        field: "rotate",
                        reason: "with get, rotate must be a boolean (use resolve for interval rotation)".into(),
                    });
                }
            };
            Command::Get {
                sandbox: f.sandbox()?,
                key: f.key()?,
                rotate,
                grace: f.grace(raw.grace_period)?,
                ttl: f.duration("ttl", raw.ttl.as_deref())?,
            }
        }
        "del" => Command::Del { sandbox: f.sandbox()?, key: f.key()? },
        "create_session" => Command::CreateSession {
            sandbox: f.sandbox()?,
            value: f.value()?,
            ttl: f.duration("ttl", raw.ttl.as_deref())?,
            absolute_ttl: f.duration("absolute_ttl", raw.absolute_ttl.as_deref())?,
            subject: f.subject.take(),
        },
        "resolve" => {
            let rotate = match &raw.rotate {
                None | Some(RawRotate::Bool(false)) => RotateSpec::Never,
                Some(RawRotate::Bool(true)) => RotateSpec::Always,
                Some(RawRotate::Text(t)) => RotateSpec::OlderThan(f.duration("rotate", Some(t))?.unwrap_or_default()),
            };
            Command::Resolve {
                sandbox: f.sandbox()?,
                key: f.key()?,
                rotate,
                grace: f.grace(raw.grace_period)?,
                ttl: f.duration("ttl", raw.ttl.as_deref())?,
                refresh: raw.refresh.unwrap_or(false),
            }
        }
        "migrate" => Command::Migrate {
            sandbox: f.sandbox()?,
            key: f.key()?,
            to: {
                let to = f.to.take();
                f.required("to", to)?
            },
            value: f.optional_value()?,
            ttl: f.duration("ttl", raw.ttl.as_deref())?,
            absolute_ttl: f.duration("absolute_ttl", raw.absolute_ttl.as_deref())?,
            subject: f.subject.take(),
        },
        "touch" => Command::Touch { sandbox: f.sandbox()?, key: f.key()?, ttl: f.duration("ttl", raw.ttl.as_deref())? },
        "exists" => Command::Exists { sandbox: f.sandbox()?, key: f.key()? },
        "update_if" => Command::UpdateIf {
            sandbox: f.sandbox()?,
            key: f.key()?,
            version: raw.version.ok_or(DecodeError::MissingField { action: f.action, field: "version" })?,
            value: f.value()?,
        },
        "list_subject" => Command::ListSubject { sandbox: f.sandbox()?, subject: f.subject()? },
        "revoke_subject" => Command::RevokeSubject {
            sandbox: f.sandbox()?,
            subject: f.subject()?,
            except: raw.except.clone().map(Secret::new),
        },
        "revoke_session" => Command::RevokeSession {
            sandbox: f.sandbox()?,
            subject: f.subject()?,
            session_id: SessionId::new(f.required("session_id", raw.session_id.as_deref())?).ok_or_else(|| {
                DecodeError::InvalidField {
                    field: "session_id",
                    reason: format!("expected 1 to {} printable ASCII characters", SessionId::MAX_LEN),
                }
            })?,
        },
        "stats" => Command::Stats,
        "auth" => Command::Auth { token: Secret::new(f.required("token", raw.token.clone())?) },
        "debug_advance_clock" => Command::DebugAdvanceClock {
            by: Duration::from_millis(raw.by_ms.ok_or(DecodeError::MissingField { action: f.action, field: "by_ms" })?),
        },
        "debug_sweep" => Command::DebugSweep,
        _ => unreachable_action(f.action)?,
    };
    Ok((encoding, command))
}

fn unreachable_action(action: &str) -> Result<Command<'static>, DecodeError> {
    // `static_action` only returns names from `ACTIONS`, all matched above.
    Err(DecodeError::UnknownAction(action.to_owned()))
}

fn static_action(action: &str) -> Result<&'static str, DecodeError> {
    crate::ACTIONS
        .iter()
        .copied()
        .find(|a| *a == action)
        .ok_or_else(|| DecodeError::UnknownAction(truncate(action).into_owned()))
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.chars().count() <= 64 { Cow::Borrowed(s) } else { Cow::Owned(s.chars().take(64).collect::<String>() + "...") }
}

/// The fields a command moves out of `Raw` (borrowed text moves; nothing
/// is copied), and what the other fields are read with.
struct Fields<'a> {
    /// The whole line, to read an object or array value again.
    line: &'a str,
    action: &'static str,
    encoding: Encoding,
    value: Option<RawField<'a>>,
    sandbox: Option<Cow<'a, str>>,
    key: Option<Cow<'a, str>>,
    subject: Option<Cow<'a, str>>,
    to: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    fn required<T>(&self, field: &'static str, v: Option<T>) -> Result<T, DecodeError> {
        v.ok_or(DecodeError::MissingField { action: self.action, field })
    }

    fn sandbox(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        let v = self.sandbox.take();
        self.required("sandbox", v)
    }

    fn key(&mut self) -> Result<Secret<'a>, DecodeError> {
        let v = self.key.take();
        self.required("key", v).map(Secret::new)
    }

    fn subject(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        let v = self.subject.take();
        self.required("subject", v)
    }

    fn duration(&self, field: &'static str, v: Option<&str>) -> Result<Option<Duration>, DecodeError> {
        v.map(|s| parse_duration(s).map_err(|source| DecodeError::Duration { field, source })).transpose()
    }

    fn grace(&self, grace_period: Option<Millis>) -> Result<Option<Duration>, DecodeError> {
        match grace_period.map(|m| m.0) {
            None => Ok(None),
            Some(ms) if Duration::from_millis(ms) > MAX_GRACE => Err(DecodeError::InvalidField {
                field: "grace_period",
                reason: format!("{ms} ms is above the maximum of {} ms", MAX_GRACE.as_millis()),
            }),
            Some(ms) => Ok(Some(Duration::from_millis(ms))),
        }
    }

    fn value(&mut self) -> Result<ValueText<'a>, DecodeError> {
        self.optional_value()?.ok_or(DecodeError::MissingField { action: self.action, field: "value" })
    }

    fn optional_value(&mut self) -> Result<Option<ValueText<'a>>, DecodeError> {
        let Some(field) = self.value.take() else { return Ok(None) };
        let bad = |reason: &str| DecodeError::InvalidField { field: "value", reason: reason.to_owned() };
        let bytes = match (field, self.encoding) {
            (RawField::Json(text), Encoding::Utf8) => return Ok(Some(ValueText::json(text))),
            (RawField::Text(s), Encoding::Utf8) => return Ok(Some(ValueText::raw(s))),
            // Base64 has no characters to escape: text in the JSON form
            // with an escape is not base64, and is refused as it would be
            // unescaped.
            (RawField::Json(s), Encoding::Base64) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad("not valid base64 (standard alphabet, padded)"))?,
            (RawField::Text(s), Encoding::Base64) => base64::engine::general_purpose::STANDARD
                .decode(&s)
                .map_err(|_| bad("not valid base64 (standard alphabet, padded)"))?,
            (RawField::Structured, Encoding::Utf8) => {
                let v: StructuredValue<'_> = serde_json::from_str(self.line).map_err(DecodeError::Json)?;
                compact_json(v.value.get())
            }
            (RawField::Structured, Encoding::Base64) => {
                return Err(bad("with encoding base64, value must be a string"));
            }
            (RawField::Other, _) => {
                return Err(bad("expected a string, or a JSON object or array (stored as its compact text)"));
            }
        };
        Ok(Some(ValueText::raw(Cow::Owned(bytes))))
    }
}

/// Equal when they stand for the same value, whatever its form: the tests
/// hold the scanner (which keeps the JSON form) to `serde_json` (which
/// unescapes).
#[cfg(test)]
impl PartialEq for RawField<'_> {
    fn eq(&self, other: &Self) -> bool {
        let content = |f: &Self| match f {
            RawField::Text(c) => Some(c.to_vec()),
            RawField::Json(t) => xems_core::json_text::unescape(t).map(|v| v.to_vec()),
            _ => None,
        };
        match (self, other) {
            (RawField::Structured, RawField::Structured) | (RawField::Other, RawField::Other) => true,
            _ => content(self).is_some() && content(self) == content(other),
        }
    }
}

/// The text of valid JSON without insignificant whitespace.
fn compact_json(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use xems_core::ValueForm;

    use super::*;

    fn code(line: &[u8]) -> &'static str {
        decode_request(line).unwrap_err().kind.code()
    }

    #[test]
    fn host_lines_decode() {
        let req = decode_request(br#"{"action":"set","sandbox":"otp-pending","key":"9f0c","value":"{\"email\":\"u@e.x\",\"mfa_verified\":false}","ttl":"15m"}"#).unwrap();
        let Command::Set { sandbox, key, value, ttl, .. } = req.command else { panic!("not a set") };
        assert_eq!(sandbox, "otp-pending");
        assert_eq!(key.expose(), "9f0c");
        assert_eq!(value.form(), ValueForm::Json, "kept as the line wrote it");
        assert_eq!(value.as_bytes(), br#"{\"email\":\"u@e.x\",\"mfa_verified\":false}"#);
        assert_eq!(value.to_value().into_raw().unwrap().as_bytes(), br#"{"email":"u@e.x","mfa_verified":false}"#);
        assert_eq!(ttl, Some(Duration::from_secs(900)));

        let req = decode_request(
            br#"{"action":"get","sandbox":"auth-session","key":"9f0c","rotate":true,"ttl":"15m","grace_period":1000}"#,
        )
        .unwrap();
        let Command::Get { rotate, grace, ttl, .. } = req.command else { panic!("not a get") };
        assert!(rotate);
        assert_eq!(grace, Some(Duration::from_millis(1000)));
        assert_eq!(ttl, Some(Duration::from_secs(900)));
        assert!(matches!(decode_request(br#"{"action":"ping"}"#).unwrap().command, Command::Ping));
        assert!(matches!(
            decode_request(br#"{"action":"del","sandbox":"s","key":"k"}"#).unwrap().command,
            Command::Del { .. }
        ));
    }

    #[test]
    fn object_values_are_stored_compact() {
        let req =
            decode_request(br#"{"action":"set","sandbox":"s","key":"k","value":{ "a" : [1, 2], "s":"x y\" z" }}"#)
                .unwrap();
        let Command::Set { value, .. } = req.command else { panic!() };
        assert_eq!(value.as_bytes(), br#"{"a":[1,2],"s":"x y\" z"}"#);
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k","value":12}"#), "bad_request");
        let req = decode_request(br#"{"value":[ 1, {"a" : "b"} ],"action":"set","sandbox":"s","key":"k"}"#).unwrap();
        let Command::Set { value, .. } = req.command else { panic!() };
        assert_eq!(value.as_bytes(), br#"[1,{"a":"b"}]"#);
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k","value":true}"#), "bad_request");
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k","value":{},"encoding":"base64"}"#), "bad_request");
    }

    #[test]
    fn base64_values() {
        let req =
            decode_request(br#"{"action":"set","sandbox":"s","key":"k","value":"AP8=","encoding":"base64"}"#).unwrap();
        assert_eq!(req.encoding, Encoding::Base64);
        let Command::Set { value, .. } = req.command else { panic!() };
        assert_eq!(value.as_bytes(), &[0, 255]);
        assert_eq!(
            code(br#"{"action":"set","sandbox":"s","key":"k","value":"@@","encoding":"base64"}"#),
            "bad_request"
        );
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k","value":"x","encoding":"rot13"}"#), "bad_request");
    }

    #[test]
    fn errors_have_codes_and_ids() {
        assert_eq!(code(b""), "bad_request");
        assert_eq!(code(b"not json"), "bad_request");
        assert_eq!(code(b"\xff\xfe"), "bad_request");
        assert_eq!(code(br#"{"action":"fly"}"#), "unknown_action");
        assert_eq!(code(br#"{"sandbox":"s"}"#), "bad_request");
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k"}"#), "bad_request");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","rotate":"yes"}"#), "bad_request");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","grace_period":60000}"#), "invalid_argument");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","grace_period":-1}"#), "bad_request");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","grace_period":1e400}"#), "bad_request");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","grace_period":-0.5}"#), "bad_request");
        assert_eq!(code(br#"{"action":"get","sandbox":"s","key":"k","grace_period":"1000"}"#), "bad_request");
        let req = decode_request(br#"{"action":"get","sandbox":"s","key":"k","rotate":true,"grace_period":1500.7}"#);
        let Command::Get { grace, .. } = req.unwrap().command else { panic!() };
        assert_eq!(grace, Some(Duration::from_millis(1500)), "JavaScript numbers are accepted, rounded down");
        assert_eq!(code(br#"{"action":"set","sandbox":"s","key":"k","value":"v","ttl":"0s"}"#), "invalid_duration");
        assert_eq!(code(br#"{"action":"ping","action":"ping"}"#), "bad_request");
        assert_eq!(code(b"[1,2]"), "bad_request");
        assert_eq!(code(br#"{"action":"revoke_session","sandbox":"s","subject":"u","session_id":""}"#), "bad_request");
        assert_eq!(
            code(br#"{"action":"revoke_session","sandbox":"s","subject":"u","session_id":"has space"}"#),
            "bad_request"
        );
        let err = decode_request(br#"{"id":5,"action":"get","sandbox":"s"}"#).unwrap_err();
        assert_eq!(err.id, Some(Id::Unsigned(5)));
        assert_eq!(err.to_string(), "action \"get\" needs field \"key\"");
        let err = decode_request(br#"{"id":-5,"action":"get","rotate":1}"#).unwrap_err();
        assert_eq!(err.id, Some(Id::Signed(-5)));
        assert!(err.to_string().contains("a boolean or a duration string"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut line = br#"{"action":"ping","junk":"#.to_vec();
        line.extend(std::iter::repeat_n(b'[', 100_000));
        line.extend(std::iter::repeat_n(b']', 100_000));
        line.push(b'}');
        // An ignored field is skipped without recursion: accepted.
        assert!(matches!(decode_request(&line).unwrap().command, Command::Ping));
        let mut line = br#"{"action":"set","sandbox":"s","key":"k","value":"#.to_vec();
        line.extend(std::iter::repeat_n(b'[', 100_000));
        line.extend(std::iter::repeat_n(b']', 100_000));
        line.push(b'}');
        // A value is taken as raw JSON text: accepted and stored compact.
        let Command::Set { value, .. } = decode_request(&line).unwrap().command else { panic!("not a set") };
        assert_eq!(value.len(), 200_000);
        let line = format!(r#"{{"action":"ping","id":{}}}"#, "9".repeat(10_000));
        assert_eq!(code(line.as_bytes()), "bad_request");
    }

    #[test]
    fn resolve_options() {
        let req =
            decode_request(br#"{"action":"resolve","sandbox":"s","key":"t","rotate":"5m","refresh":true}"#).unwrap();
        let Command::Resolve { rotate, refresh, .. } = req.command else { panic!() };
        assert_eq!(rotate, RotateSpec::OlderThan(Duration::from_secs(300)));
        assert!(refresh);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let req = decode_request(br#"{"action":"set","sandbox":"s","key":"SECRETKEY","value":"SECRETVALUE"}"#).unwrap();
        let shown = format!("{req:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
