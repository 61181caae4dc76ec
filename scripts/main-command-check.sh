#!/usr/bin/env bash
# Runs the README's main command as a new user would: on a fresh clone of
# this repository's HEAD, inside a mount namespace where the tools that the
# test command installs (etcd, Chromium, chromedriver, wasm-bindgen, a
# system protoc) are hidden behind /dev/null, then checks that the devnet's
# dashboard shows its three sample peers alive. Needs root (unshare -m),
# tmux, and cargo; takes a release build's time.
#   scripts/main-command-check.sh            (from anywhere)
set -euo pipefail

if [ "${1:-}" != "--inside" ]; then
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  clone="$(mktemp -d -t plexus-main-check.XXXXXX)"
  trap 'rm -rf "$clone"' EXIT
  git clone -q "$root" "$clone/plexus"
  exec unshare -m bash "$root/scripts/main-command-check.sh" --inside "$clone/plexus"
fi

clone="$2"
for tool in etcd chromium chromedriver wasm-bindgen wasm-bindgen-test-runner protoc; do
  while path="$(command -v "$tool")" && [ -x "$path" ] && [ -s "$path" ]; do
    mount --bind /dev/null "$path"
    hash -r
  done
done
cd "$clone"
echo "main-command-check: cargo build --release --workspace --bins (in $clone)" >&2
cargo build --release --workspace --bins
session="plexus-main-check-$$"
tmux -L "$session" new-session -d -s main -x 160 -y 45 "target/release/plexus-dash --devnet"
trap 'tmux -L "$session" kill-server 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  screen="$(tmux -L "$session" capture-pane -p -t main 2>/dev/null || true)"
  if [ "$(grep -cE '^│Peer[ABC] .* alive ' <<<"$screen")" = 3 ]; then
    echo "$screen"
    echo "main-command-check: the devnet runs, its three peers alive" >&2
    exit 0
  fi
  sleep 0.5
done
echo "$screen"
echo "main-command-check: the dashboard did not show three live peers within 30 s" >&2
exit 1
