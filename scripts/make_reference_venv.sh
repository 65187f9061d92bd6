#!/usr/bin/env bash
# Create the isolated "reference" venv with AdapterHub's `adapters` library and cleanlab (used by interop tests
# and benchmarks). Idempotent: a marker file makes a second run return at once.
# Location: ${ADAPTERLAB_REFERENCE_VENV:-.venvs/adapterhub}, relative to the repo root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${ADAPTERLAB_REFERENCE_VENV:-.venvs/adapterhub}"
PY_BOOT="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
PINS=(transformers==4.57.6 adapters==1.3.0 safetensors numpy accelerate cleanlab==2.9.0)
MARKER="$VENV/.adapterlab-reference-complete"
STAMP="torch==$TORCH_VERSION ${PINS[*]}"

# Keep venvs out of git.
if [ ! -f .gitignore ] || ! grep -qxF '.venvs/' .gitignore; then
    if [ -s .gitignore ] && [ -n "$(tail -c1 .gitignore)" ]; then echo >> .gitignore; fi
    echo '.venvs/' >> .gitignore
fi

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
    echo "reference venv already complete: $VENV"
    echo "python: $(cd "$VENV" && pwd)/bin/python"
    exit 0
fi

rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY_BOOT" -m venv "$VENV"
fi
pip_install() {  # quiet pip; drops the noise about absent local index folders
    local log
    log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    grep -v 'is ignored: it is neither a file nor a directory' "$log" || true
    rm -f "$log"
}
# torch first: pinned, so pip picks the local CPU wheel instead of a multi-GB CUDA build.
pip_install "torch==$TORCH_VERSION"
pip_install "torch==$TORCH_VERSION" "${PINS[@]}"
"$VENV/bin/python" -c "import torch, transformers, adapters; print('torch', torch.__version__, '| transformers', transformers.__version__, '| adapters', adapters.__version__)"

echo "$STAMP" > "$MARKER"
echo "reference venv ready: $VENV"
echo "python: $(cd "$VENV" && pwd)/bin/python"
