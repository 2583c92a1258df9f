//! The committed fuzz corpus `fuzz/corpus/decode/` as a regression test on
//! stable: every file through the function the `decode` fuzz target calls
//! (`xems_protocol::fuzz_entry`), which must not panic (see
//! `xems_core::fuzzing::replay_corpus`).

#[test]
fn decode_corpus_never_panics() {
    xems_core::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "decode", |data| {
        let _ = xems_protocol::fuzz_entry(data);
    });
}
