#!/usr/bin/env bash
# Instructions per request of echelond, repeatably (issue 8): runs echelond
# under valgrind --tool=callgrind against tools/upstream_sim, warms up for 2 s,
# zeroes the counters, sends RATE x SECONDS requests with tools/loadgen, dumps
# and prints the total. Build first: bazel build -c opt //service:echelond
# //tools/upstream_sim:upstream_sim //tools/loadgen:loadgen
#
#   tools/bench/callgrind_probe.sh BIN_DIR OUT_DIR [MODE] [SECONDS]
#     BIN_DIR  bazel-bin of the opt build (holds service/, tools/)
#     MODE     grpc_unary (default), grpc_stream, http_unary, http_stream
#   RATE=200 by default. callgrind_annotate --inclusive=yes OUT_DIR/cg.out.1
#   breaks the total down by function.
set -euo pipefail
BIN=$1; T=$2; MODE=${3:-grpc_unary}; SECS=${4:-5}; RATE=${RATE:-200}
cd "$(dirname "$0")/../.."
rm -rf "$T"; mkdir -p "$T"
"$BIN/tools/upstream_sim/upstream_sim" --port=0 --scenario=tokens=16 >"$T/sim.out" 2>"$T/sim.err" &
SIM=$!
for _ in $(seq 100); do grep -q LISTENING "$T/sim.out" && break; sleep 0.1; done
SP=$(awk '/^LISTENING/{print $2}' "$T/sim.out")
ECHELON_SIM_URL=http://127.0.0.1:$SP/v1 valgrind --tool=callgrind \
  --callgrind-out-file="$T/cg.out" "$BIN/service/echelond" --config=configs/llms \
  --grpc_address=127.0.0.1:0 --http_address=127.0.0.1:0 \
  --metrics_address=127.0.0.1:0 --log_level=warning --watch_config=false \
  >"$T/gw.out" 2>"$T/gw.err" &
GW=$!
for _ in $(seq 600); do grep -q "LISTENING http" "$T/gw.out" && break; sleep 0.2; done
GP=$(awk '/^LISTENING grpc/{print $3}' "$T/gw.out")
HP=$(awk '/^LISTENING http/{print $3}' "$T/gw.out")
if [[ $MODE == grpc* ]]; then A="--address=127.0.0.1:$GP"
else A="--url=http://127.0.0.1:$HP/v1/chat/completions"; fi
LG="$BIN/tools/loadgen/loadgen --mode=$MODE $A --target=fast-pool --rate=$RATE --warmup_s=0"
$LG --duration_s=2 >"$T/warm.json" 2>&1
callgrind_control -z $GW >/dev/null
$LG --duration_s="$SECS" >"$T/run.json" 2>&1
callgrind_control -d $GW >/dev/null
sleep 1
kill $GW $SIM; wait $GW $SIM 2>/dev/null || true
N=$(tail -1 "$T/run.json" | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['total_ok'])")
IR=$(callgrind_annotate "$T/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "$MODE: $N requests, $IR instructions, $((IR / N)) per request"
