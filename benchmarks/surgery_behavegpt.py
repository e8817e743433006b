"""Model surgery on BehaveGPT: how much of a behavior family an edit removes, and what it costs.

    behave fit --config pipelines/behavegpt.yaml        # (or bash scripts/demo.sh) first
    python benchmarks/surgery_behavegpt.py --model models:/behave.behavegpt/1

For each behavior family (``risky``, ``churn``: rare families of the generated app log), in one
process, on the model's own fixed user split (the version's ``eval_split`` tag):

1. a probe per layer for "the next event is in the family" (40k training-user positions, scored
   on validation users), the last layer's direction driving the edit (as the paper);
2. the paper's edit (top-k most anti-aligned MLP input rows += alpha·v) over an alpha x top-k grid,
   and the variants (most aligned rows shifted away, projection removal), on validation users;
3. the largest cut whose recall@10 on other behaviors stays within 1% (validation) is scored on
   the held-out test users: before/after top-1 / top-10 family rates, probability mass, sampled
   generation rate, recall@10 on other behaviors and on the family;
4. a control: the same edit (alpha, top_k) along 5 random unit directions instead of the probe's,
   on the test users — what the probe direction adds over "perturb k rows by that much".

Nothing is registered (``behave surgery`` does that). Prints a table, writes JSON (``--out``)
and the sweep plot (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from behave.surgery_pipeline import (  # noqa: E402
    CAPABILITY,
    TARGET,
    capability_change,
    run_surgery,
    target_cut,
)

ALPHAS = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
TOP_KS = [16, 32, 64, 128, 256]
VARIANTS = {  # name -> run_surgery keyword arguments
    "paper: anti-aligned rows, +alpha·v": {},
    "aligned rows, -alpha·v": {"select": "aligned", "sign": -1},
    "aligned rows, projection removed": {"select": "aligned", "mode": "remove"},
    "paper's edit, class-mean difference": {"direction": "mean_difference"},
    "paper's edit, per-block mean differences": {"direction": "mean_difference_per_layer"},
}
VARIANT_ALPHAS, VARIANT_TOP_KS = [2.0, 4.0, 8.0], [32, 128]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models:/behave.behavegpt@champion")
    ap.add_argument("--families", nargs="+", default=["risky", "churn"])
    ap.add_argument("--max-capability-drop", type=float, default=0.01)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/surgery_behavegpt.json"))
    ap.add_argument("--plot", default=str(REPO / "benchmarks/results/surgery_behavegpt.png"))
    args = ap.parse_args()

    quiet = lambda *_: None  # noqa: E731
    report = {
        "model": args.model,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "max_capability_drop": args.max_capability_drop,
        "families": {},
    }
    fig, axes = plt.subplots(1, len(args.families), figsize=(6 * len(args.families), 4.2))
    axes = [axes] if len(args.families) == 1 else list(axes)
    for family, ax in zip(args.families, axes, strict=True):
        started = time.perf_counter()
        main_run = run_surgery(
            args.model, family, ALPHAS, TOP_KS, register=False,
            max_capability_drop=args.max_capability_drop, generation_histories=256, progress=quiet,
        )  # fmt: skip
        entry = {
            "probe_layer": main_run.probe_layer,
            "probe": main_run.probe_metrics,
            "chosen": {"alpha": main_run.config.alpha, "top_k": main_run.config.top_k},
            "before": main_run.before,
            "after": main_run.after,
            "target_reduction": main_run.target_reduction,
            "capability_change": main_run.capability_change,
            "sweep": main_run.sweep,
            "variants": {},
            "table": main_run.table(),
            "seconds": time.perf_counter() - started,
        }
        entry["random_direction_control"] = random_control(args.model, family, main_run)
        for name, kwargs in VARIANTS.items():
            run = run_surgery(
                args.model, family, VARIANT_ALPHAS, VARIANT_TOP_KS, register=False,
                max_capability_drop=args.max_capability_drop, generation_histories=0,
                progress=quiet, **kwargs,
            )  # fmt: skip
            best = max(run.sweep, key=lambda p: p["target_reduction"])
            entry["variants"][name] = {
                "best_val_cut": best["target_reduction"],
                "its_capability_change": best["capability_change"],
                "alpha": best["alpha"],
                "top_k": best["top_k"],
                "chosen_test_cut": run.target_reduction,
                "chosen_test_capability_change": run.capability_change,
            }
        report["families"][family] = entry
        for k in TOP_KS:
            pts = sorted((p for p in main_run.sweep if p["top_k"] == k), key=lambda p: p["alpha"])
            ax.plot(
                [100 * p["capability_change"] for p in pts],
                [100 * p["target_reduction"] for p in pts],
                marker="o",
                label=f"top-k {k}",
            )
        ax.axvline(-2, color="red", lw=0.8, ls="--", label="-2% recall@10 (gate)")
        ax.axhline(50, color="green", lw=0.8, ls="--", label="50% cut (gate)")
        ax.set_xlabel(f"{CAPABILITY} change (%), validation users")
        ax.set_ylabel(f"{TARGET} cut (%)")
        ax.set_title(f"'{family}': alpha {ALPHAS[0]:g}..{ALPHAS[-1]:g} along each line")
        ax.legend(fontsize=7)
        print_family(family, entry)
    fig.suptitle("Model surgery on BehaveGPT (paper's edit, last-layer probe)")
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out} and {args.plot}")


def random_control(model_uri: str, family: str, result, seeds: int = 5) -> dict:
    """The chosen (alpha, top_k) along random unit directions, on the test users."""
    import copy

    from behave import tracking
    from behave.data.user_events_datamodule import UserEventsDataModule
    from behave.explain.behavegpt_behaviors import behavior_rates, family_token_mask
    from behave.explain.surgery import operate
    from behave.inference.behavegpt import BehaveGPTPredictor

    name, version = tracking.model_version_of(model_uri)
    bundle = tracking.resolve_model_dir(f"models:/{name}/{version}")
    predictor = BehaveGPTPredictor.from_dir(bundle)
    split = json.loads(tracking.client().get_model_version(name, version).tags["eval_split"])
    dm = UserEventsDataModule(**split, vocab_from=str(bundle))
    dm.setup("test")
    windows = dm.datasets["test"].tensors
    mask = family_token_mask(predictor.vocab.behaviors, family)
    cuts, changes = [], []
    for seed in range(seeds):
        direction = torch.randn(
            predictor.model.config.d_model, generator=torch.Generator().manual_seed(seed)
        )
        edited = copy.deepcopy(predictor.model)
        operate(edited, direction, result.config)
        after = behavior_rates(edited, windows, mask)
        cuts.append(target_cut(result.before, after))
        changes.append(capability_change(result.before, after))
    return {"target_reductions": cuts, "capability_changes": changes}


def print_family(family: str, entry: dict) -> None:
    print(
        f"\n== {family}: probe layer {entry['probe_layer']} (held-out AUROC "
        f"{entry['probe']['auroc']:.3f}); chosen alpha {entry['chosen']['alpha']:g}, "
        f"top-k {entry['chosen']['top_k']} ({entry['seconds']:.0f} s)"
    )
    print(entry["table"])
    control = entry["random_direction_control"]
    print(
        f"same edit along 5 random directions (test): {TARGET} cut "
        + ", ".join(f"{c:+.1%}" for c in control["target_reductions"])
        + f"; {CAPABILITY} "
        + ", ".join(f"{c:+.2%}" for c in control["capability_changes"])
    )
    print(f"{'variant (its own grid; chosen edit, test)':<44}{'cut':>9}{'recall':>9}")
    for name, v in entry["variants"].items():
        print(f"{name:<44}{v['chosen_test_cut']:>9.1%}{v['chosen_test_capability_change']:>9.2%}")


if __name__ == "__main__":
    main()
