#!/bin/bash
# The official `openai` npm SDK against the real gateway: starts the upstream
# simulator and echelond (gRPC and HTTP on free ports), then runs
# tools/clients/node-openai/test.mjs (non-streamed, streamed, tool calls,
# NotFoundError, RateLimitError). Needs node/npm on PATH and the npm registry.
set -euo pipefail

root="${TEST_SRCDIR:-$(pwd)}/${TEST_WORKSPACE:-echelon}"
[ -d "$root" ] || root=$(pwd)
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
sim_pid=""
gw_pid=""

cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT

# wait_line FILE PREFIX SECONDS: prints the first line of FILE starting with
# PREFIX, waiting up to SECONDS for it.
wait_line() {
  local file="$1" prefix="$2" deadline=$((SECONDS + $3)) line
  while [ "$SECONDS" -lt "$deadline" ]; do
    line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "$line"
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for '$prefix' in $file" >&2
  return 1
}

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$tool is not on PATH" >&2; exit 1; }
done

"$root/tools/upstream_sim/upstream_sim" --port=0 >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
sim_port=$(wait_line "$tmp/sim.out" "LISTENING " 20 | awk '{print $2}')

ECHELON_SIM_URL="http://127.0.0.1:$sim_port/v1" \
  "$root/service/echelond" --config="$root/configs/llms" \
  --grpc_address=127.0.0.1:0 --http_address=127.0.0.1:0 \
  --metrics_address=127.0.0.1:0 --watch_config=false \
  >"$tmp/gw.out" 2>"$tmp/gw.err" &
gw_pid=$!
if ! http_line=$(wait_line "$tmp/gw.out" "LISTENING http " 30); then
  cat "$tmp/gw.err" >&2
  exit 1
fi
http_port=$(echo "$http_line" | awk '{print $3}')

status=0
"$root/tools/clients/node-openai/run.sh" "http://127.0.0.1:$http_port/v1" \
  "http://127.0.0.1:$sim_port" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- echelond stderr (tail) ---" >&2
  tail -n 50 "$tmp/gw.err" >&2
fi
exit "$status"
