"""Two `behave fit` jobs started at once on one fresh SQLite store both finish and both
register (before, one died in MLflow's schema migration: "duplicate column name")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.test_cli import TINY

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def test_two_fits_share_one_fresh_sqlite_store(tmp_path):
    import mlflow
    from behave.data.user_events import generate_user_events

    generate_user_events(
        tmp_path / "a" / "data" / "user-events-tiny", num_events=8_000, num_behaviors=40,
        seed=2, progress=False,
    )  # fmt: skip
    shutil.copytree(tmp_path / "a" / "data", tmp_path / "b" / "data")
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "BEHAVE_ARTIFACT_ROOT": (tmp_path / "shared" / "artifacts").as_uri(),
    }
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "behave.cli",
                "fit",
                "--config",
                str(TINY),
                "--trainer.max_epochs",
                "1",
            ],
            cwd=tmp_path / name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for name in ("a", "b")
    ]
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    for job, out in zip(jobs, outputs, strict=True):
        assert job.returncode == 0, out[-4000:]
    registered = sorted(
        line.split("version ")[1].split()[0]
        for out in outputs
        for line in out.splitlines()
        if line.startswith("registered behave.behavegpt version")
    )
    assert registered == ["1", "2"]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("behavegpt-tiny").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # every logged step of each run is there once
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert steps and len(steps) == len(set(steps))
