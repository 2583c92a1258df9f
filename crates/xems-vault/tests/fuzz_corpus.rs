//! The committed fuzz corpus `fuzz/corpus/vault/` as a regression test on
//! stable: every file through the function the `vault` fuzz target calls
//! (`xems_vault::fuzzing::entry`), which must not panic. CI may have no nightly toolchain to
//! fuzz with; this keeps every input found so far exercised.

#[test]
fn vault_corpus_never_panics() {
    xems_testkit::logs::capture();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/vault");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus {} holds only {} files", dir.display(), files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let run = std::panic::catch_unwind(|| xems_vault::fuzzing::entry(&data));
        assert!(run.is_ok(), "{} made the vault target panic", file.display());
    }
}
