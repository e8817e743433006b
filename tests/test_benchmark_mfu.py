"""benchmarks/mfu.py: the MFU arithmetic and a CPU smoke run (the real figures need a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.mfu import peak_tflops  # noqa: E402


def test_peak_is_looked_up_by_device_and_precision():
    assert peak_tflops("NVIDIA H200", "bf16", None) == 989.4
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32", None) == 19.5
    assert peak_tflops("CPU (x86_64, 1 threads)", "bf16", None) is None
    assert peak_tflops("CPU (x86_64, 1 threads)", "bf16", 2.0) == 2.0


def test_quick_run_counts_flops_and_writes_both_precisions(tmp_path):
    out = tmp_path / "mfu.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/mfu.py", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = {r["precision"]: r for r in result["rows"]}
    assert set(rows) == {"fp32", "bf16"}
    params = result["config"]["params"]
    tokens = result["config"]["batch"] * result["config"]["context"]
    for r in rows.values():
        # forward + backward is at least 6 FLOPs per parameter per token (minus embeddings,
        # which are lookups): a counter that missed the backward would fall far below
        assert r["flops_per_step"] > 2 * params * tokens
        assert r["tokens_per_s"] > 0 and r["mfu"] is None  # no CPU peak table
    assert "MFU" in proc.stdout and result["commit"]
