"""`behave fit` for the explainer family end to end: generated FreqShapes -> classifier ->
registered ``behave.tsclassifier.freqshapes`` -> TimeX trained against it -> registered
``behave.timex.freqshapes`` with its lineage -> MLflow-native load; plus the data one-liners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import behave

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
CLASSIFIER = str(PIPELINES / "tsclassifier-tiny.yaml")
TIMEX = str(PIPELINES / "timex-tiny.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("timex-cli")
    out = behave(
        "data", "generate", "timeseries-synth", "--name", "freqshapes",
        "--out", "data/timeseries/freqshapes-tiny", "--train", "64", "--val", "16", "--test", "16",
        cwd=root,
    )  # fmt: skip
    assert "64 train / 16 val / 16 test" in out.stdout
    return root


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _client(workdir: Path):
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_timex_without_a_registered_classifier_is_one_line_saying_what_to_train(workdir):
    proc = behave(
        "fit", "--config", TIMEX, "--trainer.fast_dev_run", "true", cwd=workdir, check=False
    )
    assert proc.returncode == 2
    assert "pipelines/tsclassifier-<dataset>.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_classifier_then_timex_register_with_lineage_and_load(workdir):
    import numpy as np

    import mlflow

    fit = behave("fit", "--config", CLASSIFIER, cwd=workdir)
    assert "registered behave.tsclassifier.freqshapes version 1" in fit.stdout
    client = _client(workdir)
    run = client.get_run(client.get_model_version("behave.tsclassifier.freqshapes", "1").run_id)
    for key in ("test/accuracy", "test/integrated_gradients_auprc", "test/saliency_aup"):
        assert key in run.data.metrics, key
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/attribution_integrated_gradients.png", "plots/learning_curves.png"} <= plots

    # a fast_dev_run of the TimeX pipeline: one batch, nothing registered
    dev = behave("fit", "--config", TIMEX, "--trainer.fast_dev_run", "true", cwd=workdir)
    assert "registered" not in dev.stdout

    fit = behave("fit", "--config", TIMEX, cwd=workdir)
    assert "registered behave.timex.freqshapes version 1" in fit.stdout
    version = client.get_model_version_by_alias("behave.timex.freqshapes", "champion")
    assert version.tags["explains_model"] == "behave.tsclassifier.freqshapes"
    assert version.tags["explains_version"] == "1"
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    for key in ("test/auprc", "test/aup", "test/aur", "test/seconds_per_series", "val/auprc"):
        assert key in metrics, key
    assert 0 <= metrics["test/auprc"] <= 1
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/landmark_map.png" in plots

    score = behave(
        "explain", "score", "--model", "models:/behave.tsclassifier.freqshapes@champion",
        "--explainer", "models:/behave.timex.freqshapes@champion",
        "--data-dir", "data/timeseries/freqshapes-tiny", "--methods", "timex", "saliency",
        "--samples", "8", "--out", "score.json", cwd=workdir,
    )  # fmt: skip
    assert "timex" in score.stdout and "saliency" in score.stdout and "ms / series" in score.stdout
    report = json.loads((workdir / "score.json").read_text())
    assert set(report["scores"]) == {"timex", "saliency"} and report["series"] == 8
    assert 0 <= report["scores"]["timex"]["auprc"] <= 1

    # review: both families are promotable per dataset
    review = behave("promote", "timex.freqshapes", cwd=workdir)
    assert "auprc" in review.stdout and "first version" in review.stdout
    behave("fit", "--config", CLASSIFIER, "--trainer.max_epochs", "1", cwd=workdir)
    review = behave("promote", "tsclassifier.freqshapes", cwd=workdir)
    assert "accuracy" in review.stdout and "<- decides" in review.stdout
    client.set_registered_model_alias("behave.tsclassifier.freqshapes", "champion", "2")
    refused = behave("promote", "timex.freqshapes", cwd=workdir, check=False)
    assert refused.returncode == 2
    assert (
        "explains tsclassifier.freqshapes version 1, but @champion is version 2" in refused.stderr
    )
    client.set_registered_model_alias("behave.tsclassifier.freqshapes", "champion", "1")

    model = mlflow.pyfunc.load_model("models:/behave.timex.freqshapes@champion")
    series = np.zeros((3, 50, 1), dtype=np.float32)
    out = model.predict(series)
    assert list(out.columns) == ["label", "kept_share", "landmark"] and len(out) == 3
    bundle = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/behave.timex.freqshapes/{version.version}/artifacts/bundle"
        )
    )
    meta = json.loads((bundle / "config.json").read_text())
    assert meta["explains"]["version"] == "1" and len(meta["landmarks"]) == 3


def test_unknown_synthetic_set_is_one_line(tmp_path):
    proc = behave(
        "data", "generate", "timeseries-synth", "--name", "nope", "--out", str(tmp_path / "x"),
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "freqshapes" in proc.stderr
