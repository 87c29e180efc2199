#!/bin/sh
# Installs the client's pinned npm packages into a scratch directory and runs
# client.mjs with the given arguments:
#   tools/clients/node/run.sh [address] [target] [proto_root]
# Needs node and npm on PATH and the npm registry. NPM_CACHE (default
# ~/.cache/echelon-npm, or /tmp/echelon-npm when HOME is not writable) keeps
# downloads between runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/echelon-node-client.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/client.mjs" "$work/"
cache=${NPM_CACHE:-${HOME:-/tmp}/.cache/echelon-npm}
mkdir -p "$cache" 2>/dev/null || cache=/tmp/echelon-npm
cd "$work"
npm install --no-audit --no-fund --loglevel=error --cache "$cache" >npm.log 2>&1 || {
  cat npm.log >&2
  echo "npm install failed" >&2
  exit 1
}
# Without a proto root argument, use the repository's proto/.
[ $# -ge 3 ] || set -- "${1:-127.0.0.1:50051}" "${2:-fast-pool}" "$here/../../../proto"
node client.mjs "$@"
