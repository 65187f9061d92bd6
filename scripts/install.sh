#!/usr/bin/env bash
# Install AdapterLab into the current Python environment.
# torch comes first and explicitly: a CUDA build where there is an NVIDIA GPU, the CPU build elsewhere
# (a bare `torch` requirement would pull a multi-GB CUDA build onto CPU-only machines).
# Usage: scripts/install.sh [--test]   (--test adds the test tools, Chromium for browser tests
#                                         and the AdapterHub reference venv for interop tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${ADAPTERLAB_TORCH_VERSION:-2.13.0}
pip_q() { "$PY" -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location\|is ignored\|root user" || true; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "installing torch $TORCH_VERSION (CUDA build: a GPU is present)"
    pip_q "torch==$TORCH_VERSION"
  elif tmp=$(mktemp -d) && "$PY" -m pip download -q --no-deps --no-index -d "$tmp" "torch==$TORCH_VERSION" \
       >/dev/null 2>&1 && ls "$tmp" | grep -q '+cpu'; then
    echo "installing torch $TORCH_VERSION (local CPU build)"
    pip_q "$tmp"/torch-*.whl
  else
    echo "installing torch $TORCH_VERSION (CPU build from download.pytorch.org)"
    pip_q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"$PY" -c "import torch" || { echo "torch failed to install" >&2; exit 1; }

if [[ "${1:-}" == "--test" ]]; then
  # The reference venv is separate from this environment: it builds while the rest installs.
  (scripts/make_reference_venv.sh >/dev/null || echo "reference venv not built: interop tests will skip") &
  reference=$!
  pip_q -e ".[test]"
  if ! [ -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium for the browser tests"
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 &&
      apt-get install -y -q chromium >/dev/null 2>&1; }) || echo "Chromium not installed: browser tests will skip"
  fi
  wait "$reference"
else
  pip_q -e .
fi
"$PY" -m pip check >/dev/null 2>&1 || true
echo "AdapterLab installed: run 'adapterlab --help'"
