//! Any bytes through the line splitter, the request decoder and the error
//! encoder: must never panic. Run with `cargo +nightly fuzz run decode`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(xems_protocol::fuzz_entry(data)));
