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
# genesis. Each figure is pings/s, then the server's own CPU per request
# (from /proc; the load generator shares the machine, so pings/s also
# counts how much of it wrk takes). Needs wrk (apt-get install wrk), and
# release builds of genesis-bench and of the floor:
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

. "$(dirname "$0")/ping-lib.sh"
ping_lua "$work/ping.lua"

"$floor_bin" 127.0.0.1:0 >"$work/floor.out" &
floor_pid=$!
until grep -q "listening on" "$work/floor.out"; do sleep 0.05; done
floor_url="$(sed 's/listening on //' "$work/floor.out")"

# CPU ticks (10 ms) of process $1, user and system: the fields after the
# command's closing parenthesis.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
n=0
for genesis in "$@"; do n=$((n + 1)); echo "g$n = $genesis"; done
echo "each: pings/s (x the floor's), server CPU µs per request (floor's / its)"
for round in $(seq "$rounds"); do
    before="$(ticks "$floor_pid")"
    wrk -t2 -c32 -d5s -s "$work/ping.lua" "$floor_url" >"$work/wrk.txt"
    floor="$(awk '/Requests\/sec/{print $2}' "$work/wrk.txt")"
    floor_cpu="$(awk -v t="$(($(ticks "$floor_pid") - before))" \
        '/requests in/{printf "%.2f", t * 10000 / $1}' "$work/wrk.txt")"
    line="round $round (load $(cut -d' ' -f1 /proc/loadavg)): floor $floor req/s, $floor_cpu µs"
    n=0
    for genesis in "$@"; do
        n=$((n + 1))
        "$bench" --genesis "$genesis" --peers 1000 --duration 5s --broadcast-delay 1h \
            --wrk-threads 2 --wrk-connections 32 --no-reqwest >"$work/bench.txt" 2>/dev/null
        pings="$(awk '/Requests\/sec/{print $2}' "$work/bench.txt")"
        cpu="$(sed -n 's/.*genesis CPU \([0-9.]*\) µs\/ping.*/\1/p' "$work/bench.txt")"
        line="$line | g$n $pings ($(ratio "$pings" "$floor")x), $cpu µs ($(ratio "$floor_cpu" "$cpu")x)"
    done
    echo "$line"
done
