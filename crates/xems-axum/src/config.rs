//! The layer's configuration, its builder and its validation.
//!
//! Option names and defaults mirror XyPriss's `server.xems` block: `sandbox`,
//! `ttl` (`"15m"`), `cookieName` (`xems_token`), `headerName`
//! (`x-xypriss-token`), `autoRotation` (`true`, `false` or an interval),
//! `gracePeriod` (1000 ms, at most 55 s) and the cookie options.

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use xems_core::{DEFAULT_GRACE, DEFAULT_TTL, DurationError, MAX_GRACE, MAX_TTL, Rotation, SessionStore};

use crate::layer::XemsLayer;

/// The default sandbox of linked sessions.
pub const DEFAULT_SANDBOX: &str = "active";
/// The default cookie name (as in XyPriss).
pub const DEFAULT_COOKIE_NAME: &str = "xems_token";
/// The default header name (as in XyPriss).
pub const DEFAULT_HEADER_NAME: &str = "x-xypriss-token";

/// Why a configuration was refused by [`XemsLayerBuilder::build`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sandbox name is not 1-64 characters of `[A-Za-z0-9._:-]`.
    #[error("invalid sandbox: {0}")]
    Sandbox(#[source] xems_core::Error),
    /// A duration option could not be parsed.
    #[error("invalid {option}: {source}")]
    Duration {
        /// The option (`ttl`, `auto_rotation`, `grace_period`, `cookie max_age`).
        option: &'static str,
        /// What is wrong with it.
        #[source]
        source: DurationError,
    },
    /// The grace period is above 55 seconds (XyPriss's limit).
    #[error("grace_period of {0:?} is above the maximum of 55 s")]
    GraceTooLong(Duration),
    /// The cookie name is not a valid cookie name.
    #[error("invalid cookie_name {name:?}: {reason}")]
    CookieName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header name is not a valid HTTP header name, or one the layer
    /// cannot use.
    #[error("invalid header_name {name:?}: {reason}")]
    HeaderName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cookie attribute is malformed.
    #[error("invalid cookie {attribute}: {reason}")]
    CookieAttribute {
        /// `path` or `domain`.
        attribute: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The cookie options break a rule browsers enforce (the `__Host-` and
    /// `__Secure-` prefixes, `SameSite=None` without `Secure`): the browser
    /// would silently drop the cookie and every user would be logged out.
    #[error("cookie options rejected by browsers: {0}")]
    CookieRule(&'static str),
}

/// When the layer rotates a session's token (XyPriss's `autoRotation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoRotation {
    /// On every request that resolves the session (`autoRotation: true`, the
    /// default).
    Always,
    /// Never (`autoRotation: false`).
    Never,
    /// When the current token is older than this, measured by the store
    /// (`autoRotation: "5m"`). Parsed with the TTL grammar when the layer is
    /// built.
    Interval(DurationSetting),
}

impl From<bool> for AutoRotation {
    fn from(on: bool) -> Self {
        if on { AutoRotation::Always } else { AutoRotation::Never }
    }
}

impl From<&str> for AutoRotation {
    fn from(interval: &str) -> Self {
        AutoRotation::Interval(interval.into())
    }
}

impl From<Duration> for AutoRotation {
    fn from(interval: Duration) -> Self {
        AutoRotation::Interval(interval.into())
    }
}

/// A duration option given either as a [`Duration`] or as text in the TTL
/// grammar (`"15m"`, `"2h"`, `"1h30m"`, `"250ms"`); text is parsed, and
/// refused with a [`ConfigError`], when the layer is built.
#[derive(Clone, PartialEq, Eq)]
pub struct DurationSetting(DurationRepr);

#[derive(Clone, PartialEq, Eq)]
enum DurationRepr {
    Exact(Duration),
    Text(String),
}

impl DurationSetting {
    fn resolve(&self, option: &'static str) -> Result<Duration, ConfigError> {
        let zero = || ConfigError::Duration {
            option,
            source: xems_core::parse_duration("0").expect_err("zero is refused by the grammar"),
        };
        match &self.0 {
            DurationRepr::Exact(d) if d.is_zero() => Err(zero()),
            DurationRepr::Exact(d) => Ok(*d),
            DurationRepr::Text(s) => {
                xems_core::parse_duration(s).map_err(|source| ConfigError::Duration { option, source })
            }
        }
    }
}

impl fmt::Debug for DurationSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            DurationRepr::Exact(d) => write!(f, "{d:?}"),
            DurationRepr::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<Duration> for DurationSetting {
    fn from(d: Duration) -> Self {
        DurationSetting(DurationRepr::Exact(d))
    }
}

impl From<&str> for DurationSetting {
    fn from(s: &str) -> Self {
        DurationSetting(DurationRepr::Text(s.to_owned()))
    }
}

impl From<String> for DurationSetting {
    fn from(s: String) -> Self {
        DurationSetting(DurationRepr::Text(s))
    }
}

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests (the default).
    #[default]
    Strict,
    /// Also sent on top-level cross-site navigations.
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Attributes of the session cookie (XyPriss's `cookieOptions`).
///
/// The defaults are the safe ones: `HttpOnly`, `Secure`, `SameSite=Strict`,
/// `Path=/`, no `Domain`, and no `Max-Age` (a browser-session cookie: the
/// store, not the cookie, decides when the session ends, and the idle expiry
/// slides on every request).
///
/// # Security
///
/// Turning off `http_only` lets page scripts read the token; turning off
/// `secure` lets it travel over plain HTTP. Browsers treat `http://localhost`
/// and `http://127.0.0.1` as secure, so neither is needed for local
/// development.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieOptions {
    /// `HttpOnly` (default `true`).
    pub http_only: bool,
    /// `Secure` (default `true`).
    pub secure: bool,
    /// `SameSite` (default `Strict`).
    pub same_site: SameSite,
    /// `Path` (default `/`).
    pub path: String,
    /// `Domain` (default none: the cookie goes back to this host only).
    pub domain: Option<String>,
    /// `Max-Age` (default none: a browser-session cookie).
    pub max_age: Option<Duration>,
}

impl Default for CookieOptions {
    fn default() -> Self {
        CookieOptions {
            http_only: true,
            secure: true,
            same_site: SameSite::Strict,
            path: "/".to_owned(),
            domain: None,
            max_age: None,
        }
    }
}

/// The validated configuration of a layer.
#[derive(Debug)]
pub struct XemsConfig {
    pub(crate) sandbox: Box<str>,
    pub(crate) ttl: Duration,
    pub(crate) rotation: Rotation,
    pub(crate) grace: Duration,
    pub(crate) cookie_name: Box<str>,
    pub(crate) header_name: HeaderName,
    pub(crate) cookie: CookieOptions,
    /// `; Path=/; HttpOnly; Secure; SameSite=Strict`, built once.
    pub(crate) cookie_attributes: Box<str>,
    /// The Set-Cookie value that clears the cookie, built once.
    pub(crate) clear_cookie: HeaderValue,
}

impl XemsConfig {
    /// The sandbox sessions are resolved in and linked into.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The idle TTL of linked sessions (slides on every request).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The rotation policy.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The grace period of rotated-away tokens.
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The header API clients send the token in.
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// The cookie's attributes.
    pub fn cookie_options(&self) -> &CookieOptions {
        &self.cookie
    }
}

/// Builds an [`XemsLayer`]; every option is checked by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use xems_axum::{SameSite, XemsLayer};
///
/// let layer = XemsLayer::builder(xems_engine::Engine::new())
///     .with_sandbox("active")
///     .with_ttl("30m")
///     .with_auto_rotation("5m")
///     .with_grace_period(Duration::from_secs(2))
///     .with_cookie_name("__Host-xems")
///     .with_same_site(SameSite::Lax)
///     .build()?;
/// assert_eq!(layer.config().ttl(), Duration::from_secs(1800));
///
/// // A bad configuration fails here, not at request time.
/// let err = XemsLayer::builder(xems_engine::Engine::new()).with_ttl("15 parsecs").build().unwrap_err();
/// assert!(err.to_string().contains("invalid ttl"));
/// # Ok::<(), xems_axum::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use = "call build() to get the layer"]
pub struct XemsLayerBuilder<S> {
    store: S,
    sandbox: String,
    ttl: DurationSetting,
    rotation: AutoRotation,
    grace: Duration,
    cookie_name: String,
    header_name: String,
    cookie: CookieOptions,
    cookie_max_age: Option<DurationSetting>,
}

impl<S: SessionStore> XemsLayerBuilder<S> {
    pub(crate) fn new(store: S) -> Self {
        XemsLayerBuilder {
            store,
            sandbox: DEFAULT_SANDBOX.to_owned(),
            ttl: DEFAULT_TTL.into(),
            rotation: AutoRotation::Always,
            grace: DEFAULT_GRACE,
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            header_name: DEFAULT_HEADER_NAME.to_owned(),
            cookie: CookieOptions::default(),
            cookie_max_age: None,
        }
    }

    /// The sandbox sessions live in (default `active`).
    pub fn with_sandbox(mut self, sandbox: impl Into<String>) -> Self {
        self.sandbox = sandbox.into();
        self
    }

    /// The idle TTL of linked sessions (default `"15m"`; capped at 5 days).
    pub fn with_ttl(mut self, ttl: impl Into<DurationSetting>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// When to rotate: `true` (every request, the default), `false`, or an
    /// interval such as `"5m"`.
    pub fn with_auto_rotation(mut self, rotation: impl Into<AutoRotation>) -> Self {
        self.rotation = rotation.into();
        self
    }

    /// How long a rotated-away token keeps working, so concurrent requests
    /// that still carry it succeed (default 1 s, maximum 55 s, zero
    /// disables).
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The cookie's name (default `xems_token`). A `__Host-` name requires
    /// `Secure`, `Path=/` and no `Domain`; a `__Secure-` name requires
    /// `Secure`.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The header API clients send and receive the token in (default
    /// `x-xypriss-token`).
    pub fn with_header_name(mut self, name: impl Into<String>) -> Self {
        self.header_name = name.into();
        self
    }

    /// All cookie attributes at once.
    pub fn with_cookie_options(mut self, options: CookieOptions) -> Self {
        self.cookie = options;
        self
    }

    /// `Secure` (default `true`). See [`CookieOptions`] before turning it off.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self
    }

    /// `HttpOnly` (default `true`). See [`CookieOptions`] before turning it
    /// off.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.cookie.http_only = http_only;
        self
    }

    /// `SameSite` (default `Strict`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// `Path` (default `/`).
    pub fn with_cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// `Domain` (default none).
    pub fn with_cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }

    /// `Max-Age` (default none: a browser-session cookie).
    pub fn with_cookie_max_age(mut self, max_age: impl Into<DurationSetting>) -> Self {
        self.cookie_max_age = Some(max_age.into());
        self
    }

    /// Checks every option and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad option.
    pub fn build(self) -> Result<XemsLayer<S>, ConfigError> {
        let config = self.validate_into_config()?;
        Ok(XemsLayer::from_parts(config, self.store))
    }

    fn validate_into_config(&self) -> Result<XemsConfig, ConfigError> {
        xems_core::validate_sandbox(&self.sandbox).map_err(ConfigError::Sandbox)?;
        let mut ttl = self.ttl.resolve("ttl")?;
        if ttl > MAX_TTL {
            tracing::warn!(
                target: "xems::axum",
                ttl = %xems_core::format_duration(ttl),
                "session ttl is above the 5-day cap; using 5d"
            );
            ttl = MAX_TTL;
        }
        let rotation = match &self.rotation {
            AutoRotation::Always => Rotation::Always,
            AutoRotation::Never => Rotation::Never,
            AutoRotation::Interval(every) => Rotation::OlderThan(every.resolve("auto_rotation")?),
        };
        if self.grace > MAX_GRACE {
            return Err(ConfigError::GraceTooLong(self.grace));
        }
        validate_cookie_name(&self.cookie_name)?;
        let header_name = validate_header_name(&self.header_name)?;

        let mut cookie = self.cookie.clone();
        if let Some(max_age) = &self.cookie_max_age {
            cookie.max_age = Some(max_age.resolve("cookie max_age")?);
        }
        validate_cookie_rules(&self.cookie_name, &cookie)?;
        let cookie_attributes = cookie_attributes(&cookie);
        let clear_cookie = HeaderValue::try_from(format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{}",
            self.cookie_name,
            cookie_attributes_without_max_age(&cookie)
        ))
        .map_err(|_| ConfigError::CookieAttribute { attribute: "path", reason: "not a valid header value" })?;
        // A full Set-Cookie value must be a valid header value too: check one
        // with a token-shaped placeholder now, so it cannot fail per request.
        HeaderValue::try_from(format!("{}={}{}", self.cookie_name, "A".repeat(66), cookie_attributes))
            .map_err(|_| ConfigError::CookieAttribute { attribute: "domain", reason: "not a valid header value" })?;

        Ok(XemsConfig {
            sandbox: self.sandbox.as_str().into(),
            ttl,
            rotation,
            grace: self.grace,
            cookie_name: self.cookie_name.as_str().into(),
            header_name,
            cookie,
            cookie_attributes: cookie_attributes.into(),
            clear_cookie,
        })
    }
}

/// RFC 6265 `token`: visible ASCII except separators.
fn is_cookie_name_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

fn validate_cookie_name(name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 128 {
        "longer than 128 characters"
    } else if !name.bytes().all(is_cookie_name_char) {
        "only visible ASCII without separators ()<>@,;:\\\"/[]?={} is allowed"
    } else {
        return Ok(());
    };
    Err(ConfigError::CookieName { name: name.chars().take(80).collect(), reason })
}

fn validate_header_name(name: &str) -> Result<HeaderName, ConfigError> {
    let err = |reason| ConfigError::HeaderName { name: name.chars().take(80).collect(), reason };
    let header = HeaderName::try_from(name).map_err(|_| err("not a valid HTTP header name"))?;
    if header == http::header::COOKIE || header == http::header::SET_COOKIE {
        return Err(err("the cookie headers carry the cookie; choose another header"));
    }
    Ok(header)
}

fn validate_cookie_rules(name: &str, cookie: &CookieOptions) -> Result<(), ConfigError> {
    let attr = |attribute, reason| ConfigError::CookieAttribute { attribute, reason };
    let bad_char = |s: &str| s.bytes().any(|b| b == b';' || b.is_ascii_control() || !b.is_ascii());
    if !cookie.path.starts_with('/') {
        return Err(attr("path", "must start with /"));
    }
    if bad_char(&cookie.path) {
        return Err(attr("path", "must be ASCII without ; or control characters"));
    }
    if let Some(domain) = &cookie.domain {
        if domain.is_empty() {
            return Err(attr("domain", "empty (leave it unset to mean this host only)"));
        }
        if bad_char(domain) || domain.contains(' ') {
            return Err(attr("domain", "must be ASCII without spaces, ; or control characters"));
        }
    }
    // Prefixes are matched case-insensitively by current browsers.
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("__host-") {
        if !cookie.secure {
            return Err(ConfigError::CookieRule("a __Host- cookie requires Secure"));
        }
        if cookie.path != "/" {
            return Err(ConfigError::CookieRule("a __Host- cookie requires Path=/"));
        }
        if cookie.domain.is_some() {
            return Err(ConfigError::CookieRule("a __Host- cookie must not set Domain"));
        }
    }
    if lower.starts_with("__secure-") && !cookie.secure {
        return Err(ConfigError::CookieRule("a __Secure- cookie requires Secure"));
    }
    if cookie.same_site == SameSite::None && !cookie.secure {
        return Err(ConfigError::CookieRule("SameSite=None requires Secure"));
    }
    Ok(())
}

fn cookie_attributes_without_max_age(c: &CookieOptions) -> String {
    let mut s = format!("; Path={}", c.path);
    if let Some(domain) = &c.domain {
        s.push_str("; Domain=");
        s.push_str(domain);
    }
    if c.http_only {
        s.push_str("; HttpOnly");
    }
    if c.secure {
        s.push_str("; Secure");
    }
    s.push_str("; SameSite=");
    s.push_str(c.same_site.as_str());
    s
}

fn cookie_attributes(c: &CookieOptions) -> String {
    let mut s = cookie_attributes_without_max_age(c);
    if let Some(max_age) = c.max_age {
        s.push_str(&format!("; Max-Age={}", max_age.as_secs().max(1)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_render_in_a_stable_order() {
        xems_testkit::logs::capture();
        let c = CookieOptions::default();
        assert_eq!(cookie_attributes(&c), "; Path=/; HttpOnly; Secure; SameSite=Strict");
        let c = CookieOptions {
            http_only: false,
            secure: false,
            same_site: SameSite::Lax,
            path: "/app".into(),
            domain: Some("example.com".into()),
            max_age: Some(Duration::from_secs(900)),
        };
        assert_eq!(cookie_attributes(&c), "; Path=/app; Domain=example.com; SameSite=Lax; Max-Age=900");
    }

    #[test]
    fn cookie_names() {
        xems_testkit::logs::capture();
        assert!(validate_cookie_name("xems_token").is_ok());
        assert!(validate_cookie_name("__Host-xems").is_ok());
        for bad in ["", "a b", "a;b", "a=b", "é", "a\"b"] {
            assert!(validate_cookie_name(bad).is_err(), "{bad:?}");
        }
    }
}
