#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   ./scripts/fuzz.sh            60 seconds per target
#   ./scripts/fuzz.sh 600        ten minutes per target
#   ./scripts/fuzz.sh 60 vault   one target
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install
# nightly`, `cargo install cargo-fuzz`). Each target starts from its committed
# corpus in fuzz/corpus/<target>/ and adds what it finds there; a crash
# leaves its input in fuzz/artifacts/<target>/ and stops the script. Commit
# the interesting new corpus files (and every crashing input, once fixed):
# the stable test suite replays the corpora (tests/fuzz_corpus.rs of each
# crate), so CI keeps exercising them without nightly.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

for t in "${targets[@]}"; do
  printf '\n==> fuzzing %s for %ss\n' "$t" "$seconds"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 -print_final_stats=1
done
printf '\n==> no crash in %s\n' "${targets[*]}"
