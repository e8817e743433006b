"""Lightning's MLflow logger pointed at behave's store by default (see behave.tracking)."""

from __future__ import annotations

from lightning.pytorch.loggers import MLFlowLogger

from behave import tracking

__all__ = ["BehaveMLFlowLogger"]


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
        pass ``run_id`` to continue an existing run (e.g. when resuming from a checkpoint)."""
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
