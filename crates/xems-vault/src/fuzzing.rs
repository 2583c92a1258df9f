//! Entry point of the `vault` fuzz target in `fuzz/` (also run over its
//! committed corpus by this crate's tests, on stable). Not part of the API.

use std::path::PathBuf;
use std::sync::OnceLock;

use xems_core::{Keyring, MasterSecret};

use crate::{VaultOptions, codec, format, inspect};

/// The secret of the golden test vault (`tests/data/golden-v1`), whose files
/// seed the corpus: with it, mutated files get past the header's key wrap
/// as far as their bytes allow.
const GOLDEN_SECRET: &str = "xems-golden-vault-v1-test-secret";

/// A directory of this process for the fuzzed file.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xems-vault-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// Arbitrary bytes through every reader of the vault: the header decoder,
/// the decoders of authenticated frame contents (journal records, snapshot
/// blocks, end records), and a whole read-only open and replay of a vault
/// directory holding the bytes as one file. Errors are fine; panics are not.
pub fn entry(data: &[u8]) {
    let _ = format::Header::decode(data, "fuzz");
    let _ = codec::decode_journal(data);
    let _ = codec::decode_block(data, 0);
    let _ = codec::decode_block(data, u64::MAX);
    let _ = codec::decode_end(data);

    // The file's kind byte decides its name, so both readers are reached.
    let name =
        if data.get(10) == Some(&format::FileKind::Snapshot.byte()) { "snapshot.000002" } else { "journal.000002" };
    let dir = scratch();
    for entry in std::fs::read_dir(dir).expect("scratch directory").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    std::fs::write(dir.join(name), data).expect("write the fuzzed file");
    let secret = MasterSecret::parse(GOLDEN_SECRET).expect("a 32-byte secret");
    if let Err(e) = inspect(dir, VaultOptions::new(Keyring::new(secret))) {
        // Errors name a problem; they never echo file contents at length.
        assert!(e.to_string().len() < 4096, "error message of {} bytes", e.to_string().len());
    }
}
