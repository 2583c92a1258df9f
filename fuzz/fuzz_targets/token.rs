//! Any text as a token or key: routing and validation in xems-core, then
//! every operation of an engine that holds a live session (selector
//! decoding, digest lookup, retired addresses): forgeries never resolve or
//! change anything. Run with `cargo +nightly fuzz run token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xems_core::fuzzing::address(data);
    xems_engine::fuzzing::tokens(data);
});
