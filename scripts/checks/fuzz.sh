#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for a bounded time. cargo fuzz needs
# nightly compiler flags; this machine has one stable toolchain, so the
# flags are unlocked with RUSTC_BOOTSTRAP=1 (documented in docs/SECURITY.md).
set -euo pipefail
seconds=${FUZZ_SECONDS:-30}
root="$(cd "$(dirname "$0")/../.." && pwd)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
cd "$root/fuzz"
for target in $(cargo fuzz list --fuzz-dir .); do
  echo "--- fuzzing $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$root/target/fuzz" \
    cargo fuzz run "$target" --fuzz-dir . -- -max_total_time="$seconds" 2>&1 | tail -n 3
done
