"""`kill -9` a `behave fit` mid-epoch, rerun it with `--ckpt_path last`: it continues the same
MLflow run from the last checkpoint and ends where an uninterrupted run ends, with every
(metric, step) logged exactly once — none lost, none duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import TINY, behave

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

EPOCHS = 8
KILL_AFTER_STEP = 31 * 3 + 8  # the tiny log gives 31 steps an epoch: 8 steps into epoch 4


def _metric_steps(db: Path) -> dict[str, list[int]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT key, step FROM metrics ORDER BY key, step").fetchall()
    steps: dict[str, list[int]] = {}
    for key, step in rows:
        steps.setdefault(key, []).append(step)
    return steps


def _runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT run_uuid, status FROM runs").fetchall()


def _final(db: Path, key: str) -> float:
    with sqlite3.connect(db) as con:
        (value,) = con.execute(
            "SELECT value FROM metrics WHERE key = ? ORDER BY step DESC LIMIT 1", (key,)
        ).fetchone()
    return value


def _fit_args() -> list[str]:
    return ["fit", "--config", str(TINY), "--trainer.max_epochs", str(EPOCHS)]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    from behave.data.user_events import generate_user_events

    root = tmp_path_factory.mktemp("kill-resume")
    generate_user_events(
        root / "straight" / "data" / "user-events-tiny",
        num_events=20_000, num_behaviors=60, seed=3, progress=False,
    )  # fmt: skip
    shutil.copytree(root / "straight" / "data", root / "killed" / "data")
    return root / "straight", root / "killed"


@pytest.fixture(autouse=True)
def _own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # each workdir's ./mlflow


def _kill_mid_epoch(workdir: Path) -> int:
    """Starts the fit and SIGKILLs it once it has logged KILL_AFTER_STEP; returns that step."""
    db = workdir / "mlflow" / "mlflow.db"
    job = subprocess.Popen(
        [sys.executable, "-m", "behave.cli", *_fit_args()],
        cwd=workdir, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            assert job.poll() is None, f"the fit ended before the kill:\n{job.stderr.read()}"
            try:
                reached = max(_metric_steps(db).get("train/loss", [-1]))
            except sqlite3.Error:  # the store is still being created
                reached = -1
            if reached >= KILL_AFTER_STEP:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait(30)
                return reached
            time.sleep(0.01)
        raise AssertionError("the fit never reached the step to kill at")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.stderr.close()


def test_killed_fit_resumes_the_same_run_without_lost_or_duplicated_steps(dirs):
    import torch

    from behave.tasks.resume import CHECKPOINT_KEY

    straight, killed = dirs
    behave(*_fit_args(), cwd=straight)

    killed_at = _kill_mid_epoch(killed)
    db = killed / "mlflow" / "mlflow.db"
    [(run_id, status)] = _runs(db)
    assert status == "RUNNING"  # SIGKILL: nobody closed the run
    last = killed / "checkpoints" / "behavegpt-tiny" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint[CHECKPOINT_KEY] == run_id
    assert checkpoint["global_step"] < killed_at  # steps after the checkpoint will be replayed

    proc = behave(*_fit_args(), "--ckpt_path", "last", cwd=killed)
    assert f"resuming MLflow run {run_id}" in proc.stdout
    assert f"from run {run_id}" in proc.stdout  # the model is registered from the same run

    assert _runs(db) == [(run_id, "FINISHED")]
    resumed, reference = _metric_steps(db), _metric_steps(straight / "mlflow" / "mlflow.db")
    assert resumed.keys() == reference.keys()
    for key, steps in resumed.items():
        assert steps == reference[key], f"{key}: steps differ from the uninterrupted run"
    assert len(resumed["val/loss"]) == EPOCHS
    for key in ("val/loss", "val/recall_at_10_weighted"):
        ours, theirs = _final(db, key), _final(straight / "mlflow" / "mlflow.db", key)
        assert ours == pytest.approx(theirs, rel=0.05), key  # same end, up to shuffling noise
