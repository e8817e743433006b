"""Learning curve of a time-series classifier recipe on one explainer-benchmark split.

    python benchmarks/classifier_curve.py --dataset seqcomb-uv --split 2 --epochs 60 \
        --set num_heads=8 positional_dim=64

Trains the black box of ``benchmarks/explainers.py`` (the hyper-parameters of
``pipelines/tsclassifier-<dataset>.yaml``, overridden by ``--set``) on that split's data folder,
which the benchmark wrote (``benchmarks/runs/explainers/<dataset>-split<k>/data``), and prints
validation accuracy and loss after every epoch, then the test accuracy of the best val-loss
epoch as one JSON line. Why: the SeqComb classifiers learn in a late jump that a short cosine
schedule can cut off, and a final accuracy alone does not show whether a recipe was still
climbing. No MLflow, no explainer: minutes per epoch on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.explainers import RUNS, _fit, _pipeline  # noqa: E402


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", type=int, required=True)
    p.add_argument("--epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="TSClassifierTask overrides, e.g. num_heads=8")  # fmt: skip
    p.add_argument("--work-dir", default=str(RUNS))
    args = p.parse_args(argv)
    data_dir = Path(args.work_dir) / f"{args.dataset.lower()}-split{args.split}" / "data"
    if not (data_dir / "manifest.json").is_file():
        p.error(f"no data at {data_dir}: run benchmarks/explainers.py on this split first")
    overrides = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = _value(text)

    import lightning as L

    from behave.data.timeseries_datamodule import TimeSeriesDataModule
    from behave.inference.timeseries import predict_classes
    from behave.tasks.tsclassifier import TSClassifierTask

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    config = _pipeline("tsclassifier", args.dataset)
    task_args = {**config["model"], "report_samples": 0, **overrides}
    datamodule = TimeSeriesDataModule(str(data_dir), batch_size=64)
    L.seed_everything(args.split, verbose=False)  # the benchmark's seed for this split
    task = TSClassifierTask(data_info=datamodule.data_info, **task_args)
    epochs = args.epochs or config["max_epochs"]

    with tempfile.TemporaryDirectory() as checkpoints:
        # the benchmark's own fit: same trainer settings, checkpoint rule and per-epoch lines
        # (val loss and accuracy) as its black boxes
        task, _ = _fit(task, datamodule, epochs, Path(checkpoints), "cpu", config["monitor"],
                       label=f"{args.dataset}-split{args.split}")  # fmt: skip
        best_epoch = next(Path(checkpoints).glob("*.ckpt")).stem  # the one kept (top 1)
    x, y, _ = datamodule.split_arrays("test")
    accuracy = float((predict_classes(task.model.eval(), x) == y).mean())
    print(json.dumps({"dataset": args.dataset, "split": args.split, "overrides": overrides,
                      "epochs": epochs, "best": best_epoch,
                      "test_accuracy": accuracy}))  # fmt: skip


if __name__ == "__main__":
    main()
