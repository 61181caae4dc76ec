#!/usr/bin/env bash
# Side-by-side benchmark of plexus-genesis and etcd 3.4, in one run on this
# machine, and the join-propagation and memory figures. Not run by CI (it
# takes minutes); prints a Markdown section and appends it to BENCHMARKS.md.
#
# Usage: scripts/bench.sh            (RUNS=3 KEYS=10000 JOIN_PEERS=10000 RSS_PEERS=100000)
#        RUNS=1 KEYS=1000 JOIN_PEERS=1000 RSS_PEERS=10000 scripts/bench.sh   (quick)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
KEYS=${KEYS:-10000}                # registered peers / granted leases
CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-5s}
JOIN_PEERS=${JOIN_PEERS:-10000}
JOIN_DELAY=${JOIN_DELAY:-10ms}      # genesis --broadcast-delay for the join run (its default)
RSS_PEERS=${RSS_PEERS:-100000}
WRITE=${WRITE:-1}                  # append the section to BENCHMARKS.md

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! command -v etcd >/dev/null; then
  log "installing etcd-server (Debian package, etcd 3.4)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
fi
command -v jq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null

log "building (release)"
cargo build -q --release -p plexus-genesis -p plexus-bench --bins
GENESIS_BIN=target/release/plexus-genesis
LOAD=target/release/plexus-load

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

source scripts/lib.sh

# start_genesis ARGS...: sets GENESIS_URL and GENESIS_PID.
start_genesis() {
  : >"$WORK/g.out"
  # All load comes from 127.0.0.1: the per-address rate limit is off.
  "$GENESIS_BIN" --listen 127.0.0.1:0 --peer-timeout 1h --rate-limit 0 "$@" >"$WORK/g.out" 2>"$WORK/g.err" &
  GENESIS_PID=$!
  PIDS+=("$GENESIS_PID")
  for _ in $(seq 100); do
    GENESIS_URL=$(sed -n 's/^listening on //p' "$WORK/g.out")
    [ -n "$GENESIS_URL" ] && return 0
    sleep 0.05
  done
  cat "$WORK/g.err" >&2; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# start_etcd: sets ETCD_URL and ETCD_PID.
start_etcd() {
  local client peer
  client=$(free_port); peer=$(free_port)
  etcd --name bench --data-dir "$WORK/etcd-$RANDOM" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$WORK/etcd.log" 2>&1 &
  ETCD_PID=$!
  PIDS+=("$ETCD_PID")
  ETCD_URL="http://127.0.0.1:$client"
  for _ in $(seq 200); do
    curl -sf "$ETCD_URL/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  cat "$WORK/etcd.log" >&2; exit 1
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: >"$WORK/genesis.jsonl"; : >"$WORK/etcd.jsonl"; : >"$WORK/join.jsonl"; : >"$WORK/rss.jsonl"
for run in $(seq "$RUNS"); do
  log "run $run/$RUNS: genesis, $KEYS peers, $CONCURRENCY workers, $DURATION"
  start_genesis --broadcast-delay 1h   # no rounds: they would only add noise to the ping figures
  "$LOAD" pings --genesis "$GENESIS_URL" --keys "$KEYS" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --rss-pid "$GENESIS_PID" | tee -a "$WORK/genesis.jsonl"
  stop "$GENESIS_PID"

  log "run $run/$RUNS: etcd 3.4, $KEYS leases, $CONCURRENCY workers, $DURATION"
  start_etcd
  "$LOAD" pings --etcd "$ETCD_URL" --keys "$KEYS" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" | tee -a "$WORK/etcd.jsonl"
  stop "$ETCD_PID"

  log "run $run/$RUNS: a join reaching $JOIN_PEERS fake peers (broadcast-delay $JOIN_DELAY)"
  "$LOAD" join --genesis-bin "$GENESIS_BIN" --broadcast-delay "$JOIN_DELAY" \
    --peers "$JOIN_PEERS" --joins 3 | tee -a "$WORK/join.jsonl"
done

log "genesis memory with $RSS_PEERS peers (one run: it is deterministic enough)"
start_genesis --broadcast-delay 1h   # the registry itself, without the buffers of a round
"$LOAD" pings --genesis "$GENESIS_URL" --keys "$RSS_PEERS" --concurrency 4 --duration 1s \
  --rss-pid "$GENESIS_PID" | tee -a "$WORK/rss.jsonl"
stop "$GENESIS_PID"

g_rate=$(jq .ops_per_s "$WORK/genesis.jsonl" | median)
g_p50=$(jq .p50_ms "$WORK/genesis.jsonl" | median)
g_p99=$(jq .p99_ms "$WORK/genesis.jsonl" | median)
g_err=$(jq .errors "$WORK/genesis.jsonl" | awk '{s+=$1} END {print s}')
g_rss=$(jq .rss_kib "$WORK/genesis.jsonl" | median)
e_rate=$(jq .ops_per_s "$WORK/etcd.jsonl" | median)
e_p50=$(jq .p50_ms "$WORK/etcd.jsonl" | median)
e_p99=$(jq .p99_ms "$WORK/etcd.jsonl" | median)
e_err=$(jq .errors "$WORK/etcd.jsonl" | awk '{s+=$1} END {print s}')
ratio=$(awk -v g="$g_rate" -v e="$e_rate" 'BEGIN {printf "%.2f", g / e}')
j_max=$(jq '.joins[].join_ms_max' "$WORK/join.jsonl" | median)
j_p50=$(jq '.joins[].join_ms_p50' "$WORK/join.jsonl" | median)
j_seen=$(jq '.joins[].seen' "$WORK/join.jsonl" | sort -n | head -1)
rss=$(jq .rss_kib "$WORK/rss.jsonl" | median)
etcd_version=$(etcd --version | head -1)

section=$(cat <<MD

## Side by side: genesis pings vs etcd 3.4 lease keep-alives; join propagation; memory

Command: \`RUNS=$RUNS KEYS=$KEYS JOIN_PEERS=$JOIN_PEERS RSS_PEERS=$RSS_PEERS scripts/bench.sh\`
($(date -u +%Y-%m-%d), $(nproc)-core $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) machine, shared with other builds;
$etcd_version from Debian's \`etcd-server\`). Not run by CI: it takes minutes.
Medians of $RUNS runs.

Both servers are driven by \`plexus-load\` (one reqwest HTTP/1.1 client, JSON
bodies), $CONCURRENCY closed-loop workers, $DURATION after a 0.5 s warm-up,
on loopback. Genesis (release build, in memory): $KEYS registered peers,
\`POST /peers/{id}/ping {"schemaHash":""}\`. etcd: $KEYS leases granted with
\`POST /v3/lease/grant {"TTL":300}\`, then \`POST /v3/lease/keepalive {"ID":…}\`
on its JSON gRPC gateway (single member, \`--data-dir\` in a temp folder).

| server | ops/s | p50 | p99 | errors |
|---|---:|---:|---:|---:|
| plexus-genesis, $KEYS peers, pings | $g_rate | $g_p50 ms | $g_p99 ms | $g_err |
| etcd 3.4, $KEYS leases, keep-alives | $e_rate | $e_p50 ms | $e_p99 ms | $e_err |
| **ratio genesis / etcd** | **${ratio}×** | | | |

Join propagation: $JOIN_PEERS fake peers played by one process (one axum
server answering \`/p{i}/p2p/ping\` and \`PUT /p{i}/p2p/genesis\`, registered
with \`x-plexus-deltas: 1\`). They are registered with broadcasts off
(bootstrapping N peers is N whole lists, N² entries, by nature), then genesis
restarts from its \`--state\` with \`--broadcast-delay $JOIN_DELAY\`; one
more peer registers, and the time is taken from the start of its
\`POST /peers/register\` until each fake peer has received a push naming it.
3 joins per run.

| what | median |
|---|---:|
| join in every one of $JOIN_PEERS views (slowest view) | $j_max ms |
| join in half of the views | $j_p50 ms |
| views that got it (fewest in any join) | $j_seen of $JOIN_PEERS |

Memory: genesis VmRSS (in memory, broadcasts off) with $KEYS peers: $g_rss KiB; with $RSS_PEERS peers: $rss KiB.
MD
)
echo "$section"
if [ "$WRITE" = 1 ]; then
  echo "$section" >>BENCHMARKS.md
  log "appended to BENCHMARKS.md"
fi
