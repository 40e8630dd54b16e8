#!/usr/bin/env bash
# Set everything up and run the service on the CPU default (port 7100).
# On first start it creates a development license key and prints it as LICENSE_KEY=...
#   CONFIG=configs/prod.yaml scripts/run.sh     another config
#   STT_URL_ALLOWLIST=127.0.0.1/32 scripts/run.sh   let audio URLs reach loopback (e.g. a local file server)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/cpu.yaml}
PORT=${PORT:-7100}

scripts/setup.sh

mkdir -p .dev && chmod 700 .dev
if [ ! -s .dev/license_key ]; then
  (umask 077; .venv/bin/python -c 'import secrets; print("sk_dev_" + secrets.token_urlsafe(24))' > .dev/license_key)
fi
# The server only ever sees the hash of the key.
.venv/bin/python -c 'import sys; from serve_app.auth import hash_key; print(hash_key(open(".dev/license_key").read().strip()))' > .dev/license_keys
export STT_LICENSE_KEYS_FILE="$PWD/.dev/license_keys"
echo "LICENSE_KEY=$(cat .dev/license_key)"

# Say when the service is ready (the first start compiles the model: about a minute).
(
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null 2>&1; then
      echo "==> ready: http://localhost:${PORT}  (try: curl http://localhost:${PORT}/health)"
      exit 0
    fi
    sleep 1
  done
) &

exec .venv/bin/serve run --address local "$CONFIG"
