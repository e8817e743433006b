"""The `behave` command end to end on a tiny generated log, in a temporary MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "pipelines" / "behavegpt-tiny.yaml"


def behave(
    *args: str, cwd: Path, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "behave.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"behave {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory with a tiny generated log at data/user-events-tiny and its own
    ./mlflow store (the default location, so no MLFLOW_TRACKING_URI is needed)."""
    from behave.data.user_events import generate_user_events

    root = tmp_path_factory.mktemp("cli")
    generate_user_events(
        root / "data" / "user-events-tiny",
        num_events=20_000,
        num_behaviors=60,
        seed=3,
        progress=False,
    )
    return root


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_help_lists_every_command(workdir):
    out = behave("--help", cwd=workdir).stdout
    for verb in ("fit", "validate", "test", "predict", "data", "promote", "serve"):
        assert verb in out


def test_print_config_resolves_the_pipeline(workdir):
    out = behave("fit", "--config", str(TINY), "--print_config", cwd=workdir).stdout
    assert "behave.tasks.behavegpt.BehaveGPTTask" in out
    assert "objective: dro" in out and "context_length: 16" in out


def test_fast_dev_run_trains_one_batch_without_registering(workdir):
    proc = behave("fit", "--config", str(TINY), "--trainer.fast_dev_run", "true", cwd=workdir)
    assert "registered" not in proc.stdout


def test_bad_data_dir_is_one_line_error(workdir):
    proc = behave(
        "fit",
        "--config",
        str(TINY),
        "--data.init_args.data_dir",
        "data/missing",
        cwd=workdir,
        check=False,
    )
    assert proc.returncode != 0
    assert "data/missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fit_registers_then_promote_and_load_round_trip(workdir):
    import pandas as pd
    import polars as pl

    import mlflow

    fit = behave("fit", "--config", str(TINY), cwd=workdir)
    assert "registered behave.behavegpt version 1" in fit.stdout
    second = behave("fit", "--config", str(TINY), "--model.init_args.objective", "erm", cwd=workdir)
    assert "registered behave.behavegpt version 2" in second.stdout

    review = behave("promote", "behavegpt", cwd=workdir).stdout
    assert "recall_at_10_macro" in review and "decides" in review
    assert ("promoted v2" in review) or ("kept v1" in review)

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("behave.behavegpt", "champion")
    challenger = client.get_model_version_by_alias("behave.behavegpt", "challenger")
    assert str(challenger.version) == "2"
    assert champion.tags["dataset_hash"] and champion.tags["git_commit"]
    if "promoted v2" in review:
        assert str(champion.version) == "2"
        assert str(client.get_model_version_by_alias("behave.behavegpt", "previous").version) == "1"
    else:
        assert str(champion.version) == "1"
        assert challenger.tags["validation_status"] == "rejected"

    run = client.get_run(champion.run_id)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/learning_curves.png",
        "plots/recall_by_frequency_bucket.png",
        "plots/transition_heatmap.png",
    } <= artifacts
    assert "val/recall_at_10_macro" in run.data.metrics
    assert "generation/transition_jsd" in run.data.metrics

    # MLflow-native load of the registered model (models-from-code, no pickle), batch > 1
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # process-global: other tests may have set another store
    model = mlflow.pyfunc.load_model("models:/behave.behavegpt@champion")
    known = (
        pl.read_parquet(workdir / "data" / "user-events-tiny" / "events.parquet")["behavior"]
        .unique()
        .sort()
    )
    a, b, c = known[:3].to_list()
    pred = model.predict(pd.DataFrame({"history": [[a], [a, b], [c, b, a]]}))
    assert len(pred) == 3 and all(len(b) == 10 for b in pred["behaviors"])


def test_adaptation_starts_from_the_registered_champion(workdir):
    """pipelines/behavegpt-adapt.yaml: fine-tune @champion on 10% of one domain's users."""
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        champion = client.get_model_version_by_alias("behave.behavegpt", "champion")
    except mlflow.exceptions.MlflowException:
        pytest.skip("needs the champion registered by the round-trip test")
    adapt = REPO / "pipelines" / "behavegpt-adapt.yaml"
    proc = behave(
        "fit",
        "--config",
        str(TINY),
        "--config",
        str(adapt),
        "--trainer.max_epochs",
        "1",
        cwd=workdir,
    )
    assert "registered behave.behavegpt version" in proc.stdout
    newest = client.get_model_version_by_alias("behave.behavegpt", "challenger")
    assert int(newest.version) > int(champion.version)
    split = json.loads(newest.tags["eval_split"])
    assert split["domains"] == ["fintech"]


def test_resume_from_last_checkpoint(workdir):
    """A run stopped after epoch 1 continues from checkpoints/.../last.ckpt to epoch 2."""
    behave("fit", "--config", str(TINY), "--trainer.max_epochs", "1", cwd=workdir)
    proc = behave(
        "fit",
        "--config",
        str(TINY),
        "--trainer.max_epochs",
        "2",
        "--ckpt_path",
        "last",
        cwd=workdir,
    )
    log = proc.stderr + proc.stdout
    assert "Restored all states from the checkpoint" in log
    assert "last.ckpt" in log
    assert "registered behave.behavegpt version" in proc.stdout


def test_predict_writes_named_top10_predictions(workdir):
    import polars as pl

    if not (workdir / "checkpoints" / "behavegpt-tiny" / "last.ckpt").exists():
        behave("fit", "--config", str(TINY), "--trainer.max_epochs", "1", cwd=workdir)
    proc = behave("predict", "--config", str(TINY), "--ckpt_path", "last", cwd=workdir)
    assert "predictions to predictions/behavegpt-tiny.parquet" in proc.stdout
    table = pl.read_parquet(workdir / "predictions" / "behavegpt-tiny.parquet")
    assert table.height > 0 and table.columns == ["window", "position", "actual", "predicted"]
    assert all(len(p) == 10 for p in table["predicted"].head(20))
    assert "<pad>" not in set(table["actual"])


def test_serve_uses_the_store_of_the_directory_it_is_started_from(tmp_path, monkeypatch):
    # BentoML runs the service from the source root; without pinning, `behave serve` started
    # elsewhere answered 503 from the source root's ./mlflow instead of the models `behave fit`
    # had just registered in this directory's
    from behave import cli

    calls = []
    monkeypatch.setattr(os, "execvp", lambda path, argv: calls.append((argv, dict(os.environ))))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BEHAVE_GRAPH_LSTM_BUNDLE", "bundles/graph-lstm")
    monkeypatch.chdir(tmp_path)
    cli.main(["serve", "--port", "3999"])
    ((argv, env),) = calls
    assert argv[argv.index("--working-dir") + 1] == str(REPO)
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert env["BEHAVE_GRAPH_LSTM_BUNDLE"] == str(tmp_path / "bundles" / "graph-lstm")
