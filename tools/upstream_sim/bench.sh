#!/usr/bin/env bash
# Measures upstream_sim throughput with wrk (apt package `wrk`).
#
#   tools/upstream_sim/bench.sh [seconds] [connections]
#
# Builds the simulator with -c opt, starts it on a free port, drives unary and
# streamed OpenAI requests, prints wrk's summary lines, and stops the server.
# BAZEL_OUTPUT_BASE selects the Bazel output base (default: bazel's own).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-5}"
conns="${2:-50}"
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 1; }

bazel_cmd=(bazel)
if [[ -n "${BAZEL_OUTPUT_BASE:-}" ]]; then
  bazel_cmd+=("--output_base=${BAZEL_OUTPUT_BASE}")
fi
"${bazel_cmd[@]}" build -c opt //tools/upstream_sim:upstream_sim >/dev/null 2>&1
bin="$("${bazel_cmd[@]}" info -c opt bazel-bin 2>/dev/null)/tools/upstream_sim/upstream_sim"

tmp="$(mktemp -d)"
"$bin" --port=0 >"$tmp/out" &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q LISTENING "$tmp/out" && break; sleep 0.05; done
port="$(awk '/LISTENING/ {print $2}' "$tmp/out")"

cat >"$tmp/unary.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-sim","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
LUA
cat >"$tmp/stream.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-sim","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

url="http://127.0.0.1:${port}/v1/chat/completions"
for kind in unary stream; do
  echo "== ${kind} (8 tokens, ${conns} connections, ${secs}s)"
  wrk -t1 -c"$conns" -d"${secs}s" -s "$tmp/${kind}.lua" "$url" |
    grep -E 'Latency|Requests/sec|requests in|errors'
done
