#!/usr/bin/env bash
# Set everything up (venv, pinned CPU stack, both converted models, redis-server) and run the whole test suite,
# including the end-to-end tests that start the real service on 127.0.0.1. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --model all
# The Redis-backed usage store is tested against a real Redis (Debian's redis-server).
if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing redis-server"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; }
fi
# The SDK and example tests run Node.js (18+) and Go (examples/go) against the server; the demo
# page's test drives headless Chromium (tests/test_demo.py, over the DevTools protocol: no driver).
for tool in node:nodejs npm:npm go:golang-go chromium:chromium; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "==> installing ${tool#*:}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -q "${tool#*:}" >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${tool#*:}" >/dev/null; }
  fi
done
# Lint and type check first, so CI fails on them before the long test run ([tool.ruff], [tool.mypy] in pyproject.toml).
echo "==> ruff check, ruff format --check"
.venv/bin/ruff check serve_app clients/python tools tests
.venv/bin/ruff format --check serve_app clients/python tools tests
echo "==> mypy"
.venv/bin/mypy
exec .venv/bin/python -m pytest --durations=15 "$@"  # the slowest tests listed at the end: where CI time goes
