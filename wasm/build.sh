#!/usr/bin/env bash
# Builds the npm package of plexus-wasm into wasm/pkg/:
#   web/   ES module for browsers and bundlers (index.js initialises itself)
#   node/  ES module for Node.js (reads the .wasm beside it)
#   peer/  ES module for browsers: the tab peer (plexus-wasm-peer: PlexusPeer,
#          with NetworkClient and the rest of the client), "plexus-wasm/peer"
#   package.json, README.md
# Installs what it needs first (scripts/wasm-setup.sh), builds with the
# workspace profile wasm-release, runs wasm-opt -Oz and then wasm-bindgen
# once per target, and prints the gzipped size of each .wasm (the query
# client's budget is 250 KiB and fails the build; the peer module's planned
# 640 KiB only warns). The two modules are built
# by separate cargo runs, so the peer's dependencies never reach the client.
# Usage: wasm/build.sh            (from anywhere)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
pkg="$here/pkg"
name=plexus_wasm
peer_name=plexus_wasm_peer
budget_kib=250
peer_budget_kib=640
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export PATH="$HOME/.cargo/bin:$PATH"

bash "$root/scripts/wasm-setup.sh"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"

echo "build.sh: cargo build (wasm-release, wasm32-unknown-unknown)" >&2
# Symbols stay in until wasm-bindgen has read the target features; wasm-opt strips them.
CARGO_PROFILE_WASM_RELEASE_STRIP=false cargo build --manifest-path "$root/Cargo.toml" -p plexus-wasm \
  --target wasm32-unknown-unknown --profile wasm-release
CARGO_PROFILE_WASM_RELEASE_STRIP=false cargo build --manifest-path "$root/Cargo.toml" -p plexus-wasm-peer \
  --target wasm32-unknown-unknown --profile wasm-release
wasm="$target_dir/wasm32-unknown-unknown/wasm-release/$name.wasm"
peer_wasm="$target_dir/wasm32-unknown-unknown/wasm-release/$peer_name.wasm"

rm -rf "$pkg"
mkdir -p "$pkg/web" "$pkg/node" "$pkg/peer"
# wasm-opt runs before wasm-bindgen: Debian's binaryen (108) points the
# export of the externref table that wasm-bindgen adds at the function table
# when it optimises the module after wasm-bindgen, which breaks it at load.
opt="$(mktemp -d)"
trap 'rm -rf "$opt"' EXIT
wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$wasm" -o "$opt/$name.wasm"
# The peer module goes to wasm-bindgen as cargo built it: after Debian's
# wasm-opt, wasm-bindgen cannot find its closures in the function table
# ("failed to find `0` in function table").
cp "$peer_wasm" "$opt/$peer_name.wasm"
for target in web:web node:experimental-nodejs-module; do
  wasm-bindgen "$opt/$name.wasm" --out-dir "$pkg/${target%%:*}" --out-name "$name" --target "${target#*:}" \
    --remove-name-section --remove-producers-section
done
wasm-bindgen "$opt/$peer_name.wasm" --out-dir "$pkg/peer" --out-name "$peer_name" --target web \
  --remove-name-section --remove-producers-section
rm -f "$pkg/node/package.json" # {"type": "module"}, which the package's own says already

# Browsers and bundlers: a module that initialises itself (top-level await),
# so that `import { NetworkClient } from "plexus-wasm"` is all a page needs.
cat >"$pkg/web/index.js" <<JS
// Loads ${name}_bg.wasm (found next to this file through import.meta.url) once, then
// re-exports the module. For manual loading, import "plexus-wasm/web" and call init().
import init from "./${name}.js";
await init();
export * from "./${name}.js";
JS
cat >"$pkg/web/index.d.ts" <<TS
export * from "./${name}.js";
TS
# The tab peer, for browsers only (it needs WebSocket, IndexedDB, pagehide).
cat >"$pkg/peer/index.js" <<JS
// Loads ${peer_name}_bg.wasm once, then re-exports PlexusPeer, NetworkClient and the rest.
import init from "./${peer_name}.js";
await init();
export * from "./${peer_name}.js";
JS
cat >"$pkg/peer/index.d.ts" <<TS
export * from "./${peer_name}.js";
TS

cat >"$pkg/package.json" <<JSON
{
  "name": "plexus-wasm",
  "version": "$version",
  "description": "Client of a Plexus knowledge-graph network for browsers and Node: peers, live watch, schemas, Network queries planned and merged in WebAssembly.",
  "license": "$license",
  "type": "module",
  "main": "./node/$name.js",
  "module": "./web/index.js",
  "browser": "./web/index.js",
  "types": "./web/index.d.ts",
  "exports": {
    ".": {
      "node": {
        "types": "./node/$name.d.ts",
        "default": "./node/$name.js"
      },
      "browser": {
        "types": "./web/index.d.ts",
        "default": "./web/index.js"
      },
      "import": {
        "types": "./web/index.d.ts",
        "default": "./web/index.js"
      },
      "default": {
        "types": "./web/index.d.ts",
        "default": "./web/index.js"
      }
    },
    "./web": {
      "types": "./web/$name.d.ts",
      "default": "./web/$name.js"
    },
    "./peer": {
      "types": "./peer/index.d.ts",
      "default": "./peer/index.js"
    },
    "./package.json": "./package.json"
  },
  "files": [
    "web/$name.js",
    "web/$name.d.ts",
    "web/${name}_bg.wasm",
    "web/${name}_bg.wasm.d.ts",
    "web/index.js",
    "web/index.d.ts",
    "node/$name.js",
    "node/$name.d.ts",
    "node/${name}_bg.wasm",
    "node/${name}_bg.wasm.d.ts",
    "peer/$peer_name.js",
    "peer/$peer_name.d.ts",
    "peer/${peer_name}_bg.wasm",
    "peer/${peer_name}_bg.wasm.d.ts",
    "peer/index.js",
    "peer/index.d.ts",
    "README.md"
  ],
  "sideEffects": [
    "./web/index.js",
    "./peer/index.js"
  ],
  "engines": {
    "node": ">=18"
  },
  "keywords": ["plexus", "p2p", "knowledge-graph", "graphql", "wasm"]
}
JSON

size="$(gzip -9 -c "$pkg/web/${name}_bg.wasm" | wc -c)"
raw="$(wc -c <"$pkg/web/${name}_bg.wasm")"
size_kib="$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1024 }')"
raw_kib="$(awk -v b="$raw" 'BEGIN { printf "%.1f", b / 1024 }')"

peer_size="$(gzip -9 -c "$pkg/peer/${peer_name}_bg.wasm" | wc -c)"
peer_raw="$(wc -c <"$pkg/peer/${peer_name}_bg.wasm")"
peer_size_kib="$(awk -v b="$peer_size" 'BEGIN { printf "%.1f", b / 1024 }')"
peer_raw_kib="$(awk -v b="$peer_raw" 'BEGIN { printf "%.1f", b / 1024 }')"

sed -e "s/@VERSION@/$version/g" -e "s/@SIZE@/$size_kib KiB gzipped ($raw_kib KiB raw)/g" \
  -e "s/@PEER_SIZE@/$peer_size_kib KiB gzipped ($peer_raw_kib KiB raw)/g" \
  "$here/npm-readme.md" >"$pkg/README.md"

echo "build.sh: wasm/pkg built: plexus-wasm $version"
echo "build.sh: ${name}_bg.wasm: $raw bytes raw, $size bytes gzipped ($size_kib KiB; budget $budget_kib KiB)"
echo "build.sh: ${peer_name}_bg.wasm: $peer_raw bytes raw, $peer_size bytes gzipped ($peer_size_kib KiB; budget $peer_budget_kib KiB)"
if ((size > budget_kib * 1024)); then
  echo "build.sh: the .wasm is over its budget of $budget_kib KiB gzipped" >&2
  exit 1
fi
if ((peer_size > peer_budget_kib * 1024)); then
  echo "build.sh: warning: the peer .wasm is over its planned $peer_budget_kib KiB gzipped" >&2
fi
