#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need when it is
# missing (Debian packages; run as root or with sudo), then checks formatting,
# lints, docs, every test (under TRACE log capture, then a scan of every
# captured line for leaks), and smoke-runs every benchmark in quick mode.
#
#   ./scripts/test.sh            everything
#   XEMS_SKIP_BENCH=1 ./scripts/test.sh   everything but the quick benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests start for real (a missing one is installed here;
# the tests themselves fail with a message naming it rather than skip).
need_packages=()
need() { command -v "$1" >/dev/null 2>&1 || need_packages+=("$2"); }
# xems-redis's tests, the portal's and the server's Redis tests, xems-bench's service
# tests and its `server`, `vault` and `redis` benchmarks start Redis.
need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools
# The portal's browser test (crates/xems-portal/tests/browser.rs).
need chromium chromium
need chromedriver chromium-driver
if ((${#need_packages[@]})); then
  step "installing ${need_packages[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_packages[@]}"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (every log line captured at TRACE)"
# Every test binary, and every xems / xems-portal process a test starts, logs
# at TRACE into this directory (crates/xems-testkit/src/logs.rs); then
# xems-logscan fails on any token-shaped string, test secret or leak marker
# in any line, and on a capture too thin to prove anything.
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
log_dir="$target_dir/test-logs"
rm -rf "$log_dir"
mkdir -p "$log_dir"
XEMS_TEST_LOG_DIR="$log_dir" cargo test --workspace --all-features

step "scan of the captured logs: no token, secret or marker"
cargo run -q -p xems-testkit --bin xems-logscan -- "$log_dir"

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

if [ -z "${XEMS_SKIP_BENCH:-}" ] && [ -d crates/xems-bench ]; then
  step "benchmarks, quick mode (smoke: they must run and print RESULT)"
  # `server` drives the real `xems` binary from the same target directory.
  cargo build -q --release -p xems-server
  for bench in $(cargo run -q --release -p xems-bench -- list 2>/dev/null || echo engine); do
    out=$(cargo run -q --release -p xems-bench -- "$bench" --quick)
    echo "$out" | tail -n 1 | grep -q '^RESULT {' || { echo "bench $bench printed no RESULT line"; exit 1; }
    echo "$out" | tail -n 1
  done
fi

step "all tests passed"
