#!/usr/bin/env bash
# Builds the npm package of plexus-wasm into wasm/pkg/:
#   web/   ES module for browsers and bundlers (index.js initialises itself)
#   node/  ES module for Node.js (reads the .wasm beside it)
#   peer/  ES module for browsers: the tab peer (plexus-wasm-peer: PlexusPeer,
#          with NetworkClient and the rest of the client), "plexus-wasm/peer"
#   package.json, README.md
# Installs what it needs first (scripts/wasm-setup.sh, which installs
# binaryen 132's wasm-opt from npm), builds with the workspace profile
# wasm-release, runs wasm-opt -Oz and then wasm-bindgen once per target, and
# prints the gzipped size of each .wasm; either module over its budget (the
# query client 250 KiB, the tab peer 510 KiB, gzipped) fails the build. The
# two modules are built by separate cargo runs, so the peer's dependencies
# never reach the client.
# Usage: wasm/build.sh            (from anywhere)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
pkg="$here/pkg"
name=plexus_wasm
peer_name=plexus_wasm_peer
budget_kib=250
# The issue's goal, 500 KiB, holds since the tab peer no longer carries a
# second GraphQL parser: core parses with async-graphql's own parser (the
# engine's) instead of graphql-parser over combine, 507.4 -> 465.9 KiB.
# BENCHMARKS.md "npm modules' size".
peer_budget_kib=500
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export PATH="$HOME/.cargo/bin:$PATH"

bash "$root/scripts/wasm-setup.sh"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"

echo "build.sh: cargo build (wasm-release, wasm32-unknown-unknown)" >&2
# Symbols stay in until wasm-bindgen has read the target features; wasm-opt strips them.
CARGO_PROFILE_WASM_RELEASE_STRIP=false cargo build --manifest-path "$root/Cargo.toml" -p plexus-wasm \
  --target wasm32-unknown-unknown --profile wasm-release
# The tab peer at opt-level z: with wasm-opt, 485 KiB gzipped instead of
# 551.9 KiB at s (its budget is 500 KiB); its dependencies then build apart
# from the client's.
CARGO_PROFILE_WASM_RELEASE_OPT_LEVEL=z CARGO_PROFILE_WASM_RELEASE_STRIP=false \
  cargo build --manifest-path "$root/Cargo.toml" -p plexus-wasm-peer \
  --target wasm32-unknown-unknown --profile wasm-release
wasm="$target_dir/wasm32-unknown-unknown/wasm-release/$name.wasm"
peer_wasm="$target_dir/wasm32-unknown-unknown/wasm-release/$peer_name.wasm"

rm -rf "$pkg"
mkdir -p "$pkg/web" "$pkg/node" "$pkg/peer"
for target in web:web node:experimental-nodejs-module; do
  wasm-bindgen "$wasm" --out-dir "$pkg/${target%%:*}" --out-name "$name" --target "${target#*:}" \
    --remove-name-section --remove-producers-section
done
wasm-bindgen "$peer_wasm" --out-dir "$pkg/peer" --out-name "$peer_name" --target web \
  --remove-name-section --remove-producers-section
# wasm-opt -Oz on what wasm-bindgen wrote (wasm-bindgen must read the module
# as cargo built it: run before it, any binaryen moves the closures' table
# entries and wasm-bindgen fails, "failed to find `0` in function table").
# The wasm-opt is the one scripts/wasm-setup.sh installed (binaryen 132 from
# npm, wasm/tools), not Debian's binaryen 108 that may be on the PATH:
# 108, run after wasm-bindgen, points the export of the externref table at
# the function table and the module fails to load. Inlining is off
# (-aimfs 0 -ocimfs 0): it makes the raw module smaller but the gzipped one
# 12% larger.
wasm_opt="$here/tools/node_modules/.bin/wasm-opt"
optimise() {
  "$wasm_opt" -Oz -aimfs 0 -ocimfs 0 --strip-debug --strip-producers --enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue "$1" -o "$1.opt"
  mv "$1.opt" "$1"
}
optimise "$pkg/web/${name}_bg.wasm"
optimise "$pkg/node/${name}_bg.wasm"
optimise "$pkg/peer/${peer_name}_bg.wasm"
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
  echo "build.sh: the peer .wasm is over its budget of $peer_budget_kib KiB gzipped" >&2
  exit 1
fi
