#!/usr/bin/env bash
# The seed's cURL request. Needs LICENSE_KEY; API_URL and AUDIO_URL default as in the docs.
set -euo pipefail
API_URL=${API_URL:-http://localhost:7100}
AUDIO_URL=${AUDIO_URL:-https://example.com/audio.wav}
curl -sS -X POST "$API_URL/v1/listen" \
  -H "Authorization: Token ${LICENSE_KEY:?set LICENSE_KEY}" \
  -H "Content-Type: application/json" \
  -d "{\"url\": \"$AUDIO_URL\"}"
echo
