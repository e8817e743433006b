"""`behave fit` for the Decision Mamba family end to end: tiny data -> train -> rollouts ->
registered ``behave.decision_mamba`` -> MLflow-native load -> same action as the bundle."""

from __future__ import annotations

import pytest

from tests.test_cli import behave

pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

TINY = "pipelines/decision-mamba-tiny.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm-cli")
    behave(
        "data",
        "generate",
        "offline-rl",
        "--out",
        "data/offline-rl-tiny",
        "--env",
        "lunarlander",
        "--quality",
        "medium",
        "--num-transitions",
        "3000",
        "--seed",
        "4",
        "--no-progress",
        cwd=root,
    )
    return root


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _tiny(root):
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / TINY)


def test_fast_dev_run_trains_one_batch_without_registering(workdir):
    proc = behave("fit", "--config", _tiny(workdir), "--trainer.fast_dev_run", "true", cwd=workdir)
    assert "registered" not in proc.stdout


def test_fit_registers_a_policy_that_loads_and_acts(workdir):
    import numpy as np
    import pandas as pd

    import mlflow
    from behave.data.offline_rl import load_trajectories
    from behave.inference.offline_rl import load_policy

    fit = behave("fit", "--config", _tiny(workdir), cwd=workdir)
    assert "registered behave.decision_mamba version 1" in fit.stdout

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("behave.decision_mamba", "champion")
    assert (
        champion.tags["env"] == "lunarlander" and champion.tags["architecture"] == "decision_mamba"
    )
    assert champion.tags["dataset_hash"] and "normalized_score" in champion.tags
    run = client.get_run(champion.run_id)
    assert {"val/normalized_score", "final/normalized_score", "val/action_mse"} <= set(
        run.data.metrics
    )
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/learning_curves.png",
        "plots/return_vs_step.png",
        "plots/rollout_frames.png",
        "plots/score_per_epoch.png",
    } <= plots

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # process-global: other tests may have set another store
    model = mlflow.pyfunc.load_model("models:/behave.decision_mamba@champion")
    episode = load_trajectories(workdir / "data" / "offline-rl-tiny")[0]
    rtg, obs, act = (
        episode["returns_to_go"][:5],
        episode["observations"][:5],
        episode["actions"][:4],
    )
    frame = pd.DataFrame(
        {"returns_to_go": [rtg.tolist()], "observations": [obs.tolist()], "actions": [act.tolist()]}
    )
    served = np.asarray(model.predict(frame)["action"][0])
    from behave.tracking import resolve_model_dir

    local = load_policy(resolve_model_dir("models:/behave.decision_mamba@champion"))
    assert served.shape == (2,) and np.allclose(
        served, local.act_on_history(rtg, obs, act), atol=1e-5
    )


def test_missing_data_is_a_one_line_error(workdir):
    proc = behave(
        "fit", "--config", _tiny(workdir), "--data.data_dir", "data/nope", cwd=workdir, check=False
    )
    assert proc.returncode == 2
    assert "behave data generate offline-rl --out data/nope" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_promote_rolls_both_versions_out_on_the_same_seeds(workdir):
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = len(client.search_model_versions("name='behave.decision_mamba'"))
    fit = behave("fit", "--config", _tiny(workdir), "--model.self_evolution", "false", cwd=workdir)
    assert f"registered behave.decision_mamba version {before + 1}" in fit.stdout
    review = behave("promote", "decision_mamba", cwd=workdir).stdout
    assert "normalized_score" in review and "decides" in review
    assert f"promoted v{before + 1}" in review or "kept v" in review
    bad = behave("promote", "decision_mamba", "--data-dir", "x", cwd=workdir, check=False)
    assert bad.returncode == 2 and "--data-dir applies to behavegpt only" in bad.stderr
