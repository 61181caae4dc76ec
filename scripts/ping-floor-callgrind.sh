#!/usr/bin/env bash
# Instructions per keyless ping of genesis and of the do-nothing floor under
# the same load (wrk -t2 -c32, the Lua script of scripts/ping-floor.sh),
# counted by valgrind's callgrind: the count hardly moves with the machine's
# load, so builds can be compared one after the other, and the two sides
# differ only in the server (scripts/ping-callgrind.sh loads genesis with
# genesis-bench's reqwest client, whose requests carry more headers).
#
#   scripts/ping-floor-callgrind.sh [GENESIS_BINARY]
#
# (default: $CARGO_TARGET_DIR or target, /release/plexus-genesis). Needs
# valgrind, wrk, curl and ss, and release builds of genesis-bench and of the
# floor:
#   cargo build --release -p plexus-genesis -p plexus-bench
#   cargo build --release -p plexus-server --example nothing
# With KEEP=1 the profiles are kept (their paths are printed) for
# callgrind_annotate.
set -euo pipefail
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
genesis="$(realpath "${1:-$target/plexus-genesis}")"
bench="$target/genesis-bench"
floor_bin="$target/examples/nothing"
for tool in valgrind callgrind_control callgrind_annotate wrk curl ss; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind wrk curl iproute2)" >&2; exit 1; }
done
for bin in "$bench" "$floor_bin"; do [ -x "$bin" ] || { echo "build $bin first" >&2; exit 1; }; done
work="$(mktemp -d)"
trap 'kill "${floor_pid:-}" "${run:-}" 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
. "$(dirname "$0")/ping-lib.sh"
ping_lua "$work/ping.lua"
total() { callgrind_annotate "$(ls "$work/$1".* | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; }

# The floor: warmed up, then 3 s of wrk counted.
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/floor.out" \
    "$floor_bin" 127.0.0.1:0 >"$work/floor.txt" 2>"$work/floor.err" &
floor_pid=$!
until grep -q "listening on" "$work/floor.txt"; do sleep 0.1; done
url="$(sed 's/listening on //' "$work/floor.txt")"
wrk -t2 -c32 -d1s -s "$work/ping.lua" "$url" >/dev/null 2>&1
callgrind_control -i on "$floor_pid" >/dev/null 2>&1
callgrind_control -z "$floor_pid" >/dev/null 2>&1
wrk -t2 -c32 -d3s -s "$work/ping.lua" "$url" >"$work/wrk.txt"
callgrind_control -d floor "$floor_pid" >/dev/null 2>&1
kill "$floor_pid"
wait "$floor_pid" 2>/dev/null || true
floor_requests="$(awk '/requests in/ {print $1}' "$work/wrk.txt")"

# Genesis: 1,000 registered peers, pinged by genesis-bench's wrk phase; 3 s
# of it counted against genesis's own count of pings.
bench_under_callgrind "$work" "$genesis" --peers 1000 --duration 8s --broadcast-delay 1h \
    --wrk-threads 2 --wrk-connections 32 --no-reqwest
sleep 1.5
callgrind_control -i on "$pid" >/dev/null 2>&1
sleep 0.3
callgrind_control -z "$pid" >/dev/null 2>&1
before="$(pings)"
sleep 3
genesis_pings="$(($(pings) - before))"
callgrind_control -d wrk "$pid" >/dev/null 2>&1
callgrind_control -i off "$pid" >/dev/null 2>&1
wait "$run" || true

awk -v f="$(total floor.out)" -v fn="$floor_requests" -v g="$(total cg.out)" -v gn="$genesis_pings" 'BEGIN {
    printf "floor: %d requests, %.0f instructions per request\n", fn, f / fn
    printf "genesis: %d pings, %.0f instructions per ping (%.2fx the floor)\n", gn, g / gn, (g / gn) / (f / fn)
}'
