#!/usr/bin/env bash
# README command (2): set up (if needed) and run the test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} BENTOML_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 MPLBACKEND=Agg
exec python -m pytest "$@"
