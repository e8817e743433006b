"""Explainer benchmark: TimeX vs Captum attributions against ground truth, as the TimeX authors
score them, on the four synthetic sets (and faithfulness on a real UCR set).

    python benchmarks/explainers.py                                   # 4 sets x 3 splits
    python benchmarks/explainers.py --datasets freqshapes --splits 0  # one set, one split
    python benchmarks/explainers.py --real GunPoint                   # + a real set (aeon)

For each dataset and data split (the generator's seed: a fresh 5000/100/1000 draw), in one
process on one device:

1. the data folder is generated (``behave data generate timeseries-synth``'s code);
2. the black box is trained with the classifier pipeline's task (``TSClassifierTask``, the
   hyper-parameters of ``pipelines/tsclassifier-<dataset>.yaml``), best val-loss epoch kept;
3. TimeX is trained against it (``TimeXTask``, ``pipelines/timex-<dataset>.yaml``'s values),
   the epoch its pipeline's ModelCheckpoint keeps: best val loss (FreqShapes, GunPoint), or
   best val AUPRC (SeqComb-UV, SeqComb-MV, LowVarDetect: the validation split's ground truth;
   the test split's is only used to score);
4. every method explains the same test series (the classifier's predicted class): TimeX in one
   forward pass; Integrated Gradients (50 steps, zero baseline), DeepLift, Saliency, Occlusion
   (window 5). Scores: AUPRC / AUP / AUR against the ground truth, null class (SeqComb's 0)
   dropped, per-series min-max normalized raw attributions (``behave.explain.metrics``), and
   wall-clock per explained series on this device (each method alone, after a warm-up).

Mean ± standard error over the splits, as the authors report. The ratio "IG / TimeX" is the
per-series time of IG-50 over TimeX's, measured in the same run. Real sets (``--real``, needs
aeon) have no ground truth: the faithfulness gap (accuracy drop when the top-k% attributed cells
are replaced, minus the drop for random cells) is reported instead. No MLflow: runs are plain
Lightning fits under ``benchmarks/runs/explainers/``; ``--resume`` reuses finished ones (on a
fresh clone: the runs the committed table holds, so one set can be rerun alone) and, for a run
not finished, the classifier its work dir holds if the classifier pipeline is unchanged
(``classifier/fit.json``): to retrain only the explainers, point ``--runs-dir`` at an empty
folder and ``--out`` at ``/dev/null``.

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

# what the user asked for (None: nothing): the parallel runs below split the cores among
# themselves unless told otherwise
_USER_THREADS = os.environ.get("OMP_NUM_THREADS")
os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.run_info import device_name, git_commit  # noqa: E402

RUNS = REPO / "benchmarks" / "runs" / "explainers"
SYNTH = ("freqshapes", "seqcomb-uv", "seqcomb-mv", "lowvardetect")
METHODS = ("timex", "integrated_gradients", "deeplift", "saliency", "occlusion")
# Queen et al. 2023, Table 2 (AUPRC of TimeX), the targets
PUBLISHED_TIMEX_AUPRC = {
    "freqshapes": 0.8324,
    "seqcomb-uv": 0.7124,
    "seqcomb-mv": 0.6878,
    "lowvardetect": 0.8673,
}


def _pipeline(kind: str, dataset: str) -> dict:
    """init_args of the model and trainer max_epochs in pipelines/<kind>-<dataset>.yaml."""
    path = REPO / "pipelines" / f"{kind}-{dataset.lower()}.yaml"
    if not path.is_file():
        path = REPO / "pipelines" / f"{kind}-freqshapes.yaml"
    config = yaml.safe_load(path.read_text())
    args = dict(config["model"]["init_args"])
    # the checkpoint the pipeline keeps (its ModelCheckpoint's monitor), so the benchmark scores
    # the explainer `behave fit` would register
    monitor = ("val/loss", "min")
    for callback in config["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("ModelCheckpoint"):
            init = callback.get("init_args", {})
            monitor = (init.get("monitor", "val/loss"), init.get("mode", "min"))
    return {"model": args, "max_epochs": config["trainer"]["max_epochs"], "monitor": monitor}


def _epoch_lines(label: str, monitor: tuple[str, str]):
    """A Lightning callback printing one line per validation epoch: the monitored metric (and
    validation accuracy, when logged), the best so far, and the time left at the pace so far.
    Why: SeqComb fits run for an hour on 2 cores, and a run that has stopped improving is
    worth seeing before it ends."""
    from lightning.pytorch.callbacks import Callback

    class EpochLines(Callback):
        def on_train_start(self, trainer, module):
            self.start, self.best = time.perf_counter(), None

        def on_validation_end(self, trainer, module):
            # not on_validation_epoch_end: callbacks run that before the task's own hook, which
            # is where TimeX logs val/auprc (the ModelCheckpoint also reads it here)
            if trainer.sanity_checking:
                return
            metrics = trainer.callback_metrics
            value = float(metrics[monitor[0]])
            better = max if monitor[1] == "max" else min
            self.best = value if self.best is None else better(self.best, value)
            done = trainer.current_epoch + 1
            pace = (time.perf_counter() - self.start) / done
            extra = ""
            if "val/accuracy" in metrics and monitor[0] != "val/accuracy":
                extra = f"  val/accuracy {float(metrics['val/accuracy']):.3f}"
            print(f"{label}: epoch {done}/{trainer.max_epochs}  {monitor[0]} {value:.3f} "
                  f"(best {self.best:.3f}){extra}  {pace:.0f} s/epoch, "
                  f"~{pace * (trainer.max_epochs - done) / 60:.0f} min left", flush=True)  # fmt: skip

    return EpochLines()


def _fit(
    task,
    datamodule,
    max_epochs: int,
    workdir: Path,
    accelerator: str,
    monitor: tuple[str, str],
    callbacks: list | None = None,
    label: str | None = None,
):
    """A Lightning fit; returns the task with its best weights by ``monitor`` (the pipeline's
    checkpoint rule, from ``_pipeline``) loaded, printing a line per epoch (``_epoch_lines``;
    ``label`` defaults to the work dir's last two parts: ``seqcomb-uv-split1/timex-0``).
    ``callbacks`` run beside the checkpoint."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    shutil.rmtree(workdir, ignore_errors=True)  # no stale checkpoints of an earlier run beside
    checkpoint = ModelCheckpoint(
        dirpath=workdir, monitor=monitor[0], mode=monitor[1], save_last=False
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[
            checkpoint,
            _epoch_lines(label or f"{workdir.parent.name}/{workdir.name}", monitor),
            *(callbacks or []),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule)
    seconds = time.perf_counter() - start
    state = torch.load(checkpoint.best_model_path, map_location=task.device, weights_only=True)
    task.load_state_dict(state["state_dict"])
    return task.eval(), seconds


def _validation_score(task, datamodule, info) -> float:
    """Higher is better: val AUPRC against the ground truth, or minus the val loss."""
    from behave.explain.metrics import ground_truth_scores

    x, y, truth = datamodule.split_arrays("val")
    explained = task.explain_arrays(x)
    if truth is not None:
        s = ground_truth_scores(
            explained["saliency"], truth, labels=y, null_class=info["null_class"]
        )
        if s["num_scored"]:
            return float(s["auprc"])
    from behave.tasks.timex import timex_losses

    with torch.no_grad():
        out = task.model(torch.from_numpy(x).to(task.device), sample_mask=False)
        losses = timex_losses(out, task.hparams.mask_prior, task.hparams.sparsity)
    return -float(sum(task.hparams[f"{k}_weight"] * v for k, v in losses.items()))


def _timed_attributions(model, x: torch.Tensor, target: torch.Tensor, method: str) -> tuple:
    """(attributions (N, T, D), seconds per series) of a Captum method over all series."""
    from behave.explain.attributions import attribute

    rows = 3200 if x.is_cuda else 640  # IG-50 of 64 series in one pass on a GPU, 5 on a CPU

    def run(lo: int, hi: int):
        return attribute(
            model, x[lo:hi], target[lo:hi], method, n_steps=50, internal_batch_size=rows
        ).detach()

    run(0, min(8, len(x)))  # warm-up (kernels, Captum's set-up)
    _sync()
    start = time.perf_counter()
    values = torch.cat([run(i, i + 64) for i in range(0, len(x), 64)])
    _sync()
    return values.cpu().numpy(), (time.perf_counter() - start) / len(x)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _run_json(args, dataset: str, split: int) -> Path:
    """Where a finished (dataset, split) run's JSON lives."""
    return Path(args.runs_dir) / f"{dataset.lower()}-split{split}.json"


def _keep_finished_runs(args) -> None:
    """Writes each run of the table ``--out`` holds into ``--runs-dir`` where that has none (a
    fresh clone has only the committed table): a command that reruns one set, and rewrites
    ``--out`` with that set alone, then loses no other set's runs, and ``--resume`` gathers
    them all."""
    out = Path(args.out)
    if not out.is_file() or not out.stat().st_size:
        return
    for run in json.loads(out.read_text()).get("runs", []):
        done = _run_json(args, run["dataset"], run["split"])
        if not done.is_file():
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(run, indent=2))


def _classifier_recipe(args, dataset: str) -> dict:
    """What decides the black box a split trains (its seed and data are the split's)."""
    cfg = _pipeline("tsclassifier", dataset)
    return {
        "model": {**cfg["model"], "report_samples": 0},
        "max_epochs": args.classifier_epochs or cfg["max_epochs"],
        "monitor": list(cfg["monitor"]),
        "num_train": args.num_train,
    }


def _classifier(args, recipe: dict, datamodule, workdir: Path):
    """The split's black box (trained by ``recipe``, from ``_classifier_recipe``) and its fit
    seconds. With ``--resume`` a classifier this work dir already holds is reused when its
    recipe (``fit.json``) is today's: only the explainer is retrained, which saves the
    classifier's 45 minutes on 2 CPU cores for SeqComb-UV."""
    from behave.tasks.tsclassifier import TSClassifierTask

    task = TSClassifierTask(data_info=datamodule.data_info, **recipe["model"])
    record = workdir / "fit.json"
    if args.resume and record.is_file():
        saved = json.loads(record.read_text())
        if saved["recipe"] == recipe:
            state = torch.load(workdir / saved["checkpoint"], map_location="cpu", weights_only=True)
            task.load_state_dict(state["state_dict"])
            print(f"reusing the classifier in {workdir}", flush=True)
            return task.eval(), saved["fit_s"]
    task, seconds = _fit(
        task, datamodule, recipe["max_epochs"], workdir, args.accelerator, tuple(recipe["monitor"])
    )
    (checkpoint,) = workdir.glob("*.ckpt")  # _fit emptied the folder first: the kept epoch only
    record.write_text(
        json.dumps({"recipe": recipe, "checkpoint": checkpoint.name, "fit_s": seconds}, indent=2)
    )
    return task, seconds


def run_split(args, dataset: str, split: int) -> dict:
    from behave.data.timeseries import generate_timeseries_synth, import_ucr
    from behave.data.timeseries_datamodule import TimeSeriesDataModule
    from behave.explain.metrics import score_attributions
    from behave.inference.timeseries import predict_classes, save_classifier_bundle
    from behave.tasks.timex import TimeXTask

    workdir = Path(args.work_dir) / f"{dataset.lower()}-split{split}"
    done = _run_json(args, dataset, split)
    if args.resume and done.is_file():
        print(f"{dataset} split {split}: reusing {done}")
        return json.loads(done.read_text())
    import lightning as L

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if dataset in SYNTH:
        generate_timeseries_synth(data_dir, dataset, seed=split, num_train=args.num_train)
    else:
        import_ucr(dataset, data_dir, seed=split)
    datamodule = TimeSeriesDataModule(str(data_dir), batch_size=64)
    info = datamodule.data_info
    L.seed_everything(split, verbose=False)

    clf_recipe = _classifier_recipe(args, dataset)
    classifier, clf_seconds = _classifier(args, clf_recipe, datamodule, workdir / "classifier")
    bundle = save_classifier_bundle(
        classifier.model.cpu(), workdir / "classifier" / "bundle", classifier.bundle_meta()
    )

    tx_cfg = _pipeline("timex", dataset)
    variants = []
    for k, overrides in enumerate(args.timex_variants):
        tx_args = {**tx_cfg["model"], **overrides, "blackbox": str(bundle), "report_samples": 0}
        L.seed_everything(split, verbose=False)
        task, fit_s = _fit(
            TimeXTask(data_info=info, **tx_args),
            datamodule,
            args.timex_epochs or tx_cfg["max_epochs"],
            workdir / f"timex-{k}",
            args.accelerator,
            tx_cfg["monitor"],
        )
        variants.append({"overrides": overrides, "task": task, "fit_s": fit_s,
                         "val": _validation_score(task, datamodule, info)})  # fmt: skip
    # the variant kept: best validation AUPRC where the data has ground truth (val split, 100
    # series), else lowest validation loss; never the test split
    best = max(variants, key=lambda v: v["val"])
    timex, timex_seconds = best["task"], best["fit_s"]

    x_np, y, truth = datamodule.split_arrays("test")
    device = timex.device
    x = torch.from_numpy(x_np).to(device)
    blackbox = timex.model.blackbox.to(device).eval()
    predicted_np = predict_classes(blackbox, x_np)
    predicted = torch.from_numpy(predicted_np).to(device)
    accuracy = float((predicted_np == y).mean())

    saliency: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    timex.explain_arrays(x_np[:8])  # warm-up
    _sync()
    start = time.perf_counter()
    explained = timex.explain_arrays(x_np)
    _sync()
    seconds["timex"] = (time.perf_counter() - start) / len(y)
    saliency["timex"] = explained["saliency"]
    for method in args.methods:
        if method != "timex":
            saliency[method], seconds[method] = _timed_attributions(blackbox, x, predicted, method)

    scores: dict[str, dict] = {}
    predict = partial(predict_classes, blackbox)
    for method, values in saliency.items():
        scores[method] = score_attributions(values, x_np, y, truth, predict, info["null_class"])
        scores[method]["seconds_per_series"] = seconds[method]
    variant_scores = []
    for v in variants:  # each one's test score beside the kept one's, to see what selection cost
        if v is best:  # its test explanations and scores are the table's, computed above
            test, score = explained, scores["timex"]
        else:
            test = v["task"].explain_arrays(x_np)
            score = score_attributions(
                test["saliency"], x_np, y, truth, predict, info["null_class"]
            )
        key = "auprc" if truth is not None else "faithfulness_gap"
        variant_scores.append({"overrides": v["overrides"], "val_score": v["val"],
                               "fit_s": v["fit_s"], f"test_{key}": score[key],
                               "kept_share": float(test["mask"].mean())})  # fmt: skip
    result = {
        "dataset": dataset,
        "timex_variants": variant_scores,
        "timex_kept": best["overrides"],
        "split": split,
        "classifier_accuracy": accuracy,
        "classifier_epochs": clf_recipe["max_epochs"],
        "timex_epochs": args.timex_epochs or tx_cfg["max_epochs"],
        "timex_checkpoint": " ".join(tx_cfg["monitor"]),
        "classifier_fit_s": clf_seconds,
        "timex_fit_s": timex_seconds,
        "timex_agreement": float(
            (explained["prediction"] == explained["blackbox_prediction"]).mean()
        ),
        "timex_kept_share": float(explained["mask"].mean()),
        "scores": scores,
    }
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(result, indent=2))
    print(f"{dataset} split {split}: {json.dumps(result)}", flush=True)
    return result


def _mean_se(values: list[float]) -> tuple[float, float]:
    from behave.explain.metrics import mean_and_stderr

    return mean_and_stderr(values)


def summarize(results: list[dict], methods: list[str]) -> dict:
    table: dict[str, dict] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        entry = {
            "splits": [r["split"] for r in rows],
            "classifier_accuracy": _mean_se([r["classifier_accuracy"] for r in rows]),
            "timex_agreement": _mean_se([r["timex_agreement"] for r in rows]),
            "methods": {},
        }
        for method in methods:
            keys = rows[0]["scores"][method].keys()
            entry["methods"][method] = {
                k: _mean_se([r["scores"][method][k] for r in rows]) for k in keys
            }
        ig = entry["methods"].get("integrated_gradients", {}).get("seconds_per_series")
        tx = entry["methods"].get("timex", {}).get("seconds_per_series")
        if ig and tx:
            entry["ig_over_timex_time"] = ig[0] / tx[0]
        table[dataset] = entry
    return table


def print_table(table: dict, methods: list[str]) -> None:
    for dataset, entry in table.items():
        acc, se = entry["classifier_accuracy"]
        print(f"\n{dataset} (black box accuracy {acc:.3f} ± {se:.3f}, splits {entry['splits']})")
        first = next(iter(entry["methods"].values()))
        metrics = [k for k in first if k != "seconds_per_series"]
        print(f"{'method':<22}" + "".join(f"{m:>18}" for m in metrics) + f"{'ms / series':>14}")
        for method in methods:
            row = entry["methods"][method]
            cells = "".join(f"{row[m][0]:>11.4f} ± {row[m][1]:.3f}" for m in metrics)
            print(f"{method:<22}{cells}{1000 * row['seconds_per_series'][0]:>14.3f}")
        if "ig_over_timex_time" in entry:
            print(f"IG-50 / TimeX time per series: {entry['ig_over_timex_time']:.0f}x")
        if dataset in PUBLISHED_TIMEX_AUPRC:
            print(f"published TimeX AUPRC: {PUBLISHED_TIMEX_AUPRC[dataset]}")


def _child_threads(jobs: int) -> str:
    """OMP_NUM_THREADS of each of ``jobs`` parallel runs: the user's, else a share of the
    cores. The module's default of 2 a process put 2 x jobs threads on 2 cores: a LowVarDetect
    classifier epoch took 62 s with 2 jobs at 2 threads each, 17 s at 1."""
    return _USER_THREADS or str(max(1, (os.cpu_count() or 1) // jobs))


def _run_parallel(args, pairs: list[tuple[str, int]], argv: list[str]) -> None:
    """Runs each (dataset, split) in its own process, ``args.jobs`` at a time (one GPU or the
    CPU cores are shared: small models leave most of an accelerator idle)."""
    # --resume stays in: a child then reuses its split's trained classifier
    drop = {"--datasets", "--real", "--splits", "--jobs"}
    kept, skip = [], False
    for a in argv:
        if a in drop:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        kept.append(a)
    env = {**os.environ, "OMP_NUM_THREADS": _child_threads(args.jobs)}
    started: dict[str, subprocess.Popen] = {}
    for dataset, split in pairs:
        if args.resume and _run_json(args, dataset, split).is_file():
            continue
        while sum(proc.poll() is None for proc in started.values()) >= args.jobs:
            time.sleep(1)
        flag = "--real" if dataset not in SYNTH else "--datasets"
        cmd = [sys.executable, __file__, *kept, flag, dataset, "--splits", str(split),
               "--jobs", "1", "--out", os.devnull]  # fmt: skip
        if flag == "--real":
            cmd += ["--datasets"]  # none: only the real set
        started[f"{dataset} split {split}"] = subprocess.Popen(cmd, env=env)
    # a failed run must not be filled in from an older table by the read-back that follows
    failed = [label for label, proc in started.items() if proc.wait()]
    if failed:
        raise SystemExit(f"explainers: runs failed: {', '.join(failed)} (see their output above)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=list(SYNTH))
    p.add_argument("--real", nargs="*", default=[], help="UCR/UEA sets shipped with aeon")
    p.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--num-train", type=int, default=5000)
    p.add_argument("--classifier-epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--timex-epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--accelerator", default="auto")
    p.add_argument(
        "--timex-variants",
        type=json.loads,
        default=[{}],
        help="JSON list of TimeXTask overrides, e.g. '[{}, {\"mask_prior\": 0.1}]'; each is "
        "trained and the best by validation is kept (default: the pipeline's values only)",
    )
    p.add_argument("--jobs", type=int, default=1, help="(dataset, split) runs in parallel")
    p.add_argument("--work-dir", default=str(RUNS), help="checkpoints and data of each run")
    p.add_argument("--runs-dir", default=str(RUNS / "results"), help="one JSON per finished run")
    p.add_argument("--resume", action="store_true", help="reuse finished (dataset, split) runs")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "explainers.json"))
    args = p.parse_args(argv)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    started = time.perf_counter()
    _keep_finished_runs(args)
    pairs = [(d, s) for d in args.datasets + args.real for s in args.splits]
    if args.jobs > 1:  # one process per run; each writes its JSON, then all are read back
        _run_parallel(args, pairs, argv if argv is not None else sys.argv[1:])
        args.resume = True
    results = [run_split(args, d, s) for d, s in pairs]
    table = summarize(results, list(args.methods))
    print_table(table, list(args.methods))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/explainers.py " + " ".join(argv or sys.argv[1:]),
                "device": device_name(),
                "torch": torch.__version__,
                "commit": git_commit(),
                "wall_s": time.perf_counter() - started,
                "published_timex_auprc": PUBLISHED_TIMEX_AUPRC,
                "summary": table,
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
