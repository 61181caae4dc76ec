#!/usr/bin/env bash
# Fetches the browser bundles of GraphiQL, React and ReactDOM that the peer
# embeds (server/peer/src/graphiql.rs serves them under /v1/graphiql/), from
# the npm registry at the versions pinned below, with their licences, and
# checks them against SHA256SUMS beside this script.
#
#   fetch.sh            fetch into this folder; fail if a file's sha256 differs
#   fetch.sh --check    fetch into a temp folder and compare: changes nothing
#   fetch.sh --update   fetch into this folder and rewrite SHA256SUMS (after
#                       changing a version: then rename the files in
#                       server/peer/src/graphiql.rs's ASSETS to match)
#
# Needs npm (scripts/setup.sh installs it); `npm pack` checks each tarball's
# integrity hash against the registry's.
set -euo pipefail

GRAPHIQL=3.9.0 # the last major with a UMD bundle (4 and 5 are ES modules for bundlers)
REACT=18.3.1   # the last major with UMD bundles (React 19 has none)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mode="${1:-fetch}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

out="$here"
[ "$mode" = --check ] && out="$tmp/out" && mkdir -p "$out"

(cd "$tmp" && npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null)
for pkg in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
  mkdir -p "$tmp/$pkg"
  tar -xzf "$tmp/$pkg.tgz" -C "$tmp/$pkg"
done

# file in the package -> name served (the version in the name makes it cacheable forever)
cp "$tmp/graphiql-$GRAPHIQL/package/graphiql.min.js" "$out/graphiql-$GRAPHIQL.min.js"
cp "$tmp/graphiql-$GRAPHIQL/package/graphiql.min.css" "$out/graphiql-$GRAPHIQL.min.css"
cp "$tmp/graphiql-$GRAPHIQL/package/LICENSE" "$out/graphiql-$GRAPHIQL.LICENSE.txt"
cp "$tmp/react-$REACT/package/umd/react.production.min.js" "$out/react-$REACT.production.min.js"
cp "$tmp/react-$REACT/package/LICENSE" "$out/react-$REACT.LICENSE.txt"
cp "$tmp/react-dom-$REACT/package/umd/react-dom.production.min.js" "$out/react-dom-$REACT.production.min.js"
cp "$tmp/react-dom-$REACT/package/LICENSE" "$out/react-dom-$REACT.LICENSE.txt"

files=("graphiql-$GRAPHIQL.min.js" "graphiql-$GRAPHIQL.min.css" "graphiql-$GRAPHIQL.LICENSE.txt"
  "react-$REACT.production.min.js" "react-$REACT.LICENSE.txt"
  "react-dom-$REACT.production.min.js" "react-dom-$REACT.LICENSE.txt")

if [ "$mode" = --update ]; then
  (cd "$out" && sha256sum "${files[@]}" >"$here/SHA256SUMS")
  echo "fetch.sh: wrote SHA256SUMS for ${files[*]}"
else
  (cd "$out" && sha256sum --quiet -c "$here/SHA256SUMS")
  echo "fetch.sh: every file matches SHA256SUMS"
  if [ "$mode" = --check ]; then
    for f in "${files[@]}"; do cmp -s "$out/$f" "$here/$f" || { echo "fetch.sh: $f differs from the committed one" >&2; exit 1; }; done
    echo "fetch.sh: the committed files are the registry's"
  fi
fi
