"""Resuming a crashed ``behave fit`` into the same MLflow run.

Every checkpoint records the MLflow run it belongs to (``RecordMLflowRun``). ``behave fit
--ckpt_path last|PATH`` reads that id back before training starts and points the logger at the
run, so a run killed mid-epoch ends as one MLflow run with one value per (metric, step) —
not as two half runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from behave.tasks.mlflow_logger import BehaveMLFlowLogger

__all__ = ["CHECKPOINT_KEY", "RecordMLflowRun", "continue_run_from_checkpoint", "resolve_ckpt_path"]

log = logging.getLogger(__name__)
CHECKPOINT_KEY = "behave_mlflow_run_id"


class RecordMLflowRun(L.Callback):
    """Writes the MLflow run id into every checkpoint (added by the ``behave`` CLI)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        logger = _behave_logger(trainer)
        if logger is not None and logger.run_id is not None:
            checkpoint[CHECKPOINT_KEY] = logger.run_id


def _behave_logger(trainer: L.Trainer) -> BehaveMLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, BehaveMLFlowLogger)), None)


def resolve_ckpt_path(trainer: L.Trainer, ckpt_path: str | None) -> Path | None:
    """The file ``trainer.fit(ckpt_path=...)`` will restore, or None (a fresh run).

    "last" means the newest ``last*.ckpt`` in the checkpoint callbacks' folders, as Lightning
    picks it; "best"/"hpc"/"registry" forms are left to Lightning (no run to continue)."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        found = [
            path
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and cb.dirpath
            for path in Path(cb.dirpath).glob(f"{cb.CHECKPOINT_NAME_LAST}*{cb.FILE_EXTENSION}")
        ]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None
    path = Path(ckpt_path)
    return path if path.is_file() else None


def continue_run_from_checkpoint(trainer: L.Trainer, ckpt_path: str | None) -> str | None:
    """Points the trainer's MLflow logger at the run recorded in the checkpoint; returns its id.

    Falls back to a new run, with a log line saying why, when the checkpoint predates run
    recording or the store no longer holds the run (e.g. another MLFLOW_TRACKING_URI)."""
    logger = _behave_logger(trainer)
    path = resolve_ckpt_path(trainer, ckpt_path)
    if logger is None or path is None:
        return None
    # weights_only: a checkpoint is a file like any other; never unpickle it to read one id
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    run_id = checkpoint.get(CHECKPOINT_KEY)
    if run_id is None:
        log.warning("%s records no MLflow run; the resumed training logs to a new run", path)
        return None
    from mlflow.exceptions import MlflowException

    try:
        logger.continue_run(run_id)
    except MlflowException as err:
        log.warning(
            "%s belongs to MLflow run %s, which this store does not hold (%s); "
            "logging to a new run",
            path,
            run_id,
            str(err).splitlines()[0],
        )
        return None
    print(f"resuming MLflow run {run_id} from {path}", flush=True)
    return run_id
