//! The committed fuzz corpus `fuzz/corpus/cookie/` as a regression test on
//! stable: every file through the function the `cookie` fuzz target calls
//! (`xems_axum::fuzz_read_token`), which must not panic (see
//! `xems_core::fuzzing::replay_corpus`).

#[test]
fn cookie_corpus_never_panics() {
    xems_testkit::logs::capture();
    xems_core::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "cookie", |data| {
        drop(xems_axum::fuzz_read_token(data))
    });
}
