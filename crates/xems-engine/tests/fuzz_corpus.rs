//! The committed fuzz corpus `fuzz/corpus/token/` as a regression test on
//! stable: every file through the function the `token` fuzz target calls
//! (`xems_core::fuzzing::address` and `xems_engine::fuzzing::tokens`), which must not panic (see
//! `xems_core::fuzzing::replay_corpus`).

#[test]
fn token_corpus_never_panics() {
    xems_testkit::logs::capture();
    xems_core::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "token", |data| {
        xems_core::fuzzing::address(data);
        xems_engine::fuzzing::tokens(data);
    });
}
