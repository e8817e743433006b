"""Neuroformer benchmark: connectivity recovery, few-shot behavior decoding, next-window
prediction and generation, against the classical baselines, on one simulated circuit.

    behave data generate spikes --out data/spikes              # once (seconds)
    python benchmarks/neuroformer.py                           # train + score (one seed)
    python benchmarks/neuroformer.py --seeds 0 1 --resume      # more seeds; reuse finished runs

Neuroformer is trained by the pipeline the README uses (``behave fit --config
pipelines/neuroformer.yaml --seed_everything <seed>``) in its own working directory under
``benchmarks/runs/``, logged to ``benchmarks/.mlflow``; its numbers are the ``test/*`` metrics the
RegisterModel callback logged (best checkpoint, held-out test trials). The baselines read the
same data folder and the same trial split (``SpikesDataModule``):

- connectivity: lagged **cross-correlation** (PSTH-corrected, lags 1-3 bins) and a fitted
  **GLM**'s coupling weights (multi-output Bernoulli GLM on lagged counts + stimulus + behavior),
  both fitted on the train trials — the trials Neuroformer learned from. Each is scored twice:
  by its largest positive value over the lags (excitation) and, as "(abs)", by its largest
  absolute value (either sign, like the readout's map; a quarter of the edges are inhibitory).
  AUROC / AUPRC against the true adjacency over all off-diagonal pairs; also over the hub rows.
- behavior: **ridge** and a **Poisson GLM** decoder on the binned counts of the last 5 bins,
  fitted on the same ``few_shot_trials`` train trials Neuroformer's behavior head is tuned on;
  R² on the test trials, at Neuroformer's target (the mean behavior of each 50 ms window).
- next window: "the previous 50 ms again" (the neurons that fired in the last 50 ms of the
  previous window), F1 of neuron-id multisets like Neuroformer's greedy generation.
- generation: PSTH correlation of generated test trials vs the real ones, beside the ceiling of
  real vs real (PSTH of one half of the test trials vs the other half).

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "benchmarks" / ".mlflow"
EXPERIMENT = "benchmark-neuroformer"
TRAINED = (
    "behavior_r2",
    "connectivity_auroc",
    "connectivity_auprc",
    "connectivity_auprc_chance",
    "connectivity_auroc_cross_0_previous",
    "connectivity_auroc_cross_1_previous",
    "next_window_precision",
    "next_window_recall",
    "next_window_f1",
    "psth_corr_population",
    "psth_corr_per_neuron_mean",
    "generated_rate_hz",
    "real_rate_hz",
)


def _store_env() -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{STORE / 'mlflow.db'}",
        "BEHAVE_ARTIFACT_ROOT": (STORE / "artifacts").as_uri(),
    }


def _connectivity_map(config: str) -> str:
    """The attention map the pipeline keeps for connectivity (the task's default: readout)."""
    import yaml

    init = yaml.safe_load((REPO / config).read_text())["model"].get("init_args", {})
    return init.get("connectivity_layer", "readout")


def train(args, seed: int) -> dict:
    """One pipeline run (or the finished one, with --resume): its test metrics and run id."""
    workdir = REPO / "benchmarks" / "runs" / f"neuroformer-seed{seed}"
    done = workdir / "result.json"
    if args.resume and done.is_file():
        print(f"seed {seed}: reusing {done}")
        return json.loads(done.read_text())
    workdir.mkdir(parents=True, exist_ok=True)
    STORE.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "behave.cli", "fit", "--config", str(REPO / args.config),
        "--seed_everything", str(seed), "--data.data_dir", str(Path(args.data).resolve()),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.experiment_name", EXPERIMENT,
        "--model.generate_trials", str(args.generate_trials),
        *(["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []),
    ]  # fmt: skip
    print(f"seed {seed}: training ({' '.join(command[3:])})", flush=True)
    start = time.time()
    proc = subprocess.run(
        command, cwd=workdir, env={**os.environ, **_store_env()}, capture_output=True, text=True
    )
    (workdir / "fit.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"seed {seed}: behave fit failed; see {workdir / 'fit.log'}")
    run_id = re.search(r"from run (\w+)", proc.stdout).group(1)
    import mlflow

    client = mlflow.MlflowClient(*(_store_env()["MLFLOW_TRACKING_URI"],) * 2)
    metrics = client.get_run(run_id).data.metrics
    result = {
        "seed": seed,
        "run_id": run_id,
        "train_s": round(time.time() - start, 1),
        **{k: metrics[f"test/{k}"] for k in TRAINED if f"test/{k}" in metrics},
    }
    done.write_text(json.dumps(result, indent=2))
    return result


def baselines(args) -> dict:
    from behave import neural_metrics as nm
    from behave.data.spikes_datamodule import SpikesDataModule

    dm = SpikesDataModule(args.data, few_shot_trials=args.few_shot_trials)
    b = dm.binned
    train, test, few = dm.split["train"], dm.split["test"], dm.split["few_shot"]
    out: dict[str, dict] = {}
    hubs = np.zeros_like(b.adjacency)
    hub_ids = np.flatnonzero(b.adjacency.sum(1) >= 10)
    hubs[hub_ids] = b.adjacency[hub_ids]

    def connectivity(name, fn):
        start = time.time()
        scores = fn()
        rec = nm.connectivity_recovery(scores, b.adjacency)
        hub_rec = nm.connectivity_recovery(scores, hubs)
        out[name] = {
            "connectivity_auroc": rec["auroc"],
            "connectivity_auprc": rec["auprc"],
            "hub_auroc": hub_rec["auroc"],
            "fit_s": round(time.time() - start, 1),
        }
        print(f"{name}: AUROC {rec['auroc']:.3f} AUPRC {rec['auprc']:.3f}", flush=True)
        return scores

    # each baseline twice: excitatory evidence (a strong negative scores low) and |evidence|
    # (either sign), which is what the readout's |score| measures; inhibitory edges are real
    cond = None if b.conditions is None else b.conditions[train]
    covariates = np.concatenate([b.stimulus, b.behavior[..., None]], -1)[train]
    for sign, suffix in (("positive", ""), ("abs", " (abs)")):
        connectivity(
            f"cross-correlation{suffix}",
            lambda sign=sign: nm.cross_correlation_connectivity(
                b.counts[train], max_lag=3, conditions=cond, sign=sign
            ),
        )
        connectivity(
            f"GLM coupling{suffix}",
            lambda sign=sign: nm.glm_coupling(
                b.counts[train], covariates, lags=3, conditions=cond, sign=sign
            ),
        )

    # behavior: the mean of each test window's 5 bins, as Neuroformer's target
    P, C = dm.spec.previous_bins, dm.spec.current_bins
    starts = np.arange(P, b.counts.shape[1] - C + 1, C)
    true = np.stack([b.behavior[test][:, s : s + C].mean(-1) for s in starts], 1)
    for name, fit in (("ridge", nm.fit_ridge_decoder), ("GLM decoder", nm.fit_glm_decoder)):
        decoder = fit(b.counts[few], b.behavior[few], history_bins=5)
        per_bin = decoder.predict(b.counts[test])  # (K, T)
        pred = np.stack([per_bin[:, s : s + C].mean(-1) for s in starts], 1)
        out.setdefault(name, {})["behavior_r2"] = nm.r2_score(true, pred)
        print(f"{name}: behavior R² {out[name]['behavior_r2']:.3f}", flush=True)

    # next window: the last 50 ms again
    predicted, actual = [], []
    for t in test:
        for s in starts:
            last = b.counts[t, s - C : s]
            now = b.counts[t, s : s + C]
            neurons = np.arange(b.counts.shape[2])
            predicted.append(np.repeat(neurons, last.sum(0).astype(np.int64)))
            actual.append(np.repeat(neurons, now.sum(0).astype(np.int64)))
    out["previous 50 ms again"] = {
        f"next_window_{k}": v for k, v in nm.next_spike_scores(predicted, actual).items()
    }

    # generation ceiling: real test trials, one half vs the other
    half = len(test) // 2
    tc = None if b.conditions is None else b.conditions[test]
    ceiling = nm.psth_correlation(
        b.counts[test[:half], P:],
        b.counts[test[half:], P:],
        None if tc is None else tc[:half],
        None if tc is None else tc[half:],
    )
    out["real vs real (half split)"] = {
        "psth_corr_population": ceiling["population"],
        "psth_corr_per_neuron_mean": ceiling["per_neuron_mean"],
    }
    return out


COLUMNS = {
    "conn. AUROC": "connectivity_auroc",
    "conn. AUPRC": "connectivity_auprc",
    "behavior R²": "behavior_r2",
    "next-window F1": "next_window_f1",
    "PSTH r (pop.)": "psth_corr_population",
    "PSTH r (neuron)": "psth_corr_per_neuron_mean",
}


def table(rows: dict[str, dict]) -> str:
    names = list(COLUMNS)
    lines = [
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for method, values in rows.items():
        cells = []
        for col in names:
            v = values.get(COLUMNS[col])
            if v is None:
                cells.append("")
            elif isinstance(v, list):
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
            else:
                cells.append(f"{v:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/spikes")
    p.add_argument("--config", default="pipelines/neuroformer.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--max-epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--few-shot-trials", type=int, default=10, help="as the pipeline (10)")
    p.add_argument("--generate-trials", type=int, default=20, help="test trials generated")
    p.add_argument("--resume", action="store_true", help="reuse finished runs")
    p.add_argument("--out", default="benchmarks/results/neuroformer.json")
    args = p.parse_args()
    if not (Path(args.data) / "spikes.parquet").is_file():
        sys.exit(f"no data in {args.data}: run `behave data generate spikes --out {args.data}`")

    runs = [train(args, seed) for seed in args.seeds]
    rows = {
        "Neuroformer (coupling readout, few-shot head, generation)": {
            k: [r[k] for r in runs if k in r] for k in TRAINED
        }
    }
    rows.update(baselines(args))
    text = table(rows)
    print()
    print(text)
    result = {
        "data": str(Path(args.data).resolve()),
        "seeds": args.seeds,
        "few_shot_trials": args.few_shot_trials,
        "connectivity_map": _connectivity_map(args.config),
        "runs": runs,
        "baselines": {k: v for k, v in rows.items() if not k.startswith("Neuroformer")},
        "table": text,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
