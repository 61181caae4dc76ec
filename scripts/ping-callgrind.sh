#!/usr/bin/env bash
# Instructions genesis executes per ping, keyless vs keyed, counted by
# valgrind's callgrind (apt-get install valgrind): unlike pings/s, the count
# hardly moves with the load of a shared machine, so two builds can be
# compared one after the other.
#
#   scripts/ping-callgrind.sh [GENESIS_BINARY]
#
# (default: $CARGO_TARGET_DIR or target, /release/plexus-genesis; build it and
# genesis-bench with `cargo build --release -p plexus-genesis -p plexus-bench`).
# genesis-bench starts the genesis under callgrind with instrumentation off,
# registers 1,000 keyless and 1,000 keyed peers, and runs its keyless then
# keyed closed loops; during each, this script counts 2.5 s of genesis's
# instructions and its pings (from /metrics). Under valgrind the CPU's
# SHA-256 instructions are hidden, so sha2 runs its software rounds: their
# share is printed apart (natively they take SHA-NI's far fewer cycles).
set -euo pipefail

target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
genesis="$(realpath "${1:-$target/plexus-genesis}")"
bench="$target/genesis-bench"
for tool in valgrind callgrind_control callgrind_annotate curl ss; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind curl iproute2)" >&2; exit 1; }
done
[ -x "$bench" ] || { echo "build $bench first" >&2; exit 1; }

work="$(mktemp -d)"
trap 'kill "${run:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
. "$(dirname "$0")/ping-lib.sh"
bench_under_callgrind "$work" "$genesis" --peers 1000 --keyed-peers 1000 --duration 8s \
    --broadcast-delay 1h --rounds 1

# Counts 2.5 s of the phase that is running: its pings, and a dump named $1.
measure() {
    callgrind_control -i on "$pid" >/dev/null 2>&1
    sleep 0.3
    callgrind_control -z "$pid" >/dev/null 2>&1
    local before
    before="$(pings)"
    sleep 2.5
    echo "$1 $(($(pings) - before))" >>"$work/pings.txt"
    callgrind_control -d "$1" "$pid" >/dev/null 2>&1
    callgrind_control -i off "$pid" >/dev/null 2>&1
}
sleep 0.8
measure keyless
until grep -q "keyless (" "$work/bench.txt"; do sleep 0.05; done
sleep 0.8
measure keyed
wait "$run"

for phase in keyless keyed; do
    pings="$(awk -v p="$phase" '$1 == p {print $2}' "$work/pings.txt")"
    dump="$(grep -l "^desc: Trigger: .*$phase" "$work"/cg.out.* | head -1)"
    callgrind_annotate --threshold=100 "$dump" 2>/dev/null | awk -v n="$pings" -v p="$phase" '
        /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
        /sha2::sha256::/ { gsub(",", "", $1); sha += $1 }
        END { printf "%s: %d pings, %.0f instructions per ping, of which software SHA-256 %.0f, the rest %.0f\n",
                     p, n, total / n, sha / n, (total - sha) / n }'
done
