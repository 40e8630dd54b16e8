#!/usr/bin/env bash
# Fuzz longer than CI does: tests/test_fuzz.py with every case count multiplied (default 20x, about
# 100,000 requests, option sets and audio files; about 9 minutes on 2 cores). Any failure prints the
# smallest input that causes it.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_EXAMPLES="${1:-20}" exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py
