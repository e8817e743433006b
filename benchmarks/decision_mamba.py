"""Decision Mamba benchmark: normalized scores vs DT and BC, and per-action latency.

    python benchmarks/decision_mamba.py                          # everything below
    python benchmarks/decision_mamba.py --skip-scores            # latency table only (~1 min)
    python benchmarks/decision_mamba.py --datasets lunarlander-medium --seeds 0 1 2

Scores: every (dataset, variant, seed) is trained by the same pipeline the README uses
(``behave fit --config pipelines/decision-mamba-lunarlander-medium.yaml`` with the overrides
below), in its own working directory, logged to a benchmark MLflow store
(``benchmarks/.mlflow``). A run's score: the checkpoint it registered (best validation
rollout score over 10 episodes) flown for ``--final-episodes`` (50) more episodes on reset seeds
that neither training nor checkpoint selection saw, the same seeds for every run; D4RL units (random = 0, expert = 100). The table shows mean ± std over training seeds.

    dm        Decision Mamba, self-evolution on (the pipeline's defaults)
    dm-no-se  Decision Mamba, self-evolution off (the ablation)
    dm-ema    Decision Mamba, self-evolution with an EMA teacher (not in the default variants)
    dt        transformers.DecisionTransformerModel, same data, context, units, budget
    bc        behavior cloning (MLP on the current state)

Latency: one action for one episode (batch 1, 1 thread, untrained weights of the trained
sizes) after ``t`` steps of history: Decision Mamba's recurrent ``step`` (O(1) in t) vs
Decision Transformer re-encoding its last ``context`` steps (context = 20, 100, 1000), and
Decision Mamba re-encoding the same window (``mode: window``). Median of ``--latency-repeats``.

Scan speed is ``benchmarks/scan.py`` (results in ``benchmarks/results/scan.json``); its table
is printed here too when that file exists.

Datasets are generated on first use into ``data/offline-rl/<name>``; MuJoCo ones first train
their TD3 behavior policy (cached in ``data/.cache``, resumable: ~5-20 min each here).

Prints tables and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The MuJoCo datasets' TD3 behavior policies (the slow part of making them) are cached beside
# the datasets (data/.cache), not in the home folder, so the benchmark's inputs live together and
# survive on machines where only the checkout persists. An explicit $BEHAVE_CACHE wins.
os.environ.setdefault("BEHAVE_CACHE", str(REPO / "data" / ".cache"))
PIPELINE = REPO / "pipelines" / "decision-mamba-lunarlander-medium.yaml"
FINAL_SEED = 99  # rollout seeds of the table's scores: never used in training or selection
ARGS = argparse.Namespace(final_episodes=50)
VARIANTS = {
    "dm": [],
    "dm-no-se": ["--model.self_evolution", "false"],
    "dm-ema": ["--model.self_evolution_teacher", "ema"],
    "dt": ["--model.architecture", "decision_transformer"],
    "bc": ["--model.architecture", "behavior_cloning"],
}


# ---- scores ------------------------------------------------------------------------------------
def ensure_dataset(name: str, transitions: int) -> Path:
    from behave.data.offline_rl import generate_offline_rl

    out = REPO / "data" / "offline-rl" / name
    if not (out / "manifest.json").is_file():
        env, quality = name.split("-", 1)
        print(f"generating {name} ({transitions:,} transitions) -> {out}")
        generate_offline_rl(out, env=env, quality=quality, num_transitions=transitions, seed=0)
    return out


def train_one(dataset: Path, variant: str, seed: int, args, store: Path) -> dict | None:
    """One training run (or, with ``--resume``, the finished run already in its folder)."""
    workdir = REPO / args.runs_dir / f"{dataset.name}-{variant}-{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "log.txt"
    done = re.search(r"from run ([0-9a-f]{32})", log.read_text()) if log.is_file() else None
    budget = {k: getattr(args, k) for k in ("max_epochs", "windows_per_epoch", "eval_episodes")}
    budget_file = workdir / "budget.json"
    if args.resume and done:
        # a folder is named by (dataset, variant, seed) only: never let a run of another
        # training budget stand in for this one (folders from before budget.json are taken as is)
        trained = json.loads(budget_file.read_text()) if budget_file.is_file() else budget
        if trained != budget:
            raise SystemExit(
                f"{workdir} holds a run trained with {trained}, this call asks for {budget}: "
                "pass another --runs-dir, or remove that folder to retrain it"
            )
        cached = workdir / f"final-{ARGS.final_episodes}.json"
        if cached.is_file():
            row = json.loads(cached.read_text())
            print(
                f"  {dataset.name:28s} {variant:9s} seed {seed}: score {row['score']:6.1f} (cached)"
            )
            return row
        row = collect(done.group(1), dataset, variant, seed, None, store)
        cached.write_text(json.dumps(row))
        return row
    if args.collect_only:
        return None
    cmd = [
        sys.executable, "-m", "behave.cli", "fit", "--config", str(PIPELINE),
        "--data.data_dir", str(dataset), "--seed_everything", str(seed),
        "--trainer.max_epochs", str(args.max_epochs),
        "--data.windows_per_epoch", str(args.windows_per_epoch),
        "--model.eval_episodes", str(args.eval_episodes),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.experiment_name", "benchmark-decision-mamba",
        *VARIANTS[variant],
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "BEHAVE_ARTIFACT_ROOT": str(store / "artifacts"),
    }
    started = time.time()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.time() - started
    log.write_text(proc.stdout + proc.stderr)
    match = re.search(r"from run ([0-9a-f]{32})", proc.stdout)
    if proc.returncode != 0 or not match:  # reported, and left out of the table
        print(f"  {dataset.name:28s} {variant:9s} seed {seed}: FAILED, see {log}")
        return None
    budget_file.write_text(json.dumps(budget))
    row = collect(match.group(1), dataset, variant, seed, seconds, store)
    (workdir / f"final-{ARGS.final_episodes}.json").write_text(json.dumps(row))
    return row


def collect(run_id: str, dataset: Path, variant: str, seed: int, seconds, store: Path) -> dict:
    """A finished run's row: its registered policy rolled out on ``--final-episodes`` fresh
    episodes (reset seeds no run has seen; the same for every run)."""
    import mlflow
    from behave.inference.offline_rl import load_policy
    from behave.rollouts import evaluate_policy

    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    metrics = run.data.metrics
    seconds = seconds or (run.info.end_time - run.info.start_time) / 1000
    bundle = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/artifacts/bundle", tracking_uri=uri
    )
    policy = load_policy(Path(bundle))
    result = evaluate_policy(
        policy,
        policy.meta["env"],
        policy.meta["reference_returns"],
        target_return=policy.meta["target_return"],
        episodes=ARGS.final_episodes,
        seed=FINAL_SEED,
    )
    row = {
        "dataset": dataset.name,
        "variant": variant,
        "seed": seed,
        "score": float(result.scores.mean()),
        "score_episode_std": float(result.scores.std()),
        "return": float(result.returns.mean()),
        "run_final_score_10_episodes": metrics["final/normalized_score"],
        "best_val_score": max(
            m.value for m in client.get_metric_history(run_id, "val/normalized_score")
        ),
        "train_seconds": round(seconds, 1),
        "run_id": run_id,
    }
    # self-evolution's reach: the mean student-teacher gap beside the error to the logged actions
    for key in ("teacher_gap_mse", "logged_action_mse"):
        history = client.get_metric_history(run_id, f"train/{key}")
        if history:
            row[f"se_{key}"] = statistics.fmean(m.value for m in history)
    print(
        f"  {dataset.name:28s} {variant:9s} seed {seed}: score {row['score']:6.1f} ({seconds:.0f} s)"
    )
    return row


def scores(args) -> list[dict]:
    store = REPO / "benchmarks" / ".mlflow"
    store.mkdir(parents=True, exist_ok=True)
    # create the store's tables once, here: parallel first runs would race to create them
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.environ["BEHAVE_ARTIFACT_ROOT"] = str(store / "artifacts")
    from behave import tracking

    tracking.ensure_experiment("benchmark-decision-mamba")
    datasets = [ensure_dataset(d, args.transitions) for d in args.datasets]
    jobs = [(d, v, s) for d in datasets for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(args.parallel) as pool:  # each run is its own 1-thread process
        rows = list(pool.map(lambda j: train_one(*j, args, store), jobs))
    return [r for r in rows if r is not None]


def score_table(rows: list[dict], variants: list[str]) -> list[str]:
    lines = ["| dataset | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cells = []
        for v in variants:
            s = [r["score"] for r in rows if r["dataset"] == dataset and r["variant"] == v]
            cells.append(f"{np.mean(s):.1f} ± {np.std(s):.1f} (n={len(s)})" if s else "-")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    means = []
    for v in variants:
        per_ds = [
            np.mean([r["score"] for r in rows if r["dataset"] == d and r["variant"] == v])
            for d in dict.fromkeys(r["dataset"] for r in rows)
        ]
        means.append(f"**{np.mean(per_ds):.1f}**")
    lines.append("| mean | " + " | ".join(means) + " |")
    return lines


# ---- latency -----------------------------------------------------------------------------------
def latency(args) -> list[dict]:
    from behave.inference.offline_rl import Normalization, Policy, build_model

    torch.set_num_threads(1)
    S, A = 8, 2
    norm = Normalization([0.0] * S, [1.0] * S, [-1.0] * A, [1.0] * A, 100.0)
    rows = []
    for context in args.contexts:
        common = {
            "state_dim": S,
            "act_dim": A,
            "max_timestep": 4096,
            "d_model": 64,
            "num_layers": 3,
        }
        models = {
            "dm-recurrent": (
                "decision_mamba",
                "recurrent",
                {"d_state": 8, "context_length": context},
            ),
            "dm-window": ("decision_mamba", "window", {"d_state": 8, "context_length": context}),
            "dt-window": ("decision_transformer", "window", {"context_length": context}),
        }
        row = {"context": context}
        for name, (arch, mode, extra) in models.items():
            torch.manual_seed(0)
            policy = Policy(build_model(arch, common | extra), arch, norm, mode=mode)
            episodes = policy.start(1, 100.0)
            rng = np.random.default_rng(0)
            # fill the history up to the context first: DT's cost grows with it, DM's does not
            policy.act(episodes, rng.normal(size=(1, S)), None)
            for _ in range(context - 1):
                policy.act(episodes, rng.normal(size=(1, S)), np.zeros(1))
            times = []
            for _ in range(args.latency_repeats):
                obs = rng.normal(size=(1, S))
                t0 = time.perf_counter()
                policy.act(episodes, obs, np.zeros(1))
                times.append(time.perf_counter() - t0)
            row[f"{name}_ms"] = 1000 * statistics.median(times)
        row["dt_over_dm_recurrent"] = row["dt-window_ms"] / row["dm-recurrent_ms"]
        rows.append(row)
        print(
            f"  context {context:5d}: DM step {row['dm-recurrent_ms']:.2f} ms, "
            f"DM window {row['dm-window_ms']:.2f} ms, DT {row['dt-window_ms']:.2f} ms"
        )
    return rows


def latency_table(rows: list[dict]) -> list[str]:
    lines = [
        "| context (steps) | DM recurrent step (ms) | DM re-encode window (ms) | DT re-encode window (ms) | DT / DM step |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['context']} | {r['dm-recurrent_ms']:.2f} | {r['dm-window_ms']:.2f} | "
            f"{r['dt-window_ms']:.2f} | **{r['dt_over_dm_recurrent']:.1f}×** |"
        )
    return lines


def scan_table() -> list[str]:
    path = REPO / "benchmarks" / "results" / "scan.json"
    if not path.is_file():
        return ["(run `python benchmarks/scan.py` for the scan-speed table)"]
    data = json.loads(path.read_text())
    rows = data.get("rows", data if isinstance(data, list) else [])
    lines = ["| L | " + " | ".join(k for k in rows[0] if k != "length") + " |"] if rows else []
    lines += ["|---" * (len(rows[0])) + "|"] if rows else []
    for r in rows:
        lines.append(
            f"| {r.get('length')} | "
            + " | ".join(
                f"{v:.4g}" if isinstance(v, float) else str(v)
                for k, v in r.items()
                if k != "length"
            )
            + " |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--datasets", nargs="+", default=["lunarlander-medium", "lunarlander-medium-replay"]
    )
    p.add_argument(
        "--variants", nargs="+", default=["dm", "dm-no-se", "dt", "bc"], choices=list(VARIANTS)
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--transitions", type=int, default=100_000, help="per generated dataset")
    p.add_argument("--max-epochs", type=int, default=4)
    p.add_argument("--windows-per-epoch", type=int, default=8000)
    p.add_argument("--eval-episodes", type=int, default=10, help="per validation rollout")
    p.add_argument("--final-episodes", type=int, default=50, help="per run, for the table")
    p.add_argument("--parallel", type=int, default=2, help="training processes at once")
    p.add_argument("--contexts", type=int, nargs="+", default=[20, 100, 1000])
    p.add_argument("--latency-repeats", type=int, default=50)
    p.add_argument(
        "--runs-dir",
        default="benchmarks/runs",
        help="one folder per (dataset, variant, seed) run; another budget needs another folder",
    )
    p.add_argument("--resume", action="store_true", help="reuse runs that finished before")
    p.add_argument(
        "--collect-only", action="store_true", help="with --resume: tabulate finished runs only"
    )
    p.add_argument("--skip-scores", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--out", default="benchmarks/results/decision_mamba.json")
    args = p.parse_args()
    ARGS.final_episodes = args.final_episodes

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    lines = []
    if not args.skip_latency:
        print("per-action latency:")
        result["latency"] = latency(args)
        lines += ["", "Per-action latency (batch 1, 1 thread):", *latency_table(result["latency"])]
    if not args.skip_scores:
        print("normalized scores (training runs):")
        result["scores"] = scores(args)
        lines += [
            "",
            f"Normalized score (D4RL units), mean ± std over seeds {args.seeds}:",
            *score_table(result["scores"], args.variants),
        ]
    lines += ["", "Selective scan, fwd+bwd (benchmarks/scan.py):", *scan_table()]
    print("\n".join(lines))
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
