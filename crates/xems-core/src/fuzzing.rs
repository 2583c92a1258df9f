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

/// Runs `target` over every file of the committed corpus `fuzz/corpus/<name>/`
/// (from a crate's tests: `manifest_dir` is its `CARGO_MANIFEST_DIR`),
/// failing the test that calls it when the corpus is missing or smaller
/// than five inputs, or when an input makes `target` panic (the message
/// names the file). CI may have no nightly toolchain to fuzz with; this
/// keeps every input found so far exercised on stable.
///
/// # Panics
///
/// On any of the failures above: it is a test helper.
pub fn replay_corpus(manifest_dir: &str, name: &str, target: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let dir = std::path::Path::new(manifest_dir).join("../../fuzz/corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus {} holds only {} files", dir.display(), files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let run = std::panic::catch_unwind(|| target(&data));
        assert!(run.is_ok(), "{} made the {name} target panic", file.display());
    }
}
