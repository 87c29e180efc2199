#!/bin/bash
# The official `openai` npm SDK against the real gateway: starts the upstream
# simulator and echelond (gRPC and HTTP on free ports), then runs
# tools/clients/node-openai/test.mjs (non-streamed, streamed, tool calls,
# NotFoundError, RateLimitError). Needs node/npm on PATH and the npm registry.
set -euo pipefail
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/integration/gateway_env.sh"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$tool is not on PATH" >&2; exit 1; }
done

start_gateway

status=0
"$ROOT/tools/clients/node-openai/run.sh" "http://127.0.0.1:$HTTP_PORT/v1" \
  "http://127.0.0.1:$SIM_PORT" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- echelond stderr (tail) ---" >&2
  tail -n 50 "$TMP_DIR/gw.err" >&2
fi
exit "$status"
