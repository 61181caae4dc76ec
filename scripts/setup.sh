#!/usr/bin/env bash
# Installs what building and testing Plexus needs on a fresh machine of the
# project's kind (Debian + rustup). Each step is skipped when already done.
set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

log "Rust components and the wasm target"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null

missing=()
command -v tmux >/dev/null || missing+=(tmux)
# scripts/wasm-test.sh makes the HTTPS genesis's test certificates with openssl.
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# The replica tests run etcd (etcd-client's build needs no protoc: scripts/protoc).
command -v etcd >/dev/null || missing+=(etcd-server)
# The GraphQL tools test (server/e2e/graphql-tools) runs on Node.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  log "Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock 2>/dev/null || true)
if [ -n "$want" ] && ! wasm-bindgen --version 2>/dev/null | grep -q " $want\$"; then
  log "wasm-bindgen-cli $want"
  # --locked can fail when the registry lacks a crate of the CLI's own lock
  # file; the CLI's own version is pinned either way.
  cargo install wasm-bindgen-cli --version "$want" --locked --quiet \
    || cargo install wasm-bindgen-cli --version "$want" --quiet
fi

# binaryen's wasm-opt (npm, the version wasm/tools/package-lock.json pins)
# and the rest of the wasm toolchain.
bash "$(dirname "$0")/wasm-setup.sh"

# graphql-js and graphql-http for the GraphQL tools test, as locked.
tools="$(cd "$(dirname "$0")/.." && pwd)/server/e2e/graphql-tools"
if [ ! -d "$tools/node_modules" ] || [ "$tools/package-lock.json" -nt "$tools/node_modules" ]; then
  log "npm packages of $tools"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
