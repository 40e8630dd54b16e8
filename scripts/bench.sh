#!/usr/bin/env bash
# Set up (with the benchmark's peers) and run the benchmark; arguments go to tools/bench/benchmark.py.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,bench scripts/setup.sh
exec .venv/bin/python -m tools.bench.benchmark "$@"
