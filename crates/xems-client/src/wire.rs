//! Encoding requests. Values always travel as base64 so any bytes
//! round-trip.

use std::time::Duration;

use serde::Serialize;
use xems_core::{CreateOptions, Refresh, ResolveOptions, Rotation, format_duration};

/// A duration in the TTL grammar. A sub-millisecond duration rounds up to
/// `1ms`; zero stays `0ms`, which the server refuses like the engine does.
pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() { format_duration(d) } else { format_duration(d.max(Duration::from_millis(1))) }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Rotate {
    Bool(bool),
    Interval(String),
}

/// One request line; absent fields are omitted.
#[derive(Serialize)]
pub(crate) struct Req<'a> {
    pub(crate) action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sandbox: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) absolute_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rotate: Option<Rotate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grace_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) except: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) verbose: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) by_ms: Option<u64>,
}

impl<'a> Req<'a> {
    pub(crate) fn new(action: &'static str) -> Self {
        Req {
            action,
            sandbox: None,
            key: None,
            value: None,
            encoding: None,
            ttl: None,
            absolute_ttl: None,
            subject: None,
            rotate: None,
            grace_period: None,
            refresh: None,
            to: None,
            except: None,
            version: None,
            session_id: None,
            token: None,
            verbose: None,
            by_ms: None,
        }
    }

    pub(crate) fn sandbox(mut self, s: &'a str) -> Self {
        self.sandbox = Some(s);
        self
    }

    pub(crate) fn key(mut self, k: &'a str) -> Self {
        self.key = Some(k);
        self
    }

    /// Sets a base64 value; responses to this request carry base64 `data`.
    pub(crate) fn value(mut self, b64: String) -> Self {
        self.value = Some(b64);
        self.encoding = Some("base64");
        self
    }

    pub(crate) fn create_opts(mut self, o: &'a CreateOptions) -> Self {
        self.ttl = o.ttl.map(duration);
        self.absolute_ttl = o.absolute_ttl.map(duration);
        self.subject = o.subject.as_deref();
        self
    }

    pub(crate) fn resolve_opts(mut self, o: &ResolveOptions) -> Self {
        self.encoding = Some("base64");
        self.rotate = match o.rotate {
            Rotation::Never => None,
            Rotation::Always => Some(Rotate::Bool(true)),
            Rotation::OlderThan(d) if d.is_zero() => Some(Rotate::Bool(true)),
            Rotation::OlderThan(d) => Some(Rotate::Interval(duration(d))),
        };
        self.grace_period = Some(u64::try_from(o.grace.as_millis()).unwrap_or(u64::MAX));
        match o.refresh {
            Refresh::No => {}
            Refresh::Idle => self.refresh = Some(true),
            Refresh::To(t) => self.ttl = Some(duration(t)),
        }
        self
    }

    /// The JSON line, with its newline.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing strings and integers cannot fail; if it ever did, send
        // a line the server refuses rather than a different request.
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| br#"{"action":"client_encode_failed"}"#.to_vec());
        out.push(b'\n');
        out
    }
}
