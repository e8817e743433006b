"""Lightning's MLflow logger pointed at behave's store by default (see behave.tracking), able to
continue a crashed run (see behave.tasks.resume)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger

from behave import tracking

__all__ = ["BehaveMLFlowLogger"]

log = logging.getLogger(__name__)


class BehaveMLFlowLogger(MLFlowLogger):
    def __init__(
        self,
        experiment_name: str = "behave",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        run_id: str | None = None,
        tags: dict | None = None,
    ) -> None:
        """``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI`` or ``./mlflow/mlflow.db``;
        pass ``run_id`` to continue an existing run (``behave fit --ckpt_path`` does it for you)."""
        uri = tracking_uri or tracking.tracking_uri()
        tracking.ensure_store(uri)  # before Lightning's client touches a fresh SQLite store
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=uri,
            tags=tags,
            artifact_location=tracking.artifact_location(),
            run_id=run_id,
            log_model=False,  # behave registers its own bundle (behave.tasks.callbacks)
        )
        # metric key -> steps the run already holds; filled only when continuing a run
        self._logged_steps: dict[str, set[int]] = {}
        self._logged_params: dict[str, str] = {}

    def continue_run(self, run_id: str) -> None:
        """Log into the existing run ``run_id`` instead of creating one.

        A process killed mid-epoch has already logged the steps between its last checkpoint and
        the kill; the resumed process replays them. MLflow cannot delete metric points, so the
        replayed steps are not logged again: every (metric, step) appears once in the run.
        Must be called before anything touches ``experiment`` (i.e. before ``trainer.fit``).
        """
        client = self._mlflow_client
        run = client.get_run(run_id)  # MlflowException if the store does not hold it
        self._logged_steps = {
            key: {m.step for m in client.get_metric_history(run_id, key)}
            for key in run.data.metrics
        }
        self._logged_params = dict(run.data.params)
        self._run_id = run_id
        client.update_run(run_id, status="RUNNING")  # a killed run was left RUNNING or FAILED

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._logged_steps:
            at = step or 0
            metrics = {k: v for k, v in metrics.items() if at not in self._logged_steps.get(k, ())}
            if not metrics:
                return
        super().log_metrics(metrics, step)

    def log_hyperparams(self, params: dict[str, Any] | Any) -> None:
        if not self._logged_params:
            super().log_hyperparams(params)
            return
        # MLflow params are write-once: on resume log only new ones, and say which changed
        flat = _flatten_dict(_convert_params(params))
        new = {}
        for key, value in flat.items():
            before = self._logged_params.get(key)
            if before is None:
                new[key] = value
            elif before != str(value)[:250]:  # MLFlowLogger stores 250 characters
                log.warning(
                    "resumed run %s keeps param %s=%s (this process uses %s)",
                    self._run_id,
                    key,
                    before,
                    value,
                )
        if new:
            super().log_hyperparams(new)
