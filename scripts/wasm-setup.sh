#!/usr/bin/env bash
# Installs what building and testing plexus-wasm needs, skipping what is there:
#   the wasm32-unknown-unknown target, wasm-bindgen-cli at the version of the
#   wasm-bindgen crate, and binaryen's wasm-opt from npm (the `binaryen`
#   package pinned with its hash in wasm/tools/package-lock.json: a wasm
#   build run by Node, installed in seconds; Debian's binaryen 108 breaks the
#   tab peer's closures); with --browser also chromium and chromium-driver.
#   Idempotent; safe to run on every build.
# Usage: scripts/wasm-setup.sh [--browser]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
browser=0
[[ "${1:-}" == "--browser" ]] && browser=1

say() { echo "wasm-setup: $*" >&2; }

# The wasm-bindgen version pinned in wasm/Cargo.toml (`=X.Y.Z`): the CLI must match it.
bindgen_version="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$root/wasm/Cargo.toml")"
if [[ -z "$bindgen_version" ]]; then
  say "cannot read the pinned wasm-bindgen version from wasm/Cargo.toml"
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

export PATH="$HOME/.cargo/bin:$PATH"
have_bindgen="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
have_runner="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_bindgen" != "$bindgen_version" || "$have_runner" != "$bindgen_version" ]]; then
  say "installing wasm-bindgen-cli $bindgen_version (had: ${have_bindgen:-none})"
  # --locked first; the registry may lack a locked dependency, so retry without it.
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked \
    || cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# wasm/build.sh runs this wasm-opt (wasm/tools/node_modules/.bin/wasm-opt),
# not one on the PATH. npm ci installs exactly the locked version; it runs
# again when the lock file is newer than what it installed.
tools="$root/wasm/tools"
if [[ ! -x "$tools/node_modules/.bin/wasm-opt" || "$tools/package-lock.json" -nt "$tools/node_modules" ]]; then
  command -v npm >/dev/null || { say "npm is needed for binaryen's wasm-opt"; exit 1; }
  say "installing binaryen's wasm-opt with npm ci ($tools)"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$tools/node_modules"
fi

packages=()
if [[ $browser == 1 ]]; then
  [[ -x /usr/bin/chromium ]] || packages+=(chromium)
  [[ -x /usr/bin/chromedriver ]] || packages+=(chromium-driver)
fi
if ((${#packages[@]})); then
  say "installing ${packages[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
