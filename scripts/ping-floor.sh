#!/usr/bin/env bash
# Keyless pings/s of one or more genesis binaries against the do-nothing
# floor (an axum server that answers 200 and does nothing), side by side in
# one run, in turn, ROUNDS times (the machine may be shared: compare the
# ratios of one round, not figures of different runs).
#
#   scripts/ping-floor.sh [ROUNDS] GENESIS_BINARY...
#
# Each round: wrk -t2 -c32 -d5s against the floor (the same Lua script as
# the pings, cycling 1,000 ids), then genesis-bench --peers 1000 (keyless,
# an unchanging schema hash, every limit at its default but --rate-limit,
# which the bench turns off: its load comes from one address) with each
# genesis. Needs wrk (apt-get install wrk), and release builds of
# genesis-bench and of the floor:
#   cargo build --release -p plexus-bench --bin genesis-bench
#   cargo build --release -p plexus-server --example nothing
set -euo pipefail
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
bench="${GENESIS_BENCH:-$target/genesis-bench}"
floor_bin="${FLOOR:-$target/examples/nothing}"
rounds=3
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [ROUNDS] GENESIS_BINARY..." >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${floor_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

{
    echo 'local ids = {'
    for _ in $(seq 1000); do echo "\"$(cat /proc/sys/kernel/random/uuid)\","; done
    echo '}'
    echo 'local i = 0'
    echo 'local headers = {["Content-Type"] = "application/json"}'
    echo 'request = function()'
    echo '  i = i + 1'
    echo '  return wrk.format("POST", "/peers/" .. ids[(i % #ids) + 1] .. "/ping", headers, '"'"'{"schemaHash":""}'"'"')'
    echo 'end'
} >"$work/ping.lua"

"$floor_bin" 127.0.0.1:0 >"$work/floor.out" &
floor_pid=$!
until grep -q "listening on" "$work/floor.out"; do sleep 0.05; done
floor_url="$(sed 's/listening on //' "$work/floor.out")"

rate() { awk '/Requests\/sec/{print $2}'; }
n=0
for genesis in "$@"; do n=$((n + 1)); echo "g$n = $genesis"; done
for round in $(seq "$rounds"); do
    floor="$(wrk -t2 -c32 -d5s -s "$work/ping.lua" "$floor_url" | rate)"
    line="round $round (load $(cut -d' ' -f1 /proc/loadavg)): floor $floor req/s"
    n=0
    for genesis in "$@"; do
        n=$((n + 1))
        pings="$("$bench" --genesis "$genesis" --peers 1000 --duration 5s --broadcast-delay 1h \
            --wrk-threads 2 --wrk-connections 32 --no-reqwest 2>/dev/null | rate)"
        line="$line | g$n $pings ($(awk -v p="$pings" -v f="$floor" 'BEGIN{printf "%.2f", p/f}')x)"
    done
    echo "$line"
done
