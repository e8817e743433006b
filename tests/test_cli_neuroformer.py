"""`behave fit` for Neuroformer end to end: generated spikes -> pretraining -> few-shot decoding,
connectivity and generation scored in MLflow -> registered ``behave.neuroformer`` -> MLflow-native
load; plus `behave data generate/import spikes` one-liners."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import behave

TINY = str(Path(__file__).resolve().parents[1] / "pipelines" / "neuroformer-tiny.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("neuroformer-cli")
    out = behave(
        "data", "generate", "spikes", "--out", "data/spikes-tiny", "--neurons", "20",
        "--trials", "12", "--trial-s", "1", "--no-progress", cwd=root,
    )  # fmt: skip
    assert "20 neurons in 12 trials" in out.stdout
    return root


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_fast_dev_run_trains_one_batch_without_registering(workdir):
    proc = behave("fit", "--config", TINY, "--trainer.fast_dev_run", "true", cwd=workdir)
    assert "registered" not in proc.stdout


@pytest.mark.slow
def test_fit_scores_registers_and_loads(workdir):
    import pandas as pd

    import mlflow

    fit = behave("fit", "--config", TINY, cwd=workdir)
    assert "registered behave.neuroformer version 1" in fit.stdout

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("behave.neuroformer", "champion")
    assert "connectivity_auroc" in champion.tags and "behavior_r2" in champion.tags
    run = client.get_run(champion.run_id)
    metrics = run.data.metrics
    for key in (
        "val/loss",
        "val/id_ce",
        "test/behavior_r2",
        "test/connectivity_auroc",
        "test/connectivity_auprc",
        "test/next_window_f1",
        "test/psth_corr_population",
        "test/generated_rate_hz",
    ):
        assert key in metrics, key
    assert 0 <= metrics["test/connectivity_auroc"] <= 1
    # the loss went down: the first logged training loss is above the best validation loss
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert history[0].value > metrics["val/loss"]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/raster.png",
        "plots/connectivity.png",
        "plots/decoded_behavior.png",
        "plots/learning_curves.png",
    } <= plots

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/behave.neuroformer@champion")
    frame = pd.DataFrame({"neuron": [0, 3, 5, 7, 1], "time": [0.0, 0.04, 0.11, 0.2, 0.31]})
    decoded = model.predict(frame)
    assert list(decoded.columns) == ["start_s", "end_s", "value"] and len(decoded) == 4


def test_import_spikes_quarantines_and_errors_are_one_line(workdir):
    (workdir / "units.csv").write_text("unit,t\n5,0.01\n7,0.02\n5,-0.5\nx,0.03\n9,0.04\n")
    out = behave(
        "data", "import", "spikes", "units.csv", "--out", "data/imported", "--map",
        "neuron=unit,time=t", cwd=workdir,
    )  # fmt: skip
    assert "quarantine" in out.stdout
    bad = behave(
        "data", "import", "spikes", "units.csv", "--out", "data/x", cwd=workdir, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "neuron" in bad.stderr
