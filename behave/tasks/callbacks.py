"""Callbacks that connect training to tracking: the resolved config and the registered model."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from behave import tracking
from behave.models.behavegpt import PAD_ID

__all__ = ["MLflowSaveConfig", "RegisterModel", "WritePredictions", "git_commit"]

log = logging.getLogger(__name__)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


class MLflowSaveConfig(SaveConfigCallback):
    """Logs the fully resolved LightningCLI config to the MLflow run as ``config.yaml``.

    (Lightning's default writes to ``trainer.log_dir``, which MLflow loggers do not have.)
    """

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = _mlflow_logger(trainer)
        if logger is None:
            return
        text = self.parser.dump(self.config, skip_none=False)
        tracking.log_text(logger.run_id, text, "config.yaml")


class RegisterModel(L.Callback):
    """At the end of ``fit``: best weights -> bundle -> plots -> registered ``behave.<family>``.

    The task provides ``final_report(datamodule) -> (metrics, figures)``,
    ``export_bundle(dir, datamodule)``, ``example_io(datamodule)`` (the MLflow signature's
    examples) and ``registry_tags(datamodule)`` (extra version tags, e.g. the evaluation split).

    The best checkpoint (by the checkpoint callback's monitor) is loaded before export, with
    ``weights_only=True``. Skipped for ``fast_dev_run`` and when no MLflow logger is set.
    """

    def __init__(self, family: str, register: bool = True) -> None:
        self.family = family
        self.register = register

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = _mlflow_logger(trainer)
        if trainer.fast_dev_run or logger is None or not trainer.is_global_zero:
            return
        if trainer.interrupted:  # Ctrl-C: keep the checkpoint, do not register a half model
            return
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best and Path(best).is_file():
            state = torch.load(best, map_location=pl_module.device, weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
            log.info("registering the best checkpoint %s", best)
        datamodule = trainer.datamodule
        run_id = logger.run_id
        # the task's own end-of-fit report: extra metrics and figures
        metrics, figures = pl_module.final_report(datamodule)
        if metrics:
            logger.log_metrics(metrics, step=trainer.global_step)
        figures["learning_curves"] = self._learning_curves(run_id, pl_module)
        tracking.log_figures(run_id, figures)
        if not self.register:
            return
        with tempfile.TemporaryDirectory() as tmp:
            bundle = pl_module.export_bundle(Path(tmp) / "bundle", datamodule)
            example_in, example_out = pl_module.example_io(datamodule)
            tags = {
                "dataset_hash": datamodule.manifest.get("content_hash", ""),
                "data_dir": str(Path(datamodule.hparams.data_dir).resolve()),
                "git_commit": git_commit(),
                "validation_status": "pending_review",
                **pl_module.registry_tags(datamodule),
            }
            version = tracking.register_model(
                run_id, self.family, bundle, example_in, example_out, tags
            )
        name = tracking.registered_name(self.family)
        print(f"registered {name} version {version} (@challenger) from run {run_id}")

    @staticmethod
    def _learning_curves(run_id: str, pl_module: L.LightningModule):
        from behave.tasks.plots import learning_curves

        keys = getattr(pl_module, "curve_metrics", ("train/loss", "val/loss"))
        return learning_curves(tracking.metric_history(run_id, list(keys)))


class WritePredictions(BasePredictionWriter):
    """``behave predict``: top-k next behaviors at every position of the predict split, as a
    Parquet table (window, position, the actual next behavior, its rank-ordered predictions)."""

    def __init__(self, output_path: str = "predictions/behavegpt.parquet") -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        import polars as pl

        names = trainer.datamodule.vocab.behaviors
        top = torch.cat([p["top10"] for p in predictions])  # (W, L, k)
        targets = torch.cat([p["targets"] for p in predictions])  # (W, L)
        real = targets != PAD_ID  # padding is not a prediction
        window, position = torch.nonzero(real, as_tuple=True)
        frame = pl.DataFrame(
            {
                "window": window.numpy(),
                "position": position.numpy(),
                "actual": [names[i] for i in targets[real].tolist()],
                "predicted": [[names[i] for i in row] for row in top[real].tolist()],
            }
        )
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(self.output_path)
        hits = sum(a in p for a, p in zip(frame["actual"], frame["predicted"], strict=True))
        print(
            f"wrote {frame.height:,} predictions to {self.output_path} (recall@10 {hits / max(frame.height, 1):.3f})"
        )
