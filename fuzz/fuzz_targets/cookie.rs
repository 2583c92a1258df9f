//! Any bytes as `Cookie` and token headers through xems-axum's token
//! reader: a plausible token taken from the input, or none. Run with
//! `cargo +nightly fuzz run cookie`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(xems_axum::fuzz_read_token(data)));
