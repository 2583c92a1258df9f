//! The per-request state: the token the client presented, the session it
//! resolves to (resolved at most once), and what the response must tell the
//! client (a new token, or a cleared cookie).

use std::sync::Arc;

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Response};
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use xems_core::{DynSessionStore, Error, Refresh, ResolveOptions, Token};

use crate::config::XemsConfig;
use crate::error::XemsError;
use crate::extract::{Delivery, Session};

/// The store and configuration of one layer, shared by its requests.
pub(crate) struct Shared<S> {
    pub(crate) config: XemsConfig,
    pub(crate) store: S,
}

/// [`Shared`] with the store type erased, so extractors need no type
/// parameter. One virtual call per store operation.
pub(crate) trait Backend: Send + Sync + 'static {
    fn config(&self) -> &XemsConfig;
    fn store(&self) -> &dyn DynSessionStore;
}

impl<S: xems_core::SessionStore> Backend for Shared<S> {
    fn config(&self) -> &XemsConfig {
        &self.config
    }
    fn store(&self) -> &dyn DynSessionStore {
        &self.store
    }
}

/// Where the client sent its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Header,
}

/// Which token the client holds, as far as this request knows.
enum Current {
    /// The one it presented (or none).
    Incoming,
    /// A new one this request hands out (rotation, link, migration).
    Replaced(Token),
    /// None: the session was unlinked.
    Gone,
}

/// What the response tells the client.
enum Outgoing {
    Nothing,
    /// The token of [`Current::Replaced`], in the cookie and/or the header.
    Token {
        cookie: bool,
        header: bool,
    },
    ClearCookie,
}

struct State {
    current: Current,
    outgoing: Outgoing,
}

/// Everything the layer and the extractors share about one request.
pub(crate) struct RequestCtx {
    pub(crate) backend: Arc<dyn Backend>,
    incoming: Option<(Token, Via)>,
    resolved: OnceCell<Result<Option<Session>, Arc<Error>>>,
    state: Mutex<State>,
}

impl RequestCtx {
    pub(crate) fn new(backend: Arc<dyn Backend>, headers: &HeaderMap) -> Self {
        let config = backend.config();
        let incoming = read_token(headers, &config.cookie_name, &config.header_name);
        RequestCtx {
            backend,
            incoming,
            resolved: OnceCell::new(),
            state: Mutex::new(State { current: Current::Incoming, outgoing: Outgoing::Nothing }),
        }
    }

    pub(crate) fn config(&self) -> &XemsConfig {
        self.backend.config()
    }

    pub(crate) fn store(&self) -> &dyn DynSessionStore {
        self.backend.store()
    }

    /// Whether the client presented a token at all.
    pub(crate) fn presented(&self) -> Option<Via> {
        self.incoming.as_ref().map(|(_, via)| *via)
    }

    /// The token the client holds now (a clone: it leaves the lock).
    pub(crate) fn current_token(&self) -> Option<Token> {
        match &self.state.lock().current {
            Current::Incoming => self.incoming.as_ref().map(|(t, _)| t.clone()),
            Current::Replaced(t) => Some(t.clone()),
            Current::Gone => None,
        }
    }

    /// The session in the layer's sandbox, resolved (rotated and refreshed)
    /// on the first call and cached for the rest of the request.
    pub(crate) async fn session(&self) -> Result<Option<Session>, XemsError> {
        match self.resolved.get_or_init(|| self.resolve_once()).await {
            Ok(s) => Ok(s.clone()),
            Err(e) => Err(XemsError::from_cached(e)),
        }
    }

    async fn resolve_once(&self) -> Result<Option<Session>, Arc<Error>> {
        let Some((token, _)) = &self.incoming else { return Ok(None) };
        let config = self.config();
        let opts =
            ResolveOptions::new().with_rotation(config.rotation).with_grace(config.grace).with_refresh(Refresh::Idle);
        match self.store().dyn_resolve(&config.sandbox, token.expose(), opts).await {
            Ok(Some(r)) => {
                // A plain comparison, not `Token`'s constant-time one: both
                // tokens are this client's own (the one it sent and the one
                // it is about to receive), so their timing tells no one
                // anything, and this runs on every request.
                if let Some(next) = r.token
                    && next.expose() != token.expose()
                {
                    let mut state = self.state.lock();
                    // A link or unlink earlier in this request wins over the
                    // rotation of the session it replaced.
                    if matches!(state.current, Current::Incoming) {
                        state.outgoing = outgoing_token(self.auto_delivery(Delivery::Auto));
                        state.current = Current::Replaced(next);
                    }
                }
                Ok(Some(Session::new(r.value, r.meta, r.outcome)))
            }
            Ok(None) => Ok(None),
            // A presented value the store refuses as an address (empty,
            // oversized) is no session, not a failure.
            Err(Error::InvalidKey(_)) => Ok(None),
            Err(e) => {
                crate::error::log_store_error("resolve", &e);
                Err(Arc::new(e))
            }
        }
    }

    /// Resolves [`Delivery::Auto`] against how the client presented its token.
    pub(crate) fn auto_delivery(&self, delivery: Delivery) -> Delivery {
        match delivery {
            Delivery::Auto => match self.presented() {
                Some(Via::Header) => Delivery::Header,
                _ => Delivery::Cookie,
            },
            other => other,
        }
    }

    /// Hands a new token to the client with this response.
    pub(crate) fn replace_token(&self, token: Token, delivery: Delivery) {
        let delivery = self.auto_delivery(delivery);
        let mut state = self.state.lock();
        state.outgoing = outgoing_token(delivery);
        state.current = Current::Replaced(token);
    }

    /// Forgets the client's token and clears its cookie with this response.
    pub(crate) fn clear_token(&self) {
        let mut state = self.state.lock();
        state.outgoing = Outgoing::ClearCookie;
        state.current = Current::Gone;
    }

    /// Writes what the client must learn into the response. Runs whatever the
    /// status: a rotated token must reach the client even on an error page,
    /// or the client is logged out when the grace period ends.
    pub(crate) fn finish<B>(&self, response: &mut Response<B>) {
        let mut state = self.state.lock();
        let outgoing = std::mem::replace(&mut state.outgoing, Outgoing::Nothing);
        let config = self.config();
        let headers = response.headers_mut();
        match outgoing {
            Outgoing::Nothing => return,
            Outgoing::Token { cookie, header } => {
                // An outgoing token is always the replaced current token.
                let Current::Replaced(token) = &state.current else { return };
                if cookie {
                    let mut set = String::with_capacity(config.cookie_name.len() + 1 + token.expose().len() + 64);
                    set.push_str(&config.cookie_name);
                    set.push('=');
                    set.push_str(token.expose());
                    set.push_str(&config.cookie_attributes);
                    match HeaderValue::try_from(set) {
                        Ok(mut v) => {
                            v.set_sensitive(true);
                            headers.append(SET_COOKIE, v);
                        }
                        Err(_) => {
                            tracing::error!(target: "xems::axum", "the store returned a token that is not a valid cookie value")
                        }
                    }
                }
                if header {
                    match HeaderValue::try_from(token.expose()) {
                        Ok(mut v) => {
                            v.set_sensitive(true);
                            headers.insert(config.header_name.clone(), v);
                        }
                        Err(_) => {
                            tracing::error!(target: "xems::axum", "the store returned a token that is not a valid header value")
                        }
                    }
                }
            }
            Outgoing::ClearCookie => {
                headers.append(SET_COOKIE, config.clear_cookie.clone());
            }
        }
        // A response that carries a credential must never be cached.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn outgoing_token(delivery: Delivery) -> Outgoing {
    let (cookie, header) = match delivery {
        Delivery::Auto | Delivery::Cookie => (true, false),
        Delivery::Header => (false, true),
        Delivery::CookieAndHeader => (true, true),
    };
    Outgoing::Token { cookie, header }
}

/// Bytes a token or key may hold when it travels in a cookie or a header:
/// visible ASCII except `"` `,` `;` `\` (RFC 6265 cookie-octets).
const TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'"' | b',' | b';' | b'\\');
        b += 1;
    }
    table
};

/// Whether a presented value can be a token or key at all: 1 to 512 bytes of
/// cookie-safe visible ASCII.
fn plausible_token(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= xems_core::MAX_KEY_LEN && v.iter().all(|&b| TOKEN_BYTE[usize::from(b)])
}

/// The token from the cookie first, then from the header.
fn read_token(headers: &HeaderMap, cookie_name: &str, header_name: &http::HeaderName) -> Option<(Token, Via)> {
    if let Some(v) = cookie_value(headers, cookie_name) {
        return Some((Token::from_string(v.to_owned()), Via::Cookie));
    }
    let v = headers.get(header_name)?.to_str().ok()?.trim();
    plausible_token(v.as_bytes()).then(|| (Token::from_string(v.to_owned()), Via::Header))
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// The first plausible value of cookie `name` in the `Cookie` headers. Works
/// on bytes: a plausible value is ASCII, so it is valid UTF-8.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
            if trim_ows(&pair[..eq]) != name.as_bytes() {
                continue;
            }
            let v = trim_ows(&pair[eq + 1..]);
            let v = match v {
                [b'"', inner @ .., b'"'] => inner,
                v => v,
            };
            if plausible_token(v) {
                return std::str::from_utf8(v).ok();
            }
        }
    }
    None
}

/// Runs the token reader over headers made from arbitrary bytes: each line
/// is a `Cookie` header, or, after `H:`, the token header (lines that are
/// not valid header values are dropped, as `http` would refuse them). The
/// fuzz target and the corpus regression test call this; it must never
/// panic, and what it returns must be a plausible token taken from the input.
#[doc(hidden)]
pub fn fuzz_read_token(data: &[u8]) -> Option<String> {
    let header_name = http::HeaderName::from_static(crate::DEFAULT_HEADER_NAME);
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.strip_prefix(b"H:") {
            Some(v) => (header_name.clone(), v),
            None => (COOKIE, line),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let (token, _) = read_token(&headers, crate::DEFAULT_COOKIE_NAME, &header_name)?;
    let text = token.expose();
    assert!(plausible_token(text.as_bytes()), "an implausible token was accepted");
    assert!(memchr_find(data, text.as_bytes()), "the token is not in the input");
    Some(text.to_owned())
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_cookie_among_others() {
        xems_testkit::logs::capture();
        let h = headers(&["a=1; xems_token=abc; b=2"]);
        assert_eq!(cookie_value(&h, "xems_token"), Some("abc"));
        let h = headers(&["a=1", "xems_token=\"q\""]);
        assert_eq!(cookie_value(&h, "xems_token"), Some("q"));
        // A prefix of another cookie's name is not a match.
        let h = headers(&["xems_token_old=zzz"]);
        assert_eq!(cookie_value(&h, "xems_token"), None);
        // An emptied cookie is absent, so the header can still be used.
        let h = headers(&["xems_token="]);
        assert_eq!(cookie_value(&h, "xems_token"), None);
        // Values that cannot be tokens are ignored.
        let h = headers(&["xems_token=a\\b"]);
        assert_eq!(cookie_value(&h, "xems_token"), None);
        let long = format!("xems_token={}", "a".repeat(513));
        assert_eq!(cookie_value(&headers(&[&long]), "xems_token"), None);
    }
}
