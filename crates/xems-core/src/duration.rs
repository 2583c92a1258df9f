//! The TTL grammar: `"15m"`, `"2h"`, `"1h30m"`, `"250ms"`, `"90"` (seconds).
//!
//! A duration is one or more `<integer><unit>` parts with units `ms`, `s`,
//! `m`, `h` and `d`, case-insensitive, optionally separated by spaces. A bare
//! integer means seconds. Zero, negative, overflowing and malformed inputs are
//! errors that quote the input.

use std::fmt;
use std::time::Duration;

/// The hard retention cap: no record lives longer than five days.
pub const MAX_TTL: Duration = Duration::from_secs(5 * 24 * 3600);

/// The TTL used when none is given: fifteen minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// The grace period used when none is given: one second.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(1000);

/// The longest grace period accepted (XyPriss's limit): 55 seconds.
pub const MAX_GRACE: Duration = Duration::from_secs(55);

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected a number with a unit such as 250ms, 30s, 15m, 2h, 1d or 1h30m)"
)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Quote at most 64 characters: the input may be hostile and huge.
        let input: String = input.chars().take(64).collect();
        DurationError { input, reason }
    }

    /// The reason, without the quoted input.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Parses a duration in the TTL grammar.
///
/// # Errors
///
/// An empty, malformed, zero, negative or overflowing input.
///
/// ```
/// use std::time::Duration;
/// use xems_core::parse_duration;
///
/// assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("250MS").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
/// assert!(parse_duration("0s").is_err());
/// assert!(parse_duration("-5m").is_err());
/// assert!(parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::new(input, "empty"));
    }
    if s.starts_with('-') {
        return Err(DurationError::new(input, "negative"));
    }
    let bytes = s.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    let mut parts = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(DurationError::new(input, "expected a number"));
        }
        let mut n: u64 = 0;
        for &d in &bytes[start..i] {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| DurationError::new(input, "too large"))?;
        }
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let factor: u64 = if unit.is_empty() && i < bytes.len() && bytes[i] != b' ' {
            return Err(DurationError::new(input, "unexpected character"));
        } else if unit.is_empty() {
            // A bare integer is seconds, but only on its own: "1h30" is ambiguous.
            if parts > 0 || i < bytes.len() {
                return Err(DurationError::new(input, "missing unit"));
            }
            1000
        } else if unit.eq_ignore_ascii_case("ms") {
            1
        } else if unit.eq_ignore_ascii_case("s") {
            1000
        } else if unit.eq_ignore_ascii_case("m") {
            60_000
        } else if unit.eq_ignore_ascii_case("h") {
            3_600_000
        } else if unit.eq_ignore_ascii_case("d") {
            86_400_000
        } else {
            return Err(DurationError::new(input, "unknown unit"));
        };
        let part = n.checked_mul(factor).ok_or_else(|| DurationError::new(input, "too large"))?;
        total_ms = total_ms.checked_add(part).ok_or_else(|| DurationError::new(input, "too large"))?;
        parts += 1;
        if i < bytes.len() && !(bytes[i] == b' ' || bytes[i].is_ascii_digit()) {
            return Err(DurationError::new(input, "unexpected character"));
        }
    }
    if total_ms == 0 {
        return Err(DurationError::new(input, "must be greater than zero"));
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the TTL grammar, largest units first (`"1h30m"`).
///
/// ```
/// use std::time::Duration;
/// use xems_core::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
/// assert_eq!(format_duration(Duration::ZERO), "0ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0ms".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&(ms / size).to_string());
            out.push_str(unit);
            ms %= size;
        }
    }
    out
}

/// A TTL after applying the five-day cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CappedTtl {
    /// The TTL that will be used.
    pub effective: Duration,
    /// Whether the requested TTL was longer than [`MAX_TTL`].
    pub capped: bool,
}

/// Applies the five-day cap to a TTL.
///
/// ```
/// use std::time::Duration;
/// use xems_core::{cap_ttl, MAX_TTL};
///
/// assert!(cap_ttl(Duration::from_secs(6 * 86_400)).capped);
/// assert_eq!(cap_ttl(Duration::from_secs(6 * 86_400)).effective, MAX_TTL);
/// ```
pub fn cap_ttl(requested: Duration) -> CappedTtl {
    if requested > MAX_TTL {
        CappedTtl { effective: MAX_TTL, capped: true }
    } else {
        CappedTtl { effective: requested, capped: false }
    }
}

/// A duration that displays in the TTL grammar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub Duration);

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl fmt::Debug for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ttl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_and_compounds() {
        xems_testkit::logs::capture();
        let cases = [
            ("1ms", 1),
            ("1s", 1000),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1H30M", 5_400_000),
            ("1h 30m", 5_400_000),
            (" 2m ", 120_000),
            ("5d", 432_000_000),
            ("10", 10_000),
        ];
        for (input, ms) in cases {
            assert_eq!(parse_duration(input).unwrap(), Duration::from_millis(ms), "{input}");
        }
    }

    #[test]
    fn refusals_name_the_input() {
        xems_testkit::logs::capture();
        for (input, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("0", "must be greater than zero"),
            ("0m0s", "must be greater than zero"),
            ("-5m", "negative"),
            ("5x", "unknown unit"),
            ("m", "expected a number"),
            ("1h30", "missing unit"),
            ("1.5h", "unexpected character"),
            ("99999999999999999999s", "too large"),
            ("999999999999999d", "too large"),
        ] {
            let err = parse_duration(input).unwrap_err();
            assert_eq!(err.reason(), reason, "{input:?}");
            assert!(err.to_string().contains(&format!("{:?}", input.chars().take(64).collect::<String>())));
        }
    }

    #[test]
    fn cap() {
        xems_testkit::logs::capture();
        assert_eq!(cap_ttl(MAX_TTL), CappedTtl { effective: MAX_TTL, capped: false });
        let over = MAX_TTL + Duration::from_millis(1);
        assert_eq!(cap_ttl(over), CappedTtl { effective: MAX_TTL, capped: true });
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            xems_testkit::logs::capture();
            let _ = parse_duration(&s);
        }

        #[test]
        fn format_round_trips(ms in 1u64..10_000_000_000) {
            xems_testkit::logs::capture();
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
