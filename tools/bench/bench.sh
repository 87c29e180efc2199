#!/usr/bin/env bash
# Echelon benchmark harness: see tools/bench/run_bench.py (python3 stdlib).
#   tools/bench/bench.sh [--quick] [--no-portkey] [--out FILE] ...
exec python3 "$(dirname "$0")/run_bench.py" "$@"
