#!/bin/sh
# Installs the pinned openai SDK into a scratch directory and runs test.mjs.
#   tools/clients/node-openai/run.sh <baseURL> [simURL]
# Needs node and npm on PATH and the npm registry. NPM_CACHE (default
# ~/.cache/echelon-npm, or /tmp/echelon-npm when HOME is not writable) keeps
# downloads between runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/echelon-node-openai.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/test.mjs" "$work/"
cache=${NPM_CACHE:-${HOME:-/tmp}/.cache/echelon-npm}
mkdir -p "$cache" 2>/dev/null || cache=/tmp/echelon-npm
cd "$work"
npm install --no-audit --no-fund --loglevel=error --cache "$cache" >npm.log 2>&1 || {
  cat npm.log >&2
  echo "npm install failed" >&2
  exit 1
}
exec node test.mjs "$@"
