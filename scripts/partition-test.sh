#!/usr/bin/env bash
# A network partition made with network namespaces, end to end.
#
# Creates two namespaces of its own joined by a veth pair on a private test
# subnet (10.251.77.0/30, used by nothing else; no address outside it is
# touched and the host's own interfaces and routes are left alone):
#   plx-g-$$: plexus-genesis and PeerC at 10.251.77.1
#   plx-p-$$: PeerA and PeerB at 10.251.77.2
# Then cuts the link (`ip link set ... down`) and asserts that genesis evicts
# PeerA and PeerB (and not PeerC), heals it and asserts that both register
# again with their data intact. Everything is removed on every exit (trap).
#
# Needs root and iproute2. Usage: scripts/partition-test.sh
# (PLEXUS_GENESIS_BIN / PLEXUS_PEER_BIN name the binaries; default: a debug build.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PLEXUS_GENESIS_BIN:-}" ] || [ -z "${PLEXUS_PEER_BIN:-}" ]; then
  cargo build -q -p plexus-genesis -p plexus-peer --bins
  PLEXUS_GENESIS_BIN=${PLEXUS_GENESIS_BIN:-target/debug/plexus-genesis}
  PLEXUS_PEER_BIN=${PLEXUS_PEER_BIN:-target/debug/plexus-peer}
fi

NS_G="plx-g-$$"
NS_P="plx-p-$$"
VETH_G="plxg$$"
VETH_P="plxp$$"
IP_G=10.251.77.1
IP_P=10.251.77.2
TIMEOUT_S=2          # genesis --peer-timeout
PING=300ms           # every peer's --ping-interval
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  # Anything else still running in our namespaces (nothing should be).
  for ns in "$NS_G" "$NS_P"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  ip netns del "$NS_G" 2>/dev/null || true
  ip netns del "$NS_P" 2>/dev/null || true
  ip link del "$VETH_G" 2>/dev/null || true
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then echo "partition-test: ok"; else echo "partition-test: FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

fail() { echo "partition-test: $*" >&2; exit 1; }
in_g() { ip netns exec "$NS_G" "$@"; }
in_p() { ip netns exec "$NS_P" "$@"; }

# --- namespaces and the link -------------------------------------------------
ip netns add "$NS_G"
ip netns add "$NS_P"
ip link add "$VETH_G" type veth peer name "$VETH_P"
ip link set "$VETH_G" netns "$NS_G"
ip link set "$VETH_P" netns "$NS_P"
in_g ip addr add "$IP_G/30" dev "$VETH_G"
in_p ip addr add "$IP_P/30" dev "$VETH_P"
for ns in "$NS_G" "$NS_P"; do ip netns exec "$ns" ip link set lo up; done
in_g ip link set "$VETH_G" up
in_p ip link set "$VETH_P" up

# --- processes ---------------------------------------------------------------
# Starts "$@" in the background with stdout to $WORK/$name.out and waits for
# its "listening on" line.
# "$@" must be an external command (`ip netns exec ...`, which execs the
# server), so that $! is the server's own pid.
start() {
  local name=$1; shift
  RUST_LOG=warn "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  disown $!
  for _ in $(seq 100); do
    grep -q '^listening on ' "$WORK/$name.out" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$WORK/$name.err" >&2
  fail "$name did not start"
}

GENESIS="http://$IP_G:8111"
start genesis ip netns exec "$NS_G" "$PLEXUS_GENESIS_BIN" --listen "$IP_G:8111" \
  --peer-timeout "${TIMEOUT_S}s" --broadcast-delay 5ms
peer() { # name namespace ip port
  start "$1" ip netns exec "$2" "$PLEXUS_PEER_BIN" --listen "$3:$4" --public-url "http://$3:$4" \
    --genesis-url "$GENESIS" --peer-name "$1" --ping-interval "$PING" --data "$WORK/$1"
}
peer PeerA "$NS_P" "$IP_P" 8081
peer PeerB "$NS_P" "$IP_P" 8082
peer PeerC "$NS_G" "$IP_G" 8083

names() { in_g curl -sf --max-time 2 "$GENESIS/peers" | jq -r '[.[].peerName] | sort | join(",")'; }
view() { # runner url -> names in that peer's view
  "$1" curl -sf --max-time 2 "$2/v1/network/peers" | jq -r '[.peers[].name] | sort | join(",")'
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls every 50 ms.
wait_for() {
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$deadline" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  fail "timed out after ${limit}s: $what"
}
is() { [ "$("${@:2}")" = "$1" ]; }

wait_for 15 "all three registered" is "PeerA,PeerB,PeerC" names
wait_for 5 "PeerC sees A and B" is "PeerA,PeerB" view in_g "http://$IP_G:8083"

# Data on the far side.
A="http://$IP_P:8081"
in_p curl -sf -X POST "$A/v1/schema/things" -H 'content-type: application/json' \
  -d '{"class":"City","properties":[{"name":"name","dataType":["string"]}]}' >/dev/null
for city in Amsterdam Utrecht Leiden; do
  in_p curl -sf -X POST "$A/v1/things" -H 'content-type: application/json' \
    -d "{\"class\":\"City\",\"schema\":{\"name\":\"$city\"}}" >/dev/null
done
cities() {
  "$1" curl -sf --max-time 2 -X POST "$2/v1/graphql" -H 'content-type: application/json' \
    -d "{\"query\":\"$3\"}" | jq -r "[$4[].name] | sort | join(\",\")"
}
LOCAL='{ Local { Get { Things { City { name } } } } }'
NETWORK='{ Network { Get { PeerA { Things { City { name } } } } } }'
wait_for 5 "PeerC can query PeerA" is "Amsterdam,Leiden,Utrecht" \
  cities in_g "http://$IP_G:8083" "$NETWORK" .data.Network.Get.PeerA.Things.City

# --- cut ---------------------------------------------------------------------
in_p ip link set "$VETH_P" down
cut_at=$(date +%s%N)
wait_for $(( TIMEOUT_S + 2 )) "genesis evicts PeerA and PeerB" is "PeerC" names
evicted_ms=$(( ($(date +%s%N) - cut_at) / 1000000 ))
echo "partition-test: far side evicted ${evicted_ms} ms after the cut (peer timeout ${TIMEOUT_S}s)"
wait_for 2 "PeerC is told" is "" view in_g "http://$IP_G:8083"
[ "$(names)" = "PeerC" ] || fail "PeerC was evicted too"

# --- heal --------------------------------------------------------------------
in_p ip link set "$VETH_P" up
healed_at=$(date +%s%N)
wait_for 5 "PeerA and PeerB register again" is "PeerA,PeerB,PeerC" names
back_ms=$(( ($(date +%s%N) - healed_at) / 1000000 ))
echo "partition-test: far side registered again ${back_ms} ms after the heal"
wait_for 5 "views converge" is "PeerA,PeerB" view in_g "http://$IP_G:8083"
wait_for 5 "PeerA sees B and C" is "PeerB,PeerC" view in_p "$A"
is "Amsterdam,Leiden,Utrecht" cities in_p "$A" "$LOCAL" .data.Local.Get.Things.City \
  || fail "PeerA lost data"
wait_for 5 "PeerC queries PeerA again" is "Amsterdam,Leiden,Utrecht" \
  cities in_g "http://$IP_G:8083" "$NETWORK" .data.Network.Get.PeerA.Things.City
