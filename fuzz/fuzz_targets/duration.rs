//! Any text through the TTL grammar (`xems_core::parse_duration`): a clean
//! result or error, and accepted durations survive formatting and parsing
//! again. Run with `cargo +nightly fuzz run duration`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xems_core::fuzzing::duration(data));
