"""Selective-scan speed: sequential reference vs chunked parallel scan (vs mamba-ssm's kernel).

    python benchmarks/scan.py                        # L = 256, 1024, 4096 on CPU, 1 thread
    python benchmarks/scan.py --max-ref-len 1024     # skip the slow reference above L = 1024
    python benchmarks/scan.py --device cuda          # adds the kernel where mamba_ssm imports

Times one forward + backward (gradients for every input) of the Mamba-1 configuration used in
practice: delta_softplus with a delta_bias, skip D, gate z, A = -(1..N) per channel, on the same
inputs for every path. Reports the median of ``--repeats`` timed runs after one warm-up, the
speed-up of each path over the reference measured in this run, and the parallel scan's largest
relative difference from the reference (max|a - b| / max|b| over the output and all gradients).
Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run_info, from any cwd
from behave.ops.selective_scan import (  # noqa: E402
    _mamba_kernel,
    selective_scan_parallel,
    selective_scan_reference,
)
from benchmarks.run_info import write_json  # noqa: E402


def make_inputs(batch: int, dim: int, state: int, length: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    inputs = {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) - 1.0,  # softplus(N(-1, 1)) + bias ~ Mamba's dt range
        "A": -torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1),  # Mamba's S4D-real
        "B": randn(batch, state, length),
        "C": randn(batch, state, length),
        "D": torch.ones(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim) * 0.5,
    }
    return {k: v.to(device).requires_grad_() for k, v in inputs.items()}


def fwd_bwd(fn, inputs: dict, grad_out: torch.Tensor):
    out = fn(**inputs, delta_softplus=True)
    grads = torch.autograd.grad(out, list(inputs.values()), grad_out)
    return out, grads


def time_path(fn, inputs: dict, grad_out: torch.Tensor, repeats: int, device: str) -> float:
    times = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fwd_bwd(fn, inputs, grad_out)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # first run is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64, help="D: channels (d_inner)")
    parser.add_argument("--state", type=int, default=16, help="N: state size (d_state)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-ref-len", type=int, default=4096, help="skip the reference above")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/scan.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paths = {"reference": selective_scan_reference, "parallel": selective_scan_parallel}
    kernel, why = _mamba_kernel() if args.device == "cuda" else (None, "CPU run")
    if kernel is not None:
        paths["kernel"] = kernel
    print(f"kernel: {'included' if kernel else 'not included'} ({why})")

    rows = []
    for length in args.lengths:
        inputs = make_inputs(args.batch, args.dim, args.state, length, args.device)
        grad_out = torch.randn(args.batch, args.dim, length, device=args.device)
        row = {"length": length}
        for name, fn in paths.items():
            if name == "reference" and length > args.max_ref_len:
                continue
            row[f"{name}_ms"] = 1e3 * time_path(fn, inputs, grad_out, args.repeats, args.device)
        if "reference_ms" in row:
            ref = fwd_bwd(selective_scan_reference, inputs, grad_out)
            par = fwd_bwd(selective_scan_parallel, inputs, grad_out)
            row["parallel_max_rel_err"] = max(
                rel_err(p, r) for p, r in zip((par[0], *par[1]), (ref[0], *ref[1]), strict=True)
            )
            for name in paths:
                if name != "reference":
                    row[f"{name}_speedup"] = row["reference_ms"] / row[f"{name}_ms"]
        rows.append(row)
        print(f"L={length} done", flush=True)

    columns = ["length"] + [f"{n}_ms" for n in paths]
    columns += [f"{n}_speedup" for n in paths if n != "reference"] + ["parallel_max_rel_err"]
    print()
    print(" | ".join(f"{c:>20}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append(
                f"{'-':>20}" if v is None else f"{v:>20.3g}" if isinstance(v, float) else f"{v:>20}"
            )
        print(" | ".join(cells))

    result = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "what": "median ms of one forward+backward (all input grads), delta_softplus, D, z, delta_bias",
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg(),  # other jobs on the machine slow both paths
        "kernel": why,
        "rows": rows,
    }
    print()
    write_json(args.out, result)


if __name__ == "__main__":
    main()
