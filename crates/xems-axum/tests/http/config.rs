//! A bad configuration is an error when the layer is built.

use std::time::Duration;

use xems_axum::{ConfigError, SameSite, XemsLayer};
use xems_core::Rotation;

use crate::common::*;

fn build(f: impl FnOnce(xems_axum::XemsLayerBuilder<DownStore>) -> xems_axum::XemsLayerBuilder<DownStore>) -> String {
    xems_testkit::logs::capture();
    match f(XemsLayer::builder(DownStore)).build() {
        Ok(_) => String::from("ok"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_mirror_xypriss() {
    xems_testkit::logs::capture();
    let layer = XemsLayer::builder(DownStore).build().unwrap();
    let c = layer.config();
    assert_eq!(c.sandbox(), "active");
    assert_eq!(c.ttl(), Duration::from_secs(900));
    assert_eq!(c.rotation(), Rotation::Always);
    assert_eq!(c.grace_period(), Duration::from_millis(1000));
    assert_eq!(c.cookie_name(), "xems_token");
    assert_eq!(c.header_name().as_str(), "x-xypriss-token");
    let o = c.cookie_options();
    assert!(o.http_only && o.secure && o.same_site == SameSite::Strict && o.path == "/" && o.domain.is_none());
}

#[test]
fn options_are_parsed_when_built() {
    xems_testkit::logs::capture();
    let layer = XemsLayer::builder(DownStore)
        .with_ttl("1h30m")
        .with_auto_rotation("5m")
        .with_grace_period(Duration::from_secs(55))
        .build()
        .unwrap();
    assert_eq!(layer.config().ttl(), Duration::from_secs(5400));
    assert_eq!(layer.config().rotation(), Rotation::OlderThan(Duration::from_secs(300)));
    let layer = XemsLayer::builder(DownStore).with_auto_rotation(false).with_ttl("9d").build().unwrap();
    assert_eq!(layer.config().rotation(), Rotation::Never);
    assert_eq!(layer.config().ttl(), xems_core::MAX_TTL, "a TTL above 5 days is capped");
    let layer = XemsLayer::builder(DownStore).with_grace_period(Duration::ZERO).build().unwrap();
    assert_eq!(layer.config().grace_period(), Duration::ZERO, "zero disables the grace period");
}

#[test]
fn bad_options_are_refused_with_a_clear_message() {
    let cases: Vec<(String, &str)> = vec![
        (build(|b| b.with_sandbox("a/b")), "invalid sandbox"),
        (build(|b| b.with_sandbox("")), "invalid sandbox"),
        (build(|b| b.with_ttl("15 parsecs")), "invalid ttl"),
        (build(|b| b.with_ttl("0s")), "invalid ttl"),
        (build(|b| b.with_ttl(Duration::ZERO)), "invalid ttl"),
        (build(|b| b.with_auto_rotation("soon")), "invalid auto_rotation"),
        (build(|b| b.with_grace_period(Duration::from_secs(56))), "above the maximum of 55 s"),
        (build(|b| b.with_cookie_name("")), "invalid cookie_name"),
        (build(|b| b.with_cookie_name("a;b")), "invalid cookie_name"),
        (build(|b| b.with_header_name("x token")), "invalid header_name"),
        (build(|b| b.with_header_name("Cookie")), "invalid header_name"),
        (build(|b| b.with_cookie_name("__Host-x").with_secure(false)), "__Host- cookie requires Secure"),
        (build(|b| b.with_cookie_name("__Host-x").with_cookie_path("/app")), "__Host- cookie requires Path=/"),
        (build(|b| b.with_cookie_name("__host-x").with_cookie_domain("example.com")), "must not set Domain"),
        (build(|b| b.with_cookie_name("__Secure-x").with_secure(false)), "__Secure- cookie requires Secure"),
        (build(|b| b.with_same_site(SameSite::None).with_secure(false)), "SameSite=None requires Secure"),
        (build(|b| b.with_cookie_path("app")), "must start with /"),
        (build(|b| b.with_cookie_path("/a;b")), "invalid cookie path"),
        (build(|b| b.with_cookie_domain("")), "invalid cookie domain"),
        (build(|b| b.with_cookie_domain("a b")), "invalid cookie domain"),
        (build(|b| b.with_cookie_max_age("never")), "invalid cookie max_age"),
    ];
    for (got, want) in cases {
        assert!(got.contains(want), "expected an error containing {want:?}, got {got:?}");
    }
    // The variant is inspectable, too.
    let err = XemsLayer::builder(DownStore).with_grace_period(Duration::from_secs(60)).build().unwrap_err();
    assert!(matches!(err, ConfigError::GraceTooLong(d) if d == Duration::from_secs(60)));
}

#[test]
fn valid_prefixed_cookies_are_accepted() {
    assert_eq!(build(|b| b.with_cookie_name("__Host-xems")), "ok");
    assert_eq!(build(|b| b.with_cookie_name("__Secure-xems").with_cookie_domain("example.com")), "ok");
    assert_eq!(build(|b| b.with_same_site(SameSite::None)), "ok");
    assert_eq!(build(|b| b.with_secure(false)), "ok");
}
