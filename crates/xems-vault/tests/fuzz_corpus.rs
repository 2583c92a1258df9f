//! The committed fuzz corpus `fuzz/corpus/vault/` as a regression test on
//! stable: every file through the function the `vault` fuzz target calls
//! (`xems_vault::fuzzing::entry`), which must not panic (see
//! `xems_core::fuzzing::replay_corpus`).

#[test]
fn vault_corpus_never_panics() {
    xems_testkit::logs::capture();
    xems_core::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "vault", xems_vault::fuzzing::entry);
}
