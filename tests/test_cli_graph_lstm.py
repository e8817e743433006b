"""`behave fit` for the Graph-LSTM family end to end: generated traffic -> train -> metrics in
metres and plots in MLflow -> registered ``behave.graph_lstm`` -> MLflow-native load -> the same
forecast as the bundle; plus `behave data import traffic` and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import behave

pytest.importorskip("highway_env")

TINY = str(Path(__file__).resolve().parents[1] / "pipelines" / "graph-lstm-tiny.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph-lstm-cli")
    out = behave(
        "data", "generate", "traffic", "--out", "data/traffic-tiny", "--scenes", "6",
        "--duration-s", "8", "--seed", "2", "--no-progress", cwd=root,
    )  # fmt: skip
    assert "6 scenes" in out.stdout and "10 Hz" in out.stdout
    return root


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_fast_dev_run_trains_one_batch_without_registering(workdir):
    proc = behave("fit", "--config", TINY, "--trainer.fast_dev_run", "true", cwd=workdir)
    assert "registered" not in proc.stdout


def test_fit_registers_a_forecaster_that_loads_and_answers(workdir):
    import mlflow
    from behave.tracking import resolve_model_dir

    fit = behave("fit", "--config", TINY, cwd=workdir)
    assert "registered behave.graph_lstm version 1" in fit.stdout

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("behave.graph_lstm", "champion")
    assert champion.tags["variant"] == "full" and "fde_5s" in champion.tags
    run = client.get_run(champion.run_id)
    metrics = run.data.metrics
    for key in ("val/fde_5s", "val/cv_fde_5s", "test/ade_3s", "test/fde_5s", "test/cv_fde_3s"):
        assert key in metrics, key
    assert 0 < metrics["test/cv_fde_5s"] < 50  # metres, not normalized units
    assert "test/behavior_weighted_accuracy" in metrics
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/scene_forecasts.png",
        "plots/behavior_confusion.png",
        "plots/learning_curves.png",
    } <= plots

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/behave.graph_lstm@champion")
    import pandas as pd

    track = [[float(10 * t / 10), 0.0] for t in range(20)]
    frame = pd.DataFrame(
        {
            "scene": [0, 0],
            "agent_id": ["a", "b"],
            "track": [track, [[x + 30, 4.0] for x, _ in track]],
        }
    )
    served = model.predict(frame)
    assert list(served["agent_id"]) == ["a", "b"] and len(served["positions"][0]) == 50

    from behave.inference import load_predictor

    local = load_predictor(resolve_model_dir("models:/behave.graph_lstm@champion"))
    direct = local.forecast(
        [
            [
                {"agent_id": "a", "track": track},
                {"agent_id": "b", "track": [[x + 30, 4.0] for x, _ in track]},
            ]
        ]
    )
    assert served["positions"][0] == direct[0][0]["positions"]


def test_plain_lstm_with_a_regularizer_is_a_one_line_error(workdir):
    proc = behave(
        "fit", "--config", TINY, "--model.graph_stream", "false", cwd=workdir, check=False
    )
    assert proc.returncode == 2 and "regularizer_weight needs stream 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_traffic_data_names_the_command(workdir):
    proc = behave("fit", "--config", TINY, "--data.data_dir", "data/nope", cwd=workdir, check=False)
    assert proc.returncode == 2
    assert "behave data generate traffic --out data/nope" in proc.stderr


def test_import_traffic_from_the_cli(workdir):
    source = workdir / "mine.csv"
    source.write_text("t,id,x,y\n0,a,0,0\n1,a,1,0\n1,a,1,0\n2,b,nan,0\n")
    proc = behave(
        "data", "import", "traffic", str(source), "--out", "data/mine", "--map", "frame=t,agent=id",
        cwd=workdir,
    )  # fmt: skip
    assert "imported 1 of 4 rows" in proc.stdout and "duplicate: 2" in proc.stdout
    bad = behave("data", "import", "traffic", str(source), "--out", "x", cwd=workdir, check=False)
    assert bad.returncode == 2 and "--map frame=" in bad.stderr


def test_promote_scores_both_versions_on_the_same_test_scenes(workdir):
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = len(client.search_model_versions("name='behave.graph_lstm'"))
    fit = behave("fit", "--config", TINY, "--model.regularizer_weight", "0", cwd=workdir)
    assert f"registered behave.graph_lstm version {before + 1}" in fit.stdout
    review = behave("promote", "graph_lstm", cwd=workdir).stdout
    assert "fde_5s" in review and "<- decides" in review and "cv_fde_5s" in review
    table = {line.split()[0]: line.split()[1:3] for line in review.splitlines()[2:-1]}
    champion, challenger = (float(v) for v in table["fde_5s"])
    if challenger < champion:  # lower is better for errors in metres
        assert f"promoted v{before + 1}" in review
    else:
        assert "kept v" in review
    # constant velocity does not depend on the model: the same on both sides
    assert table["cv_fde_5s"][0] == table["cv_fde_5s"][1]
