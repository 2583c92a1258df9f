//! Any bytes as a vault file: the header decoder, the decoders of frame
//! contents, and a whole read-only open and replay of a directory holding
//! the bytes. Run with `cargo +nightly fuzz run vault`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xems_vault::fuzzing::entry(data));
