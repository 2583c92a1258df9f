//! Entry points of the fuzz targets in `fuzz/` (also run over the committed
//! corpora by this crate's tests, on stable). Not part of the API.

use std::time::Duration;

use crate::{Token, format_duration, parse_duration, route_of, validate_key};

/// The TTL grammar over arbitrary text: a clean result or a clean error,
/// and every accepted duration survives formatting and parsing again.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_duration(text) {
        Ok(d) => {
            assert!(d > Duration::ZERO, "{text:?} parsed to zero");
            let shown = format_duration(d);
            assert_eq!(parse_duration(&shown), Ok(d), "{text:?} -> {shown:?} does not parse back");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!e.reason().is_empty());
            // The input is quoted, but never more than 64 characters of it
            // (each at most 10 bytes once escaped, as `\u{10ffff}`).
            assert!(message.len() < 64 * 10 + 200, "error message of {} bytes", message.len());
        }
    }
}

/// Addresses as clients send them: routing is a pure function of the text,
/// validation never panics, and a token's `Debug` never shows it.
pub fn address(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    assert_eq!(route_of(&text), route_of(&text));
    let _ = validate_key(&text);
    let token = Token::from_string(text);
    assert_eq!(format!("{token:?}"), "Token(<redacted>)");
}
