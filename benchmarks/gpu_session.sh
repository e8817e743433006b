#!/usr/bin/env bash
# The GPU figures the "Production grade" issue asks for, in one bounded run on a CUDA machine
# (the lent device: `run` with timeout_s ~540). Writes JSON + logs under ${OUT:-gpu-results}.
#   1. selective scan: reference vs parallel vs mamba-ssm's kernel (when it imports)
#   2. BehaveGPT training MFU, fp32 vs bf16
#   3. served /next_behavior requests/s on the GPU, adaptive batching vs none
# Needs torch with CUDA: .venv from `bash scripts/setup.sh` when there is one, else the
# machine's python3 with this checkout on PYTHONPATH (the lent device has no internet: missing
# packages travel as wheels, see the device tool's README). mamba-ssm is optional
# (pip install mamba-ssm --no-build-isolation; TORCH_CUDA_ARCH_LIST=9.0 builds faster).
# Each step is bounded and a failed step does not stop the next.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=python3
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENTOML_DO_NOT_TRACK=true HF_HUB_OFFLINE=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
timeout 180 "$PY" benchmarks/scan.py --device cuda --threads 4 --max-ref-len 1024 \
  --out "$OUT/scan_cuda.json" 2>&1 | tee "$OUT/scan.log"
timeout 180 "$PY" benchmarks/mfu.py --out "$OUT/mfu.json" 2>&1 | tee "$OUT/mfu.log"
timeout 240 "$PY" benchmarks/serving.py --quick --out "$OUT/serving_gpu.json" 2>&1 | tee "$OUT/serving.log"
