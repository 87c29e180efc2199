#!/usr/bin/env bash
# Runs Echelon's libFuzzer targets (tests/fuzz/) and reports what they found.
#
#   tools/fuzz.sh [MINUTES] [TARGET...]
#
# MINUTES (default 10) is the run time of EACH target; TARGET is one of
# sse_parser, provider_response, config_loader, http_front (default: all).
# Targets run FUZZ_JOBS at a time (default 2). Each target is built by Bazel
# with clang, -fsanitize=fuzzer,address,undefined (--config=fuzz in .bazelrc)
# in an output base of its own, and runs on a working copy of its checked-in
# seed corpus (tests/fuzz/corpus/<target>/, never modified here) under
# $FUZZ_WORKDIR (default /tmp/echelon-fuzz): new interesting inputs go to
# <workdir>/<target>/corpus, crashing inputs to <workdir>/<target>/artifacts.
# Prints one line per target (executions, coverage, corpus size, result) and
# exits non-zero when any target crashed, leaked, timed out or ran out of
# memory. Needs clang 14 and libclang-rt-14-dev (libFuzzer's runtime).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_TARGETS=(sse_parser provider_response config_loader http_front)
MINUTES="${1:-10}"
shift $(($# > 0 ? 1 : 0))
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")
JOBS="${FUZZ_JOBS:-2}"
WORKDIR="${FUZZ_WORKDIR:-/tmp/echelon-fuzz}"
OUTPUT_BASE="${FUZZ_OUTPUT_BASE:-$HOME/.cache/bazel-ob/fuzz-clang}"

log() { printf 'fuzz: %s\n' "$*" >&2; }

[[ "$MINUTES" =~ ^[1-9][0-9]*$ ]] || { log "MINUTES must be a whole number of at least 1"; exit 2; }
command -v clang++ >/dev/null || { log "clang++ not found (apt-get install clang)"; exit 1; }

labels=()
for t in "${TARGETS[@]}"; do labels+=("//tests/fuzz:${t}_fuzzer"); done
log "building ${labels[*]} with clang"
bazel --output_base="$OUTPUT_BASE" build --config=fuzz "${labels[@]}" \
  2> >(grep -v "Cannot export local symbol" >&2) || { log "build failed"; exit 1; }
BIN="$(bazel --output_base="$OUTPUT_BASE" info --config=fuzz bazel-bin 2>/dev/null)"

run_one() {
  local t="$1" dir="$WORKDIR/$1"
  rm -rf "$dir" && mkdir -p "$dir/corpus" "$dir/artifacts" || return 1
  cp "$BIN/tests/fuzz/${t}_fuzzer" "$dir/fuzzer"
  local -a extra=()
  [ -f "tests/fuzz/${t}.dict" ] && extra+=("-dict=$ROOT/tests/fuzz/${t}.dict")
  (
    cd "$dir" &&
      ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/tests/fuzz/ubsan.supp" \
        ./fuzzer -max_total_time=$((MINUTES * 60)) -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix=artifacts/ "${extra[@]}" \
        corpus "$ROOT/tests/fuzz/corpus/$t" >log.txt 2>&1
    echo $? >rc
  )
}

log "running ${TARGETS[*]} for $MINUTES min each, $JOBS at a time, in $WORKDIR"
running=0
for t in "${TARGETS[@]}"; do
  if ((running >= JOBS)); then
    wait -n
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait

status=0
printf '%-18s %12s %8s %8s %8s  %s\n' target executions cov ft corpus result
for t in "${TARGETS[@]}"; do
  dir="$WORKDIR/$t"
  rc="$(cat "$dir/rc" 2>/dev/null || echo 1)"
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log.txt" | awk '{print $2}')"
  last="$(grep -E '^#[0-9]+' "$dir/log.txt" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' | tail -1)"
  cov="$(awk '{print $2}' <<<"$last")"
  ft="$(awk '{print $4}' <<<"$last")"
  corp="$(awk '{print $6}' <<<"$last")"
  crashes=("$dir"/artifacts/*)
  if [ "$rc" = 0 ] && [ ! -e "${crashes[0]}" ]; then
    result=ok
  else
    result="FAILED (rc $rc; see $dir/log.txt, inputs in $dir/artifacts/)"
    status=1
  fi
  printf '%-18s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
done
exit "$status"
