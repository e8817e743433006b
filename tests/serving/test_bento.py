"""`bentoml build` packs the service into a bento (bentofile.yaml) that `bentoml serve` runs on
its own: built into a temporary BENTOML_HOME (nothing touches ~/bentoml), then served from a
directory outside the repository, so `serving` and `behave` must come from the bento's src/."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from tests.serving.conftest import (
    REPO_ROOT,
    Server,
    _store_env,
    launch_server,
    stop_server,
    wait_ready,
)

pytestmark = pytest.mark.slow

BUILD_TIMEOUT_S = 180
SERVICE = "serving.service:BehaveService"
# what the service needs and nothing else (bentofile.yaml `include`)
SRC_TOP_LEVEL = {"behave", "serving", "bentofile.yaml"}
NOT_IN_BENTO = ["data", "mlflow", "checkpoints", "benchmarks", "tests", "scripts", "pipelines", ".venv", ".git"]  # fmt: skip
MAX_BENTO_BYTES = 10 * 1024 * 1024  # source only: ~1.5 MB; data/ or checkpoints/ would blow it


# a PYTHONPATH could reach the repository; bytecode writing shows which copy was imported
DROPPED = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")


def _clean_env(bentoml_home: Path) -> dict[str, str]:
    """The caller's environment without BEHAVE_* settings or a PYTHONPATH that could reach the
    repository; bytecode writing on, so the served bento records which files it imported."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("BEHAVE_") and k not in DROPPED},
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "BENTOML_HOME": str(bentoml_home),
    }


def _has_uv() -> bool:
    try:
        importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        return shutil.which("uv") is not None
    return True


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


@pytest.fixture(scope="module")
def bento(tmp_path_factory) -> SimpleNamespace:
    """`bentoml build` from the repository root into a temporary BENTOML_HOME."""
    if not _has_uv():  # bentoml build would pip-install it (network) into the environment
        pytest.skip("bentoml build needs uv in the environment (pip install uv)")
    home = tmp_path_factory.mktemp("bentoml-home")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO_ROOT,
        env=_clean_env(home),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"bentoml build failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    tag = proc.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    path = home / "bentos" / name / version
    assert path.is_dir(), f"no bento at {path}: {proc.stdout}"
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    size = sum((path / f).stat().st_size for f in files)
    print(f"\nbentoml build: {tag} in {seconds:.1f} s, {len(files)} files, {size / 1e6:.2f} MB")
    return SimpleNamespace(
        tag=tag, home=home, path=path, src=path / "src", files=files, size=size, seconds=seconds
    )


def test_bento_holds_the_service_and_only_its_source(bento):
    info = yaml.safe_load((bento.path / "bento.yaml").read_text())
    assert info["service"] == SERVICE
    # not "behave": `bentoml serve behave:TAG` would import the installed behave package first
    assert info["name"] == "behave-service" and bento.tag.startswith("behave-service:")
    assert info["labels"]["project"] == "behave"
    assert info["models"] == []  # models come from the registry at start-up, not the bento

    src_files = [f.removeprefix("src/") for f in bento.files if f.startswith("src/")]
    assert {f.split("/", 1)[0] for f in src_files} == SRC_TOP_LEVEL
    for needed in ("serving/service.py", "serving/guards.py", "behave/__init__.py",
                   "behave/inference/behavegpt.py", "behave/tracking.py", "behave/device.py"):  # fmt: skip
        assert needed in src_files
    for folder in NOT_IN_BENTO:
        assert not (bento.src / folder).exists(), f"{folder}/ was packed into the bento"
    assert not any("__pycache__" in f or f.endswith((".pyc", ".ckpt")) for f in bento.files)
    assert bento.size < MAX_BENTO_BYTES, f"bento is {bento.size / 1e6:.1f} MB"


def test_bento_pins_agree_with_constraints(bento):
    requirements = (bento.path / "env" / "python" / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in requirements if "==" in line)
    pins = {k.strip().lower(): v.strip() for k, v in pins.items()}
    constraints = _constraints()
    for package in ("torch", "mlflow", "bentoml", "captum", "polars"):
        assert pins.get(package) == constraints[package], (package, pins.get(package))
    for package, version in pins.items():  # nothing pinned against the tested versions
        assert constraints.get(package, version) == version, (package, version)
    assert "lightning" not in pins and "transformers" not in pins  # training deps stay out


def test_bento_declares_runtime_envs_without_baking_them(bento):
    info = yaml.safe_load((bento.path / "bento.yaml").read_text())
    envs = {env["name"]: env for env in info["envs"]}
    for name in ("MLFLOW_TRACKING_URI", "BEHAVE_API_TOKEN"):
        assert envs[name]["stage"] == "runtime" and not envs[name]["value"]
    dockerfile = (bento.path / "env" / "docker" / "Dockerfile").read_text()
    assert "BEHAVE_API_TOKEN" not in dockerfile and "MLFLOW_TRACKING_URI" not in dockerfile


@pytest.fixture(scope="module")
def bento_server(bento, tmp_path_factory) -> Iterator[Server]:
    """`bentoml serve <tag>` from a directory outside the repository, on an empty MLflow store."""
    outside = tmp_path_factory.mktemp("outside-repo")
    assert not outside.resolve().is_relative_to(REPO_ROOT)
    env = {**_store_env(outside / "store"), "BENTOML_HOME": str(bento.home)}
    server = launch_server(env, outside / "server.log", target=bento.tag, cwd=outside, drop=DROPPED)
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)


def test_served_bento_is_ready_and_answers_503_without_a_model(bento, bento_server):
    assert httpx.get(f"{bento_server.url}/readyz", timeout=10).status_code == 200
    body = {"requests": [{"history": [{"behavior": "b1"}]}]}
    response = httpx.post(f"{bento_server.url}/next_behavior", json=body, timeout=30)
    assert response.status_code == 503, response.text
    assert "behave.behavegpt@champion" in response.json()["error"]
    # the worker imported serving and behave from the bento's src/ (their bytecode was written
    # there), not from the repository through the editable install
    for package in ("serving", "behave", "behave/inference"):
        cache = bento.src / package / "__pycache__"
        assert cache.is_dir() and any(cache.glob("*.pyc")), f"{package} not imported from bento"
