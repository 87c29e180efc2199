#!/usr/bin/env bash
# Soak: a bounded mixed load with faults and config reloads against the
# upstream simulator and echelond, sampling the gateway's RSS, open fds and
# threads from /proc before and after. Not run in CI.
#
#   tools/soak.sh [SECONDS]        (default 600; e.g. tools/soak.sh 150)
# Env: SOAK_OUTPUT_BASE (Bazel output base), SOAK_BAZEL_FLAGS (default
# "-c opt").
#
# Load (tools/loadgen, closed loop, all at once for SECONDS):
#   gRPC unary   -> ok-pool      (healthy)
#   gRPC stream  -> mixed-pool   (its first echelon answers 503, falls back)
#   gRPC unary   -> timeout-pool (the upstream hangs; 1 s first-token timeout)
#   HTTP unary   -> ok-pool      (OpenAI-compatible front)
# Faults: every 10 s the healthy model is flipped to 429 (Retry-After 1)
# for 3 s through the simulator's /_scenario override. Reloads: every 15 s
# the config file is rewritten (strategy alternates) and SIGHUP is sent.
#
# Reports (and exits non-zero when one fails):
#   - RSS / fds / threads at start (after warm-up) and end (after the load
#     drained and 5 s idle): fds and threads must return to within +2 of the
#     start (fds not counting idle upstream connections in libcurl's
#     cache, which are reported separately), RSS within +50% (+16 MiB);
#   - accounting: every call each loadgen started finished (ok or error),
#     and their sum equals the growth of echelon_requests_total.
set -euo pipefail

DURATION=${1:-600}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OB=${SOAK_OUTPUT_BASE:-/root/.cache/bazel-ob/soak}
# Build flags; SOAK_BAZEL_FLAGS= (empty) reuses a fastbuild tree.
read -r -a BFLAGS <<<"${SOAK_BAZEL_FLAGS--c opt}"
WORK=$(mktemp -d /tmp/echelon-soak.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "soak: building (output base $OB)" >&2
bazel --output_base="$OB" build "${BFLAGS[@]}" //service:echelond \
  //tools/upstream_sim //tools/loadgen >"$WORK/build.log" 2>&1 ||
  { tail -20 "$WORK/build.log"; exit 1; }
BIN=$(bazel --output_base="$OB" info "${BFLAGS[@]}" bazel-bin 2>/dev/null)

write_config() {  # strategy
  cat >"$WORK/gateway.yaml" <<YAML
providers:
  - name: sim
    kind: openai
    base_url: \${ECHELON_SIM_URL}
    api_key: sk-soak
    timeouts: {connect: 1s, first_token: 1s, stall: 2s}
models:
  - {name: ok, provider: sim, upstream_model: gpt-ok}
  - {name: broken, provider: sim, upstream_model: "gpt-broken@fault=http_503"}
  - {name: hangs, provider: sim, upstream_model: "gpt-hang@fault=hang"}
defaults:
  echelon:
    retry: {max_retries: 1, initial_backoff: 10ms}
task_groups:
  - name: ok-group
    echelons: [{name: primary, models: [ok]}]
  - name: mixed-group
    echelons:
      - {name: primary, models: [broken]}
      - {name: backup, models: [ok]}
  - name: timeout-group
    echelons: [{name: primary, models: [hangs]}]
    request_timeout: 2s
pools:
  - {name: ok-pool, task_groups: [ok-group], strategy: $1}
  - {name: mixed-pool, task_groups: [mixed-group], strategy: $1}
  - {name: timeout-pool, task_groups: [timeout-group], request_timeout: 2s}
YAML
}
write_config round_robin

"$BIN/tools/upstream_sim/upstream_sim" --port=0 \
  --scenario='tokens=16;itl_ms=2' >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q LISTENING "$WORK/sim.out" && break; sleep 0.1; done
SIM_PORT=$(awk '/LISTENING/{print $2}' "$WORK/sim.out")
SIM="http://127.0.0.1:$SIM_PORT"

ECHELON_SIM_URL="$SIM/v1" "$BIN/service/echelond" --config="$WORK/gateway.yaml" \
  --grpc_address=127.0.0.1:0 --http_address=127.0.0.1:0 \
  --metrics_address=127.0.0.1:0 --watch_config=false \
  >"$WORK/gw.out" 2>"$WORK/gw.err" &
GW=$!
PIDS+=($GW)
for _ in $(seq 300); do grep -q "LISTENING metrics" "$WORK/gw.out" && break; sleep 0.1; done
GRPC_PORT=$(awk '/LISTENING grpc/{print $3}' "$WORK/gw.out")
HTTP_PORT=$(awk '/LISTENING http/{print $3}' "$WORK/gw.out")
METRICS_PORT=$(awk '/LISTENING metrics/{print $3}' "$WORK/gw.out")

# Sockets of the gateway whose peer is the simulator: idle upstream
# connections kept by libcurl's connection cache (bounded by its
# max_cached_connections), which may legitimately outlive the load.
upstream_sockets() {
  python3 - "$GW" "$SIM_PORT" <<'PY'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        t = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if t.startswith("socket:["):
        inodes.add(t[8:-1])
n = 0
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        if int(f[2].split(":")[1], 16) == port and f[9] in inodes:
            n += 1
print(n)
PY
}
sample() {  # label
  local rss threads fds
  rss=$(awk '/VmRSS/{print $2}' "/proc/$GW/status")
  threads=$(awk '/Threads/{print $2}' "/proc/$GW/status")
  fds=$(ls "/proc/$GW/fd" | wc -l)
  echo "$1 $rss $threads $fds $(upstream_sockets)"
}
requests_total() {
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^echelon_requests_total/{s+=$NF} END{printf "%d\n", s}'
}

LG="$BIN/tools/loadgen/loadgen"
# Warm-up: a few calls of each kind so lazily created state exists.
"$LG" --address="127.0.0.1:$GRPC_PORT" --target=ok-pool --concurrency=4 \
  --duration_s=2 --warmup_s=0 >/dev/null 2>&1
"$LG" --mode=http_unary --url="http://127.0.0.1:$HTTP_PORT/v1/chat/completions" \
  --target=ok-pool --concurrency=4 --duration_s=1 --warmup_s=0 >/dev/null 2>&1
sleep 3
START=$(sample start)
BEFORE=$(requests_total)
echo "soak: $DURATION s; gateway pid $GW; start rss_kb threads fds: ${START#start }" >&2

"$LG" --address="127.0.0.1:$GRPC_PORT" --target=ok-pool --concurrency=16 \
  --duration_s="$DURATION" --warmup_s=0 >"$WORK/lg1.json" 2>"$WORK/lg1.err" &
L1=$!
"$LG" --mode=grpc_stream --address="127.0.0.1:$GRPC_PORT" --target=mixed-pool \
  --concurrency=8 --duration_s="$DURATION" --warmup_s=0 \
  >"$WORK/lg2.json" 2>"$WORK/lg2.err" &
L2=$!
"$LG" --address="127.0.0.1:$GRPC_PORT" --target=timeout-pool --concurrency=4 \
  --duration_s="$DURATION" --warmup_s=0 >"$WORK/lg3.json" 2>"$WORK/lg3.err" &
L3=$!
"$LG" --mode=http_unary --url="http://127.0.0.1:$HTTP_PORT/v1/chat/completions" \
  --target=ok-pool --concurrency=8 --duration_s="$DURATION" --warmup_s=0 \
  >"$WORK/lg4.json" 2>"$WORK/lg4.err" &
L4=$!
PIDS+=($L1 $L2 $L3 $L4)

END_AT=$((SECONDS + DURATION))
RELOADS=0
FAULTS=0
STRATEGY=round_robin
MID=""
while ((SECONDS < END_AT)); do
  sleep 5
  t=$((END_AT - SECONDS))
  if ((SECONDS % 10 < 5)); then
    curl -s -XPOST "$SIM/_scenario?key=gpt-ok" -d 'fault=rate_limit;retry_after=1' >/dev/null
    sleep 3
    curl -s -XPOST "$SIM/_scenario?key=gpt-ok" -d '' >/dev/null
    FAULTS=$((FAULTS + 1))
  fi
  if ((SECONDS % 15 < 8)); then
    [[ $STRATEGY == round_robin ]] && STRATEGY=p2c_ewma || STRATEGY=round_robin
    write_config "$STRATEGY"
    kill -HUP "$GW"
    RELOADS=$((RELOADS + 1))
  fi
  if [[ -z $MID ]] && ((t < DURATION / 2)); then MID=$(sample mid); fi
done
wait $L1 $L2 $L3 $L4 || true
sleep 5
END=$(sample end)
AFTER=$(requests_total)
RELOADED_OK=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
  awk '/^echelon_config_reloads_total\{.*result="ok"/{s+=$NF} END{printf "%d\n", s}')
RELOADED_ERR=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
  awk '/^echelon_config_reloads_total\{.*result="error"/{s+=$NF} END{printf "%d\n", s}')

python3 - "$WORK" "$START" "${MID:-mid 0 0 0 0}" "$END" "$BEFORE" "$AFTER" \
  "$RELOADS" "$FAULTS" "$RELOADED_OK" "$RELOADED_ERR" <<'PY'
import json, sys
(work, start, mid, end, before, after, reloads, faults, reload_ok,
 reload_err) = sys.argv[1:]
def parse(s):
    _, rss, thr, fds, up = s.split()
    return int(rss), int(thr), int(fds), int(up)
s, m, e = parse(start), parse(mid), parse(end)
calls = 0
ok = True
for i, name in enumerate(["grpc_unary ok-pool", "grpc_stream mixed-pool",
                          "grpc_unary timeout-pool", "http_unary ok-pool"], 1):
    try:
        r = json.load(open(f"{work}/lg{i}.json"))
    except Exception as ex:
        print(f"  {name}: no result ({ex})"); ok = False; continue
    done = r["total_ok"] + r["total_errors"]
    calls += done
    print(f"  {name:26s} ok={r['total_ok']} errors={r['total_errors']} "
          f"dropped={r.get('dropped', 0)}")
grew = int(after) - int(before)
print(f"calls finished by clients: {calls}; echelon_requests_total grew by {grew}")
if calls != grew:
    print("  ACCOUNTING MISMATCH"); ok = False
print(f"reloads sent: {reloads} (counted ok={reload_ok} error={reload_err}, "
      f"including the initial load); fault windows: {faults}")
if int(reload_ok) < int(reloads): print("  a reload was not applied"); ok = False
print(f"rss_kb   start={s[0]} mid={m[0]} end={e[0]}")
print(f"threads  start={s[1]} mid={m[1]} end={e[1]}")
print(f"fds      start={s[2]} mid={m[2]} end={e[2]}")
print(f"  of which idle upstream connections (curl cache): "
      f"start={s[3]} mid={m[3]} end={e[3]}")
if e[2] - e[3] > s[2] - s[3] + 2: print("  fds did not return"); ok = False
if e[1] > s[1] + 2: print("  threads did not return"); ok = False
if e[0] > s[0] * 1.5 + 16384: print("  RSS grew more than 50% + 16 MiB"); ok = False
print("SOAK", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
