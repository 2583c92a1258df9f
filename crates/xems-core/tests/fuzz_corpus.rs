//! The committed fuzz corpus `fuzz/corpus/duration/` as a regression test on
//! stable: every file through the function the `duration` fuzz target calls
//! (`xems_core::fuzzing::duration`), which must not panic (see
//! `xems_core::fuzzing::replay_corpus`).

#[test]
fn duration_corpus_never_panics() {
    xems_testkit::logs::capture();
    xems_core::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "duration", xems_core::fuzzing::duration);
}
