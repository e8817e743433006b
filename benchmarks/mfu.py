"""BehaveGPT training throughput and MFU (model FLOPs utilization), fp32 vs bf16 in one run.

    python benchmarks/mfu.py                 # GPU config: d_model 768, 12 layers, context 256
    python benchmarks/mfu.py --quick         # a CPU-sized config (seconds; the CI smoke test)
    python benchmarks/mfu.py --peak-tflops 989   # MFU against a peak you supply

Times full training steps (forward, next-behavior cross-entropy, backward, AdamW) of the plain
``BehaveGPT`` module on random event batches on the device behave picks (``BEHAVE_DEVICE``,
behave/device.py), once in fp32 and once under bf16 autocast where the device supports it. The
FLOPs of one step are counted by torch's FlopCounterMode (matmuls and attention, forward and
backward), so MFU = counted FLOPs x steps/s / peak. The peak is looked up from the device name
(dense bf16 / fp32 tensor-core-free figures of NVIDIA's data sheets) unless ``--peak-tflops``
is given; on a CPU there is no table, and MFU is reported as n/a. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run_info, from any cwd
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from behave.device import bf16_supported, resolve_device  # noqa: E402
from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig, EventBatch  # noqa: E402
from benchmarks.run_info import device_name, git_commit, write_json  # noqa: E402

# Dense peak TFLOP/s (no sparsity) by device-name fragment: (bf16, fp32 without TF32)
PEAKS = {
    "H200": (989.4, 66.9),
    "H100": (989.4, 66.9),  # SXM; the PCIe card is lower: pass --peak-tflops
    "A100": (312.0, 19.5),
    "L40S": (362.1, 91.6),
    "A10G": (70.0, 31.2),
}


def peak_tflops(name: str, precision: str, given: float | None) -> float | None:
    if given:
        return given
    for fragment, (bf16, fp32) in PEAKS.items():
        if fragment in name:
            return bf16 if precision == "bf16" else fp32
    return None


def random_batch(
    config: BehaveGPTConfig, batch: int, device: torch.device, seed: int
) -> EventBatch:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, config.context_length + 1)  # one more: inputs and next-behavior targets

    def ints(high: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=g)

    events = EventBatch(
        behavior=torch.randint(2, config.num_behaviors, shape, generator=g),
        weekday=ints(7),
        time_slot=ints(config.num_time_slots),
        location=ints(config.num_locations),
        domain=ints(config.num_domains),
    )
    return events.to(device)


def _shift(events: EventBatch) -> tuple[EventBatch, torch.Tensor]:
    inputs = EventBatch(**{k: v[:, :-1] for k, v in vars(events).items()})
    return inputs, events.behavior[:, 1:]


def measure(config, batch, device, precision, steps, warmup) -> dict:
    torch.manual_seed(0)
    model = BehaveGPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    inputs, targets = _shift(random_batch(config, batch, device, seed=0))
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step() -> float:
        with autocast:
            logits = model(inputs).logits
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten()
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "precision": precision,
        "step_ms": 1000 * seconds,
        "tokens_per_s": batch * config.context_length / seconds,
        "flops_per_step": flops,
        "achieved_tflops": flops / seconds / 1e12,
        "final_loss": float(loss.detach()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized model and few steps")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--behaviors", type=int, default=4096, help="behavior vocabulary size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="override the peak table")
    p.add_argument("--out", default="benchmarks/results/mfu.json")
    args = p.parse_args()
    if args.quick:
        args.d_model, args.layers, args.heads, args.context = 64, 2, 4, 32
        args.behaviors, args.batch, args.steps, args.warmup = 256, 8, 3, 1

    device = resolve_device()
    config = BehaveGPTConfig(
        num_behaviors=args.behaviors, num_locations=8, num_domains=4,
        context_length=args.context, d_model=args.d_model, num_layers=args.layers,
        num_heads=args.heads, dropout=0.0,
    )  # fmt: skip
    precisions = ["fp32"] + (["bf16"] if bf16_supported(device) or args.quick else [])
    name = device_name()
    rows = []
    for precision in precisions:
        row = measure(config, args.batch, device, precision, args.steps, args.warmup)
        peak = peak_tflops(name, precision, args.peak_tflops)
        row["peak_tflops"] = peak
        row["mfu"] = row["achieved_tflops"] / peak if peak else None
        rows.append(row)
    base = rows[0]["tokens_per_s"]
    for row in rows:
        row["speedup_vs_fp32"] = row["tokens_per_s"] / base

    params = sum(p.numel() for p in BehaveGPT(config).parameters())
    print(f"BehaveGPT {params / 1e6:.1f} M params, batch {args.batch} x {args.context}, {name}")
    print(f"{'precision':<10}{'step ms':>9}{'tokens/s':>12}{'TFLOP/s':>9}{'MFU':>8}{'x fp32':>8}")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(
            f"{r['precision']:<10}{r['step_ms']:>9.1f}{r['tokens_per_s']:>12,.0f}"
            f"{r['achieved_tflops']:>9.2f}{mfu:>8}{r['speedup_vs_fp32']:>8.2f}"
        )
    result = {
        "benchmark": "behavegpt_mfu",
        "device": name,
        "commit": git_commit(),
        "config": {**vars(args), "params": params},
        "rows": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
