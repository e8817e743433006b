#!/usr/bin/env bash
# Creates .venv (if missing) and installs behave with the pinned stack. Idempotent.
#   torch: `pip install torch==2.13.0` gives the CPU build on machines without a GPU here and
#   the default CUDA build from PyPI on Linux machines with one; BEHAVE_TORCH_INDEX picks
#   another index (e.g. https://download.pytorch.org/whl/cu128) when you need a specific CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.behave-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "==> .venv is up to date"
  exit 0
fi
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  echo "==> installing torch 2.13.0"
  if [ -n "${BEHAVE_TORCH_INDEX:-}" ]; then
    pip install -q torch==2.13.0 --index-url "$BEHAVE_TORCH_INDEX"
  else
    pip install -q torch==2.13.0
  fi
fi
echo "==> installing behave and its stack (constraints.txt keeps torch as installed)"
pip install -q -c constraints.txt -e ".[serve,explain,surgery,rl,mujoco,traffic,dev]"
echo "$want" > "$stamp"
echo "==> ready: . .venv/bin/activate && behave --help"
