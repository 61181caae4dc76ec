#!/usr/bin/env bash
# Tests plexus-wasm end to end; exits non-zero when any part fails.
#   1. native unit tests of the pure client logic (cargo test -p plexus-wasm);
#   2. headless-Chromium tests (wasm-bindgen-test) against a real genesis and
#      two real peers on loopback, plus a third peer killed after it joined;
#   3. the tab peer (plexus-wasm-peer): its native unit tests, then
#      headless-Chromium tests of PlexusPeer against a genesis with --relay
#      and a native peer on loopback (and a peer that never answers,
#      scripts/hanging-peer.py), and against a genesis on HTTPS (wss://)
#      whose test certificate Chromium trusts through its flags;
#   4. the npm package: wasm/build.sh, then a Node test that packs it, installs
#      the tarball into a temporary project and uses it as an npm user would,
#      and its optimised tab peer module in headless Chromium
#      (scripts/peer-module-test.py: join, a class, an object, a query).
# Installs what it needs (scripts/wasm-setup.sh --browser). The servers come
# from `cargo build -p plexus-genesis -p plexus-peer`, or from PLEXUS_GENESIS_BIN / PLEXUS_PEER_BIN.
# Usage: scripts/wasm-test.sh
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
work="$(mktemp -d -t plexus-wasm-test.XXXXXX)"
pids=()

say() { echo "wasm-test: $*" >&2; }
source "$root/scripts/lib.sh"
trap cleanup EXIT

bash scripts/wasm-setup.sh --browser || die "cannot install the wasm toolchain"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed for the Node test"

failed=()

say "native unit tests"
cargo test -p plexus-wasm || failed+=(native)

say "building the servers and the browser tests' dependencies"
cargo build -p plexus-genesis -p plexus-peer --bins || die "cannot build the servers"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
genesis_bin="${PLEXUS_GENESIS_BIN:-$target_dir/debug/plexus-genesis}"
peer_bin="${PLEXUS_PEER_BIN:-$target_dir/debug/plexus-peer}"
cargo test -p plexus-wasm --target wasm32-unknown-unknown --test browser --no-run || die "cannot build the browser tests"


# The browser tests' page writes to genesis (a registration): genesis lets
# that one origin write (--cors-origin); the test runner serves it there.
runner_port="$(free_port)"
"$genesis_bin" --listen 127.0.0.1:0 --peer-timeout 300s --cors-origin "http://127.0.0.1:$runner_port" >"$work/genesis.log" 2>&1 &
pids+=($!)
genesis="$(listening "$work/genesis.log" $!)" || die "genesis did not start"
say "genesis at $genesis"

# Starts peer NAME with one City called CITY, registered at GENESIS (default
# the first genesis); sets peer_url and peer_pid.
start_peer() {
  local name="$1" city="$2" at="${3:-$genesis}" url
  # Port 0: the OS picks it, and the peer tells genesis the one it got.
  "$peer_bin" --listen 127.0.0.1:0 --data "$work/$name" --genesis-url "$at" \
    --peer-name "$name" --ping-interval 1s >"$work/$name.log" 2>&1 &
  peer_pid=$!
  pids+=($peer_pid)
  url="$(listening "$work/$name.log" $peer_pid)" || die "peer $name did not start"
  peer_url="$url"
  curl -sf -X POST "$url/v1/schema/things" -H 'content-type: application/json' \
    -d '{"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]}' >/dev/null \
    || die "cannot add the City class to $name"
  curl -sf -X POST "$url/v1/things" -H 'content-type: application/json' \
    -d "{\"class\": \"City\", \"schema\": {\"name\": \"$city\"}}" >/dev/null \
    || die "cannot add $city to $name"
}

start_peer PeerA Amsterdam
peer_a="$peer_url"
start_peer PeerB Berlin
peer_b="$peer_url"
start_peer PeerDead Utrecht
dead_pid="$peer_pid"

# Wait until genesis lists all three with the hash of their schema (after a ping).
listed() {
  curl -sf "$genesis/peers" | python3 -c '
import json, sys
peers = {p["peerName"]: p for p in json.load(sys.stdin)}
sys.exit(0 if all(peers.get(n, {}).get("schema_hash") for n in ("PeerA", "PeerB", "PeerDead")) else 1)'
}
for _ in $(seq 1 100); do
  listed && break
  sleep 0.2
done
listed || die "genesis does not list PeerA, PeerB and PeerDead with their schema hashes: $(curl -s "$genesis/peers")"
kill -9 "$dead_pid"
say "peers at $peer_a and $peer_b; PeerDead (pid $dead_pid) killed after it joined"

say "browser tests (headless Chromium)"
CHROMEDRIVER=/usr/bin/chromedriver \
  PLEXUS_TEST_GENESIS="$genesis" PLEXUS_TEST_PEER_A="$peer_a" PLEXUS_TEST_PEER_B="$peer_b" \
  PLEXUS_TEST_DEAD_PEER=PeerDead \
  WASM_BINDGEN_TEST_ADDRESS="127.0.0.1:$runner_port" cargo test -p plexus-wasm --target wasm32-unknown-unknown --test browser || failed+=(browser)

say "tab peers (plexus-wasm-peer): native unit tests"
cargo test -p plexus-wasm-peer || failed+=(peer-native)

# A second genesis, with the relay, and one native peer in its network; the
# tab peers of the browser tests join it from the runner's page.
say "tab peers: headless Chromium against genesis --relay and a native peer"
peer_runner_port="$(free_port)"
"$genesis_bin" --listen 127.0.0.1:0 --relay --peer-timeout 300s \
  --cors-origin "http://127.0.0.1:$peer_runner_port" >"$work/relay-genesis.log" 2>&1 &
pids+=($!)
relay_genesis="$(listening "$work/relay-genesis.log" $!)" || die "the relay genesis did not start"
start_peer Native Amsterdam "$relay_genesis"
native="$peer_url"
native_listed() {
  curl -sf "$relay_genesis/peers" | python3 -c '
import json, sys
sys.exit(0 if any(p["peerName"] == "Native" and p.get("schema_hash") for p in json.load(sys.stdin)) else 1)'
}
for _ in $(seq 1 100); do
  native_listed && break
  sleep 0.2
done
native_listed || die "the relay genesis does not list Native with its schema hash"
# A genesis that lets another origin write: the runner's page may not register there.
"$genesis_bin" --listen 127.0.0.1:0 --relay --cors-origin "http://app.example" >"$work/closed-genesis.log" 2>&1 &
pids+=($!)
closed_genesis="$(listening "$work/closed-genesis.log" $!)" || die "the closed genesis did not start"
# A genesis on HTTPS, with the relay (wss://): a test CA and a certificate
# for 127.0.0.1 it signs. Chromium trusts that certificate only through a
# flag naming its key (the SHA-256 of its SubjectPublicKeyInfo), added to a
# copy of wasm-peer/webdriver.json.
command -v openssl >/dev/null || die "openssl is needed for the test certificates"
tls="$work/tls"
mkdir -p "$tls"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
{ openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 2 -subj "/CN=plexus wasm-test CA" &&
  openssl req "${ec[@]}" -keyout "$tls/genesis.key" -out "$tls/genesis.csr" -subj "/CN=127.0.0.1" &&
  openssl x509 -req -in "$tls/genesis.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext.cnf" -out "$tls/genesis.crt"; } >"$work/openssl.out" 2>&1 \
  || die "cannot make the test certificates: $(cat "$work/openssl.out")"
spki="$(openssl x509 -in "$tls/genesis.crt" -noout -pubkey | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)" || die "cannot hash the certificate's key"
python3 - "$root/wasm-peer/webdriver.json" "$work/webdriver.json" "$spki" <<'PY' || die "cannot write webdriver.json"
import json, sys
caps = json.load(open(sys.argv[1]))
caps["goog:chromeOptions"]["args"].append("--ignore-certificate-errors-spki-list=" + sys.argv[3])
json.dump(caps, open(sys.argv[2], "w"), indent=2)
PY
"$genesis_bin" --listen 127.0.0.1:0 --relay --peer-timeout 300s \
  --tls-cert "$tls/genesis.crt" --tls-key "$tls/genesis.key" --ca-file "$tls/ca.crt" \
  --cors-origin "http://127.0.0.1:$peer_runner_port" >"$work/tls-genesis.log" 2>&1 &
pids+=($!)
tls_genesis="$(listening "$work/tls-genesis.log" $!)" || die "the HTTPS genesis did not start"
[[ "$tls_genesis" == https://* ]] || die "the HTTPS genesis listens on $tls_genesis"
curl -sf --cacert "$tls/ca.crt" "$tls_genesis/peers" >/dev/null || die "the HTTPS genesis does not answer over TLS"
# A peer that never answers a query (scripts/hanging-peer.py), registered at
# the relay genesis (for the tab peer) and at the first (for the Node test),
# after the first genesis's browser tests.
python3 scripts/hanging-peer.py Hanging "$relay_genesis" "$genesis" >"$work/hanging.log" 2>&1 &
pids+=($!)
listening "$work/hanging.log" $! >/dev/null || die "the hanging peer did not start"
CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=180 \
  PLEXUS_TEST_RELAY_GENESIS="$relay_genesis" PLEXUS_TEST_NATIVE_PEER="$native" \
  PLEXUS_TEST_CLOSED_GENESIS="$closed_genesis" PLEXUS_TEST_TLS_GENESIS="$tls_genesis" \
  PLEXUS_TEST_HANGING_PEER=Hanging \
  WASM_BINDGEN_TEST_WEBDRIVER_JSON="$work/webdriver.json" \
  WASM_BINDGEN_TEST_ADDRESS="127.0.0.1:$peer_runner_port" \
  cargo test -p plexus-wasm-peer --target wasm32-unknown-unknown --test peer || failed+=(peer-browser)

say "npm package and Node test"
if bash wasm/build.sh; then
  PLEXUS_TEST_GENESIS="$genesis" PLEXUS_TEST_HANGING_PEER=Hanging node --test wasm/tests/node/ || failed+=(node)
  # The optimised tab peer module in Chromium, served from the origin the
  # relay genesis lets write (the runner that used it has exited).
  python3 scripts/peer-module-test.py wasm/pkg "$relay_genesis" "$peer_runner_port" || failed+=(peer-module)
else
  failed+=(build)
fi

if ((${#failed[@]})); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "native, browser and Node tests passed"
