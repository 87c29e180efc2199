#!/usr/bin/env bash
# CI's sanitizer pass (issue 9):
#   1. AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer
#      (--config=asan) over the unit, fuzz-corpus and integration tests;
#   2. ThreadSanitizer (--config=tsan) over the concurrency-heavy tests that
#      give a clean signal (see TSAN_TARGETS and .bazelrc: Debian's Abseil
#      and gRPC are not instrumented, so absl::Mutex is invisible to TSan).
# The last line is "sanitizers: N passed, N failed" counted from the test
# cases in the test.xml files of both runs. Exits non-zero on any failure.
#
# SANITIZER_OUTPUT_BASE: a Bazel output base to use (default: Bazel's).
# SANITIZER_ASAN_TARGETS: see below.
# Extra arguments go to both `bazel test` commands.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

startup=()
[ -n "${SANITIZER_OUTPUT_BASE:-}" ] && startup+=("--output_base=$SANITIZER_OUTPUT_BASE")

# SANITIZER_ASAN_TARGETS (space-separated) narrows the ASan pass, e.g. to
# "//tests/domain/... //tests/adapters/... //tests/fuzz/..." when CI's time
# budget needs it.
read -r -a ASAN_TARGETS <<<"${SANITIZER_ASAN_TARGETS:-//tests/...}"
# Tests that need clients from the network (npm, pip) are left to the plain
# run.
ASAN_FLAGS=(
  --config=asan --keep_going --test_tag_filters=-requires-network
  "--test_env=UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/tests/fuzz/ubsan.supp"
  "--test_env=LSAN_OPTIONS=suppressions=$ROOT/tests/fuzz/lsan.supp"
)
# Threads that meet in our code (absl::Mutex/CondVar/Notification are
# annotated by tests/fuzz/tsan; locking inside gRPC's libraries is not).
# //tests/domain:router_test is left out until its FakeEventLoop::Now()
# race (status getters read the fake clock from another thread) is fixed.
TSAN_TARGETS=(
  //tests/adapters:event_loop_test
  //tests/adapters:http_client_test
  //tests/adapters:config_watcher_test
  //tests/adapters:http_front_test
  //tests/adapters:provider_call_test
  //tests/adapters:provider_conformance_test
  # Redis adapter: hiredis runs on the loop thread only; the host-name
  # resolver thread hands its result over with Post().
  //tests/adapters:redis_shared_state_test
)
TSAN_FLAGS=(--config=tsan --keep_going)

log() { printf 'ci_sanitizers: %s\n' "$*" >&2; }

# Sums test cases over the test.xml files under $1.
count() {
  local dir="$1" passed=0 failed=0 t f e d s xml
  [ -d "$dir" ] || { echo "0 0"; return; }
  while IFS= read -r xml; do
    read -r t f e d s < <(grep -o -m1 '<testsuites\?[^>]*tests="[0-9]*"[^>]*>' "$xml" |
      awk '{
        t=f=e=d=s=0
        if (match($0, /tests="[0-9]+"/)) t=substr($0, RSTART+7, RLENGTH-8)
        if (match($0, /failures="[0-9]+"/)) f=substr($0, RSTART+10, RLENGTH-11)
        if (match($0, /errors="[0-9]+"/)) e=substr($0, RSTART+8, RLENGTH-9)
        if (match($0, /disabled="[0-9]+"/)) d=substr($0, RSTART+10, RLENGTH-11)
        if (match($0, /skipped="[0-9]+"/)) s=substr($0, RSTART+9, RLENGTH-10)
        print t, f, e, d, s
      }')
    t=${t:-0} f=${f:-0} e=${e:-0} d=${d:-0} s=${s:-0}
    failed=$((failed + f + e))
    passed=$((passed + t - f - e - d - s))
  done < <(find -L "$dir" -name test.xml)
  echo "$passed $failed"
}

rc=0 total_passed=0 total_failed=0
run() {
  local name="$1"
  shift
  local -a flags=()
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  local start=$SECONDS brc=0
  log "$name: bazel test ${flags[*]} $*"
  bazel "${startup[@]}" test "${flags[@]}" "$@" || brc=$?
  local logs
  logs="$(bazel "${startup[@]}" info "${flags[@]}" bazel-testlogs 2>/dev/null)"
  local p f
  read -r p f < <(count "$logs")
  # A target that failed to build or timed out has no test cases to count.
  if [ "$brc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  log "$name: $p passed, $f failed in $((SECONDS - start)) s"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  [ "$brc" -ne 0 ] && rc=1
}

run asan "${ASAN_FLAGS[@]}" "${@}" -- "${ASAN_TARGETS[@]}"
run tsan "${TSAN_FLAGS[@]}" "${@}" -- "${TSAN_TARGETS[@]}"
echo "sanitizers: $total_passed passed, $total_failed failed"
exit "$rc"
