#!/usr/bin/env bash
# Set everything up and run the service on the CPU default (port 7100).
# On first start it creates a development license key and prints it as LICENSE_KEY=...
#   CONFIG=configs/prod.yaml scripts/run.sh     another config
#   CONFIG=configs/cpu-multilingual.yaml MODEL=base scripts/run.sh   Whisper base: other languages, detection
#   STT_URL_ALLOWLIST=127.0.0.1/32 scripts/run.sh   let audio URLs reach loopback (e.g. a local file server)
#   CONFIG=configs/prod.yaml OVERRIDE=configs/overrides/prod-on-cpu.yaml scripts/run.sh
#                                                   a config with hardware overrides (serve_app/overlay.py)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/cpu.yaml}
PORT=${PORT:-7100}

scripts/setup.sh ${MODEL:+--model "$MODEL"}

# A development issuer and license key on first start; the server holds only the public key.
mkdir -p .dev && chmod 700 .dev
LICENSE=.venv/bin/stt-license
if [ ! -f .dev/issuer.key ]; then
  $LICENSE keygen --private-key .dev/issuer.key --public-keys .dev/issuer.pub >/dev/null
fi
if [ ! -s .dev/license_key ]; then
  (umask 077; $LICENSE issue --private-key .dev/issuer.key --customer local-dev --environment dev --days 365 \
      --requests-per-minute 600 --concurrent 32 > .dev/license_key)
fi
touch .dev/revoked.txt
export STT_LICENSE_PUBLIC_KEYS="${STT_LICENSE_PUBLIC_KEYS:-$PWD/.dev/issuer.pub}"
export STT_LICENSE_REVOCATIONS="${STT_LICENSE_REVOCATIONS:-$PWD/.dev/revoked.txt}"
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

if [ -n "${OVERRIDE:-}" ]; then
  .venv/bin/python -m serve_app.overlay "$CONFIG" "$OVERRIDE" -o .dev/config.yaml
  CONFIG=.dev/config.yaml
fi
exec .venv/bin/serve run --address local "$CONFIG"
