# Shared by the shell integration tests: starts the upstream simulator and
# echelond on free ports from Bazel runfiles and stops them on exit.
#
#   source gateway_env.sh
#   start_gateway [CONFIG_DIR]   # sets SIM_PORT, GRPC_PORT, HTTP_PORT,
#                                # METRICS_PORT, GW_PID; logs in $TMP_DIR
# shellcheck shell=bash

ROOT="${TEST_SRCDIR:-$(pwd)}/${TEST_WORKSPACE:-echelon}"
[ -d "$ROOT" ] || ROOT=$(pwd)
TMP_DIR="${TEST_TMPDIR:-$(mktemp -d)}"
SIM_PID=""
GW_PID=""

stop_gateway() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
  GW_PID="" SIM_PID=""
  return 0
}
trap stop_gateway EXIT

# wait_line FILE PREFIX SECONDS: prints the first line of FILE starting with
# PREFIX, waiting up to SECONDS for it. The file is always read at least
# once: $SECONDS counts whole seconds, so a 1-second deadline set just
# before the counter ticks would otherwise allow no attempt at all.
wait_line() {
  local file="$1" prefix="$2" deadline=$((SECONDS + $3 + 1)) line
  while :; do
    line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "$line"
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.1
  done
  echo "timed out waiting for '$prefix' in $file" >&2
  return 1
}

start_gateway() {
  local config="${1:-$ROOT/configs/llms}"
  "$ROOT/tools/upstream_sim/upstream_sim" --port=0 >"$TMP_DIR/sim.out" \
    2>"$TMP_DIR/sim.err" &
  SIM_PID=$!
  SIM_PORT=$(wait_line "$TMP_DIR/sim.out" "LISTENING " 20 | awk '{print $2}')
  ECHELON_SIM_URL="http://127.0.0.1:$SIM_PORT/v1" \
    "$ROOT/service/echelond" --config="$config" \
    --grpc_address=127.0.0.1:0 --http_address=127.0.0.1:0 \
    --metrics_address=127.0.0.1:0 --watch_config=false \
    >"$TMP_DIR/gw.out" 2>"$TMP_DIR/gw.err" &
  GW_PID=$!
  if ! wait_line "$TMP_DIR/gw.out" "LISTENING metrics " 30 >/dev/null; then
    cat "$TMP_DIR/gw.err" >&2
    return 1
  fi
  GRPC_PORT=$(wait_line "$TMP_DIR/gw.out" "LISTENING grpc " 1 | awk '{print $3}')
  HTTP_PORT=$(wait_line "$TMP_DIR/gw.out" "LISTENING http " 1 | awk '{print $3}')
  METRICS_PORT=$(wait_line "$TMP_DIR/gw.out" "LISTENING metrics " 1 | awk '{print $3}')
}
