#!/usr/bin/env bash
# Set everything up (venv, pinned CPU stack, both converted models) and run the whole test suite,
# including the end-to-end tests that start the real service on 127.0.0.1. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --model all
exec .venv/bin/python -m pytest "$@"
