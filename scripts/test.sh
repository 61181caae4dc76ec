#!/usr/bin/env bash
# Runs every check and test of Plexus, after installing what they need.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

bash scripts/setup.sh

log "format"
cargo fmt --all --check

log "lints"
cargo clippy --workspace --all-targets --all-features -- -D warnings

log "plexus-core builds for wasm32-unknown-unknown"
cargo build -p plexus-core --target wasm32-unknown-unknown

log "binaries (the end-to-end tests spawn plexus-genesis and plexus-peer)"
cargo build --workspace --bins

log "wasm modules (the dashboard's devnet test fetches the demo app they belong to)"
bash wasm/build.sh

log "native tests (core, engine, genesis, peer, end to end, dashboard)"
cargo test --workspace --all-features

log "GraphQL tools against a real peer (graphql-js client schema, graphql-http audits)"
(cd server/e2e/graphql-tools \
  && PLEXUS_PEER_BIN="${PLEXUS_PEER_BIN:-$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/plexus-peer}" \
    node --test)

log "fuzz every core parser for a bounded time"
FUZZ_SECONDS=${FUZZ_SECONDS:-15} bash scripts/fuzz.sh

if [ -x scripts/wasm-test.sh ]; then
  log "browser and Node tests of the wasm client"
  bash scripts/wasm-test.sh
fi

log "all tests passed"
