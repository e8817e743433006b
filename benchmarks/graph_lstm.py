"""Graph-LSTM benchmark: trajectory errors (metres) and behavior accuracy vs its ablations.

    behave data generate traffic --out data/traffic --scenes 600 --workers 2   # once
    python benchmarks/graph_lstm.py                                  # 3 variants x 3 seeds
    python benchmarks/graph_lstm.py --variants full lstm --seeds 0 --resume
    python benchmarks/graph_lstm.py --resume --collect-only          # tabulate finished runs

Every (variant, seed) is trained by the pipeline the README uses (``behave fit --config
pipelines/graph-lstm.yaml`` with the overrides below and ``--seed_everything <seed>``), one run
at a time, in its own working directory under ``benchmarks/runs/`` (the pipeline's relative
checkpoint folder stays per run), logged to the benchmark MLflow store ``benchmarks/.mlflow``.
A run's numbers are the ``test/*`` metrics its RegisterModel callback logged: the best
checkpoint (by ``val/fde_5s``) scored on the held-out test scenes. The test scenes depend only
on the data and ``data.split_seed``, so every run of one data folder is scored on the same
windows; the table shows mean ± std over training seeds.

    full    Graph-LSTM: graph stream + spectral clustering regularizer (the pipeline's defaults)
    no-reg  the same without the regularizer
    lstm    the plain LSTM encoder-decoder (stream 1 alone)
    cv      constant velocity, not trained: the ``test/cv_*`` metrics every run logs beside its
            own (identical across runs), taken from the ``full`` run of each seed if there is one;
            its behavior accuracy is the labelling rule applied to its extrapolation

Label ceiling (not trained, a few seconds): the behavior labels are the centrality rule applied
to the true future, so how well they can be predicted depends on how well the future is known.
On the same test windows the rule is applied to forecasts between constant velocity and the
truth (CV + λ·(truth − CV) for every agent at once) and its accuracy is reported against their
FDE@5s: the accuracy the rule reaches on a forecast of that quality.

Prints the tables and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "benchmarks" / ".mlflow"
EXPERIMENT = "benchmark-graph-lstm"
VARIANTS = {
    "full": [],
    "no-reg": ["--model.regularizer_weight", "0"],
    "lstm": ["--model.graph_stream", "false", "--model.regularizer_weight", "0"],
}
ROWS = ["cv", "lstm", "no-reg", "full"]  # table order: baseline first, full model last
COLUMNS = {  # table column -> metric under test/ (cv_ prefixed for the baseline)
    "ADE@3s": "ade_3s",
    "FDE@3s": "fde_3s",
    "ADE@5s": "ade_5s",
    "FDE@5s": "fde_5s",
    "behavior acc.": "behavior_weighted_accuracy",
    "balanced acc.": "behavior_balanced_accuracy",
}
RUN_ID = re.compile(r"from run ([0-9a-f]{32})")


def store_uri() -> str:
    return f"sqlite:///{STORE / 'mlflow.db'}"


def train_one(data_dir: Path, variant: str, seed: int, args: argparse.Namespace) -> dict | None:
    """One training run (or, with ``--resume``, the finished run already in its folder)."""
    config = (REPO / args.config).resolve()
    workdir = REPO / "benchmarks" / "runs" / f"{config.stem}-{data_dir.name}-{variant}-{seed}"
    cmd = [
        sys.executable, "-m", "behave.cli", "fit", "--config", str(config),
        "--data.data_dir", str(data_dir), "--seed_everything", str(seed),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.experiment_name", EXPERIMENT,
        *(["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []),
        *VARIANTS[variant], *args.extra,
    ]  # fmt: skip
    # log.txt is the run's record: the command, fit's output (with the run id) and wall time
    log = workdir / "log.txt"
    text = log.read_text() if log.is_file() else ""
    done = RUN_ID.search(text)
    if args.resume and done:
        logged = re.search(r"^command: (.*)$", text, re.M)
        if logged and json.loads(logged.group(1)) != cmd[3:]:  # say so, and still use it
            print(f"  note: {workdir.name} was trained with other settings: {logged.group(1)}")
        wall = re.search(r"^wall_seconds: ([0-9.]+)$", text, re.M)
        print(f"  {variant:6s} seed {seed}: reusing run {done.group(1)}")
        return collect(done.group(1), variant, seed, float(wall.group(1)) if wall else None)
    if args.collect_only:
        print(f"  {variant:6s} seed {seed}: no finished run in {workdir.relative_to(REPO)}")
        return None
    # a fresh run: stale checkpoints of an earlier (longer) run must not be mistaken for its own
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": store_uri(),
           "BEHAVE_ARTIFACT_ROOT": str(STORE / "artifacts")}  # fmt: skip
    print(f"  {variant:6s} seed {seed}: training in {workdir.relative_to(REPO)} ...", flush=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.time() - started
    log.write_text(
        f"command: {json.dumps(cmd[3:])}\n{proc.stdout}{proc.stderr}\nwall_seconds: {seconds:.1f}\n"
    )
    match = RUN_ID.search(proc.stdout)
    if proc.returncode != 0 or not match:  # reported, and left out of the table
        print(f"  {variant:6s} seed {seed}: FAILED, see {log}")
        return None
    return collect(match.group(1), variant, seed, seconds)


def collect(run_id: str, variant: str, seed: int, seconds: float | None) -> dict:
    """A finished run's row: its ``test/*`` metrics (``cv_*`` included), prefix dropped."""
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=store_uri()).get_run(run_id)
    metrics = {
        k.removeprefix("test/"): v for k, v in run.data.metrics.items() if k.startswith("test/")
    }
    if not metrics:
        raise SystemExit(f"run {run_id} ({variant}, seed {seed}) logged no test/* metrics")
    row = {
        "variant": variant,
        "seed": seed,
        "metrics": dict(sorted(metrics.items())),
        # wall time of the whole fit process (None: not in log.txt); MLflow's run times cover
        # only part of it (3 s of a 19 s tiny fit), so they are no stand-in
        "train_seconds": None if seconds is None else round(seconds, 1),
        "run_id": run_id,
    }
    print(
        f"  {variant:6s} seed {seed}: FDE@5s {metrics.get('fde_5s', np.nan):.2f} m "
        f"(cv {metrics.get('cv_fde_5s', np.nan):.2f} m)"
        + (f", {seconds / 60:.1f} min" if seconds is not None else "")
    )
    return row


def cv_rows(rows: list[dict]) -> list[dict]:
    """The constant-velocity baseline per seed: from that seed's ``full`` run, else the first;
    a run that logged cv's behavior accuracy (the labelling rule on its extrapolation; runs
    since that metric was added) is preferred, as the baseline is the same in every run."""
    out = []
    for seed in dict.fromkeys(r["seed"] for r in rows):
        runs = sorted(
            (r for r in rows if r["seed"] == seed),
            key=lambda r: (
                "cv_behavior_weighted_accuracy" not in r["metrics"],
                r["variant"] != "full",
            ),
        )
        m = runs[0]["metrics"]
        cv = {k.removeprefix("cv_"): v for k, v in m.items() if k.startswith("cv_")}
        out.append({"variant": "cv", "seed": seed, "metrics": cv, "from_run": runs[0]["run_id"]})
    return out


def aggregate(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """variant -> column -> {mean, std, n} over seeds (population std, as the DM benchmark)."""

    def stat(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}

    table: dict[str, dict[str, dict]] = {}
    for variant in ROWS:
        runs = [r for r in rows if r["variant"] == variant]
        values = {
            c: [r["metrics"][k] for r in runs if k in r["metrics"]] for c, k in COLUMNS.items()
        }
        values["train min"] = [r["train_seconds"] / 60 for r in runs if r.get("train_seconds")]
        if runs:
            table[variant] = {column: stat(v) for column, v in values.items() if v}
    return table


def render(table: dict[str, dict[str, dict]]) -> list[str]:
    columns = [*COLUMNS, "train min"]
    lines = ["| variant | " + " | ".join(columns) + " | n |", "|---" * (len(columns) + 2) + "|"]
    for variant, cells in table.items():
        text = []
        for column in columns:
            c = cells.get(column)
            # accuracies: 3 decimals; metres and minutes: 2
            digits = 3 if "acc" in column else 2
            text.append(f"{c['mean']:.{digits}f} ± {c['std']:.{digits}f}" if c else "–")
        n = max((c["n"] for c in cells.values()), default=0)
        lines.append(f"| {variant} | " + " | ".join(text) + f" | {n} |")
    return lines


def comparisons(table: dict[str, dict[str, dict]]) -> list[str]:
    """The Done-when checks at a glance: full beats cv and lstm, and the regularizer helps."""

    def mean(variant: str, column: str) -> float | None:
        return table.get(variant, {}).get(column, {}).get("mean")

    lines = []
    full5 = mean("full", "FDE@5s")
    for other in ("cv", "lstm"):
        theirs = mean(other, "FDE@5s")
        if full5 is not None and theirs:
            lines.append(
                f"full vs {other}: FDE@5s {full5:.2f} / {theirs:.2f} m = {full5 / theirs:.3f}"
                f" ({'better' if full5 < theirs else 'NOT better'})"
            )
    deltas = []
    for column in ("FDE@3s", "FDE@5s"):
        a, b = mean("full", column), mean("no-reg", column)
        if a is not None and b is not None:
            deltas.append(f"{column} {a:.2f} vs {b:.2f} m (Δ {a - b:+.2f})")
    if deltas:
        lines.append("regularizer: full vs no-reg " + ", ".join(deltas) + " (Δ < 0: it helps)")
    return lines


def label_ceiling(data_dir: Path, config: Path) -> list[dict]:
    """The labelling rule's accuracy on forecasts CV + λ·(truth − CV), λ = 0 (constant
    velocity) … 1 (the truth), on the test windows the runs are scored on (the config's data
    settings), against those forecasts' FDE@5s."""
    from behave.data.traffic_behavior import label_behaviors
    from behave.data.traffic_datamodule import TrafficDataModule
    from behave.trajectory_metrics import constant_velocity_forecast

    data = yaml.safe_load(config.read_text())["data"]["init_args"] | {"data_dir": str(data_dir)}
    dm = TrafficDataModule(**data)
    dm.setup("test")
    w = dm.windows["test"].tensors
    observed, future, future_present = w["observed"], w["future"], w["future_present"]
    labelled = w["behavior"] >= 0
    cv = constant_velocity_forecast(observed, dm.hz, future.shape[2])  # the table's baseline
    at_5s = labelled & future_present[:, :, -1]
    rows = []
    for lam in (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        forecast = cv + lam * (future - cv)
        # the rule's window, as the datamodule labels the truth: last observed frame + horizon
        positions = torch.cat([observed[:, :, -1:], forecast], dim=2).transpose(1, 2)
        present = torch.cat([w["present"].unsqueeze(-1), future_present], dim=2).transpose(1, 2)
        predicted = label_behaviors(positions, present, dm.rule, dm.hz)
        rows.append({
            "lambda": lam,
            "fde_5s": float((forecast[:, :, -1] - future[:, :, -1]).norm(dim=-1)[at_5s].mean()),
            "rule_accuracy": float((predicted[labelled] == w["behavior"][labelled]).float().mean()),
        })  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/traffic", help="relative to the repo root")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--config", default="pipelines/graph-lstm.yaml")
    p.add_argument("--resume", action="store_true", help="reuse runs that finished before")
    p.add_argument(
        "--collect-only", action="store_true", help="only tabulate finished runs (implies --resume)"
    )
    p.add_argument("--out", default="benchmarks/results/graph_lstm.json")
    p.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="last: CLI overrides appended to every fit, e.g. --extra --trainer.limit_train_batches 2",
    )
    args = p.parse_args()
    args.resume = args.resume or args.collect_only
    data_dir = (REPO / args.data_dir).resolve()  # absolute: each fit runs in its own cwd
    if not (data_dir / "tracks.parquet").is_file():
        print(
            f"no traffic data in {data_dir}; generate it first:\n"
            f"  behave data generate traffic --out {args.data_dir} --scenes 600 --workers 2",
            file=sys.stderr,
        )
        raise SystemExit(2)

    STORE.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = store_uri()
    os.environ["BEHAVE_ARTIFACT_ROOT"] = str(STORE / "artifacts")
    from behave import tracking

    # created here with behave's artifact location, before the first fit
    tracking.ensure_experiment(EXPERIMENT)
    print(f"Graph-LSTM runs on {data_dir} ({args.config}):")
    rows = []
    for seed in args.seeds:  # one process at a time: runs are timed, and cores are shared
        for variant in args.variants:
            row = train_one(data_dir, variant, seed, args)
            if row is not None:
                rows.append(row)
    if not rows:
        raise SystemExit("no finished runs to tabulate")
    baseline = cv_rows(rows)
    table = aggregate(rows + baseline)
    lines = [
        "",
        f"Test scenes of {data_dir.name}, metres (ADE/FDE) and accuracies, mean ± std over "
        f"seeds {sorted({r['seed'] for r in rows})}:",
        *render(table),
        "",
        *comparisons(table),
    ]
    ceiling = label_ceiling(data_dir, (REPO / args.config).resolve())
    lines += [
        "",
        "Label ceiling: the labelling rule applied to forecasts CV + λ·(truth − CV):",
        "| λ | FDE@5s (m) | rule accuracy |",
        "|---|---|---|",
        *(f"| {r['lambda']:.2f} | {r['fde_5s']:.2f} | {r['rule_accuracy']:.3f} |" for r in ceiling),
    ]
    print("\n".join(lines))
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"}
        | {"data_dir": str(data_dir)},
        "runs": rows,
        "cv": baseline,
        "table": table,
        "label_ceiling": ceiling,
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
