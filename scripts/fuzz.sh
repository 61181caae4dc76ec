#!/usr/bin/env bash
# Runs every cargo-fuzz target of plexus-core for a bounded time each
# (FUZZ_SECONDS, default 15), starting from the corpus kept in
# core/fuzz/corpus/. Longer on demand: FUZZ_SECONDS=600 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../core"
seconds=${FUZZ_SECONDS:-15}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet || cargo install cargo-fuzz --quiet
# cargo-fuzz passes -Z flags (sanitizers); this machine has the stable
# toolchain only, whose sanitizer runtimes are shipped with it.
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "==> fuzz $target for ${seconds}s"
  # New inputs go to a scratch folder so that a run leaves the kept corpus as it is.
  scratch=$(mktemp -d)
  log="$scratch.log"
  if ! cargo fuzz run "$target" "$scratch" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target crashed; the input is under core/fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^#[0-9]+ *DONE" "$log" || tail -2 "$log"
  rm -rf "$scratch" "$log"
done
echo "fuzz: every target ran ${seconds}s without a crash"
