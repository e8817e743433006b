"""The one module that talks to MLflow: store location, runs' artifacts, the model registry.

Default store: SQLite at ``./mlflow/mlflow.db`` with artifacts under ``./mlflow/artifacts``
(relative to the working directory), overridable with ``MLFLOW_TRACKING_URI`` (and
``BEHAVE_ARTIFACT_ROOT`` for new experiments' artifact location). Registered models are named
``behave.<family>``; review moves the aliases ``@challenger`` -> ``@champion`` (-> ``@previous``).

A model version's artifacts are an MLflow pyfunc model (usable with ``mlflow.pyfunc.load_model``)
whose ``artifacts/bundle`` folder holds what behave itself loads: ``weights.safetensors``,
``config.json`` and ``vocab.json`` — plain tensors and JSON, never a pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

import mlflow

__all__ = [
    "tracking_uri",
    "artifact_location",
    "client",
    "ensure_store",
    "ensure_experiment",
    "registered_name",
    "log_figures",
    "log_text",
    "metric_history",
    "register_model",
    "get_version",
    "promote",
    "set_version_tag",
    "resolve_model_dir",
    "model_version_of",
    "families_with_prefix",
    "BundlePyfunc",
]

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = Path.cwd() / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_location() -> str | None:
    """Artifact root for new experiments; None lets a remote tracking server decide."""
    root = os.environ.get("BEHAVE_ARTIFACT_ROOT")
    if root:
        return root
    if tracking_uri().startswith("sqlite:///"):
        return (Path(tracking_uri().removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


_initialized_stores: set[str] = set()


def _init_sqlite_store(uri: str) -> None:
    """Creates or migrates a SQLite store's schema under an exclusive file lock, once per
    process: two jobs starting on a fresh store at once otherwise race in MLflow's migrations
    ("duplicate column name"), and one of them dies."""
    import fcntl

    from mlflow import MlflowClient

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_store(uri: str) -> None:
    """Makes a SQLite store's schema current before first use (a no-op for servers)."""
    if uri.startswith("sqlite:///") and uri not in _initialized_stores:
        _init_sqlite_store(uri)
        _initialized_stores.add(uri)


def client():
    from mlflow import MlflowClient

    uri = tracking_uri()
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created with behave's artifact location if missing."""
    c = client()
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return c.create_experiment(name, artifact_location=artifact_location())


def registered_name(family: str) -> str:
    return f"behave.{family}"


def log_figures(run_id: str, figures: dict[str, Any]) -> None:
    """Logs matplotlib figures as PNGs under ``plots/`` of the run, and closes them."""
    import matplotlib.pyplot as plt

    c = client()
    for name, fig in figures.items():
        c.log_figure(run_id, fig, f"plots/{name}.png")
        plt.close(fig)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, text, artifact_file)


def metric_history(run_id: str, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs of each metric key logged in the run."""
    c = client()
    return {key: [(m.step, m.value) for m in c.get_metric_history(run_id, key)] for key in keys}


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow-native entry point: DataFrame of histories -> DataFrame of top-k behaviors."""

    def load_context(self, context) -> None:
        from behave.inference import load_predictor

        self.predictor = load_predictor(Path(context.artifacts["bundle"]))

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.predictor.predict_frame(model_input, **(params or {}))


def register_model(
    run_id: str,
    family: str,
    bundle_dir: Path,
    input_example: Any,
    output_example: Any,
    tags: dict[str, str] | None = None,
) -> str:
    """Logs the bundle as the run's model and registers it as ``behave.<family>`` @challenger.

    All or nothing: if any step after the version is created fails, the version is deleted.
    The first version of a family also becomes @champion (there is nothing to compare it to).
    Returns the new version number.
    """
    import torch
    from mlflow.models import infer_signature

    import behave

    c = client()
    name = registered_name(family)
    signature = infer_signature(input_example, output_example)
    staging = Path(tempfile.mkdtemp()) / "bundle"  # MLflow names the artifact after the folder
    shutil.copytree(bundle_dir, staging)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("mlflow_model.py")),  # no pickle
                artifacts={"bundle": str(staging)},
                code_paths=[str(Path(behave.__file__).parent)],
                signature=signature,
                input_example=input_example,
                # listing requirements avoids ~20 s of MLflow's dependency inference
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    "safetensors",
                    "polars",
                    "numpy",
                    "pandas",
                ],
            )
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    try:
        c.get_registered_model(name)
    except mlflow.exceptions.MlflowException as err:
        if not _is_not_found(err):
            raise
        c.create_registered_model(name, description=f"behave {family} models")
    version = c.create_model_version(name, info.model_uri, run_id=run_id, tags=tags or {})
    try:
        c.set_registered_model_alias(name, "challenger", version.version)
        if _find_alias(c, name, "champion") is None:
            c.set_registered_model_alias(name, "champion", version.version)
            c.set_model_version_tag(name, version.version, "validation_status", "first_version")
    except BaseException:
        c.delete_model_version(name, version.version)
        raise
    return version.version


def unregister_version(family: str, version: str, restore_challenger: str | None) -> None:
    """Undoes :func:`register_model` (when a registration it belongs with fails): deletes the
    version and points @challenger back at ``restore_challenger`` (the version it named before).
    """
    c = client()
    name = registered_name(family)
    c.delete_model_version(name, version)  # its aliases go with it
    if restore_challenger is not None:
        c.set_registered_model_alias(name, "challenger", restore_challenger)


def alias_version(family: str, alias: str) -> str | None:
    """The version ``behave.<family>@<alias>`` names, or None."""
    found = _find_alias(client(), registered_name(family), alias)
    return None if found is None else found.version


def _is_not_found(err: Exception) -> bool:
    """MLflow's answer for a missing registered model or alias (other errors, e.g. an
    unreachable server, must not be mistaken for "no model")."""
    code = getattr(err, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(err)
    )


def _find_alias(c, name: str, alias: str):
    """The ModelVersion behind ``name@alias``, or None when the model or alias does not exist."""
    try:
        return c.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as err:
        if not _is_not_found(err):
            raise
        return None


# the pipeline that trains each family's reference model (for "how to get one" hints)
PIPELINES = {
    "behavegpt": "pipelines/behavegpt.yaml",
    "decision_mamba": "pipelines/decision-mamba-lunarlander-medium.yaml",
    "graph_lstm": "pipelines/graph-lstm.yaml",
    "neuroformer": "pipelines/neuroformer.yaml",
}


def get_version(family: str, alias: str):
    """The ModelVersion behind ``behave.<family>@alias``; LookupError with a hint if absent."""
    version = _find_alias(client(), registered_name(family), alias)
    if version is None:
        # per-dataset families (tsclassifier.gunpoint) train from pipelines/tsclassifier-gunpoint.yaml
        pipeline = PIPELINES.get(family, f"pipelines/{family.replace('.', '-')}.yaml")
        raise LookupError(
            f"no model {registered_name(family)}@{alias} in {tracking_uri()}: train one with "
            f"`behave fit --config {pipeline}`"
        )
    return version


def promote(family: str, version: str, metrics: dict[str, float] | None = None) -> None:
    """Makes ``version`` @champion; the old champion keeps @previous."""
    c = client()
    name = registered_name(family)
    champion = _find_alias(c, name, "champion")
    old = champion.version if champion is not None else None
    if old is not None and old != version:
        c.set_registered_model_alias(name, "previous", old)
    c.set_registered_model_alias(name, "champion", version)
    c.set_model_version_tag(name, version, "validation_status", "promoted")
    if metrics:
        c.set_model_version_tag(name, version, "promotion_metrics", json.dumps(metrics))


def set_version_tag(family: str, version: str, key: str, value: str) -> None:
    client().set_model_version_tag(registered_name(family), version, key, value)


def families_with_prefix(prefix: str) -> list[str]:
    """Registered families named ``<prefix>.*`` (e.g. ``tsclassifier`` -> ``tsclassifier.gunpoint``)."""
    start = f"{registered_name(prefix)}."
    found = client().search_registered_models(filter_string=f"name LIKE '{start}%'")
    return sorted(m.name.removeprefix("behave.") for m in found if m.name.startswith(start))


def _model_version(c, uri: str):
    """The ModelVersion that ``models:/NAME@alias`` or ``models:/NAME/VERSION`` names now;
    LookupError when there is none."""
    name, _, ref = str(uri).removeprefix("models:/").partition("/")
    name, _, alias = name.partition("@")
    try:
        version = _find_alias(c, name, alias) if alias else c.get_model_version(name, ref)
    except mlflow.exceptions.MlflowException as err:
        if not _is_not_found(err):
            raise
        version = None
    if version is None:
        raise LookupError(f"no model {str(uri).removeprefix('models:/')} in {tracking_uri()}")
    return version


def model_version_of(uri: str) -> tuple[str, str]:
    """(registered name, version) that ``models:/NAME@alias`` or ``models:/NAME/VERSION`` names
    now; LookupError when there is none."""
    version = _model_version(client(), uri)
    return version.name, str(version.version)


def resolve_model_dir(uri: str | Path) -> Path:
    """A local folder with ``weights.safetensors``, ``config.json`` and ``vocab.json``.

    Accepts a local bundle folder, or ``models:/behave.<family>@alias`` / ``models:/NAME/VERSION``
    (downloaded once into a cache beside the store).
    """
    path = Path(str(uri))
    if not str(uri).startswith("models:/"):
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a model folder (no config.json)")
        return path
    c = client()  # also sets the tracking and registry URIs for mlflow.artifacts
    os.environ.setdefault(
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
    )  # keep service logs clean
    uri = str(uri)
    # pin an alias to the version it names now; the cache is keyed by version and run
    version = _model_version(c, uri)
    uri, run_id = f"models:/{version.name}/{version.version}", version.run_id or ""
    # a store recreated at the same path reuses version numbers: the run id tells them apart
    key = "_".join(filter(None, (uri.replace(":/", "_").replace("/", "_"), run_id)))
    cache = (
        Path(tempfile.gettempdir())
        / "behave-models"
        / hashlib.sha1(tracking_uri().encode()).hexdigest()[:12]
    )
    target = cache / key
    if (target / "bundle" / "config.json").is_file():  # a model version never changes
        return target / "bundle"
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cache))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri}/artifacts/bundle", dst_path=str(partial)
            )
        )
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{uri} has no behave bundle (artifacts/bundle/config.json)")
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "bundle", ignore_errors=True)
        os.replace(local, target / "bundle")  # complete downloads only
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target / "bundle"
