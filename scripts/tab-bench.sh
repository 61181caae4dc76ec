#!/usr/bin/env bash
# The tab peer's budget measured in headless Chromium (wasm-peer/tests/bench.rs):
#   join to listed (median, max; budget <= 1 s on loopback), and a Network Get
#   sent to a native peer and answered by a browser tab vs by another native
#   peer holding the same objects, interleaved in one run (medians and ratio;
#   budget <= 3x).
# Builds plexus-genesis and plexus-peer in release and the test in release,
# starts genesis --relay, Querier and Holder on ports the OS picks, runs the
# ignored bench test and prints its figures. Everything it starts is stopped
# on exit. Installs what it needs (scripts/wasm-setup.sh --browser).
# Usage: scripts/tab-bench.sh [--joins N] [--runs N] [--objects N]
#   (defaults 30, 200, 20)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
joins=30 runs=200 objects=20
while (($#)); do
  case "$1" in
    --joins) joins="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --objects) objects="$2"; shift 2 ;;
    *) echo "usage: $0 [--joins N] [--runs N] [--objects N]" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d -t plexus-tab-bench.XXXXXX)"
pids=()
say() { echo "tab-bench: $*" >&2; }
source "$root/scripts/lib.sh"
trap cleanup EXIT

bash scripts/wasm-setup.sh --browser || die "cannot install the wasm toolchain"
CARGO_INCREMENTAL=0 cargo build --release -p plexus-genesis -p plexus-peer --bins || die "cannot build the servers"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
genesis_bin="$target_dir/release/plexus-genesis"
peer_bin="$target_dir/release/plexus-peer"


runner_port="$(free_port)"
# --rate-limit 0: the joins are many writes from one address in a short time.
"$genesis_bin" --listen 127.0.0.1:0 --relay --peer-timeout 60s --rate-limit 0 \
  --cors-origin "http://127.0.0.1:$runner_port" >"$work/genesis.log" 2>&1 &
pids+=($!)
genesis="$(listening "$work/genesis.log" $!)" || die "genesis did not start"

start_peer() {
  local name="$1"
  # Port 0: the OS picks it, and the peer tells genesis the one it got.
  "$peer_bin" --listen 127.0.0.1:0 --data "$work/$name" --genesis-url "$genesis" \
    --peer-name "$name" --ping-interval 1s >"$work/$name.log" 2>&1 &
  pids+=($!)
  peer_url="$(listening "$work/$name.log" $!)" || die "peer $name did not start"
}
start_peer Querier
querier="$peer_url"
start_peer Holder
holder="$peer_url"
curl -sf -X POST "$holder/v1/schema/things" -H 'content-type: application/json' \
  -d '{"class": "City", "properties": [{"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}' \
  >/dev/null || die "cannot add the City class to Holder"
for i in $(seq 0 $((objects - 1))); do
  curl -sf -X POST "$holder/v1/things" -H 'content-type: application/json' \
    -d "{\"class\": \"City\", \"schema\": {\"name\": \"City $i\", \"population\": $i}}" >/dev/null \
    || die "cannot add City $i to Holder"
done
say "genesis $genesis, Querier $querier, Holder $holder ($objects Cities)"

CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=600 \
  PLEXUS_BENCH_GENESIS="$genesis" PLEXUS_BENCH_QUERIER="$querier" PLEXUS_BENCH_OBJECTS="$objects" \
  PLEXUS_BENCH_JOINS="$joins" PLEXUS_BENCH_RUNS="$runs" WASM_BINDGEN_TEST_ADDRESS="127.0.0.1:$runner_port" \
  cargo test --release -p plexus-wasm-peer --target wasm32-unknown-unknown --test bench -- --include-ignored --nocapture \
  >"$work/bench.out" 2>&1
status=$?
grep -h "^tab-bench:" "$work/bench.out" || true
((status == 0)) || { tail -40 "$work/bench.out" >&2; die "the bench test failed"; }
