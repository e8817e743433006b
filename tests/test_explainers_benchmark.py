"""benchmarks/explainers.py: a split's run (with a progress line per epoch), and --resume
reusing a trained classifier only when the recipe that trained it is unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.explainers import main  # noqa: E402


def _run(tmp_path: Path, *extra: str) -> dict:
    main(["--datasets", "freqshapes", "--splits", "0", "--num-train", "128",
          "--classifier-epochs", "1", "--timex-epochs", "1", "--methods", "timex", "saliency",
          "--work-dir", str(tmp_path), "--runs-dir", str(tmp_path / "results"),
          "--out", str(tmp_path / "table.json"), *extra])  # fmt: skip
    return json.loads((tmp_path / "table.json").read_text())["runs"][0]


def _forget_the_run(tmp_path: Path) -> None:
    """Drops the split's finished run (its JSON, and the table --resume would restore it from)
    but not the classifier it trained."""
    (tmp_path / "results" / "freqshapes-split0.json").unlink()
    (tmp_path / "table.json").unlink()


def test_resume_reuses_the_classifier_of_the_same_recipe_and_retrains_a_changed_one(
    tmp_path, capsys
):
    first = _run(tmp_path)
    assert set(first["scores"]) == {"timex", "saliency"}
    assert 0.0 <= first["scores"]["timex"]["auprc"] <= 1.0
    (variant,) = first["timex_variants"]  # the kept one: its test score is the table's
    assert variant["test_auprc"] == first["scores"]["timex"]["auprc"]
    assert 0.0 <= variant["kept_share"] <= 1.0
    record = json.loads((tmp_path / "freqshapes-split0" / "classifier" / "fit.json").read_text())
    assert record["recipe"]["max_epochs"] == 1 and record["checkpoint"].endswith(".ckpt")
    out = capsys.readouterr().out  # a progress line per epoch of each fit, with its metric
    assert "freqshapes-split0/classifier: epoch 1/1  val/loss " in out
    assert "val/accuracy " in out.split("freqshapes-split0/classifier: epoch 1/1")[1]
    assert "freqshapes-split0/timex-0: epoch 1/1  val/loss " in out  # FreqShapes: by val loss

    _forget_the_run(tmp_path)
    again = _run(tmp_path, "--resume")
    assert "reusing the classifier" in capsys.readouterr().out
    assert again["classifier_fit_s"] == first["classifier_fit_s"]  # the recorded fit, not a new one
    assert again["classifier_accuracy"] == first["classifier_accuracy"]

    _forget_the_run(tmp_path)
    changed = _run(tmp_path, "--resume", "--classifier-epochs", "2")
    assert "reusing the classifier" not in capsys.readouterr().out
    assert changed["classifier_epochs"] == 2


def test_epoch_lines_read_a_metric_the_task_logs_at_epoch_end(capsys):
    """TimeX logs val/auprc in its own on_validation_epoch_end, which Lightning calls after the
    callbacks' hook of that name: the progress line must still find it."""
    import lightning as L
    import torch

    from benchmarks.explainers import _epoch_lines

    class LogsAtEpochEnd(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            return (self.w * batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            pass

        def on_validation_epoch_end(self):
            self.log("val/auprc", 0.25 * (self.current_epoch + 1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)))
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[_epoch_lines("demo", ("val/auprc", "max"))])  # fmt: skip
    trainer.fit(LogsAtEpochEnd(), loader, loader)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("demo:")]
    assert [line.split("  ")[:2] for line in lines] == [
        ["demo: epoch 1/2", "val/auprc 0.250 (best 0.250)"],
        ["demo: epoch 2/2", "val/auprc 0.500 (best 0.500)"],
    ]


def test_parallel_runs_share_the_cores_unless_the_user_set_the_threads(monkeypatch):
    """Each of --jobs N children gets cores // N threads (the module's 2-thread default put
    4 threads on 2 cores with 2 jobs, 3.6x slower); an OMP_NUM_THREADS the user set wins."""
    import benchmarks.explainers as bench

    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(bench, "_USER_THREADS", None)
    assert bench._child_threads(2) == "1"
    assert bench._child_threads(1) == "2"
    assert bench._child_threads(4) == "1"  # never 0
    monkeypatch.setattr(bench, "_USER_THREADS", "3")
    assert bench._child_threads(2) == "3"
