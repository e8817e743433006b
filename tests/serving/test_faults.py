"""A family whose model is corrupt is refused at load with a clear log line and answers 503
saying why, while the other families keep serving (over real HTTP)."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.serving.conftest import _store_env, launch_server, stop_server, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def half_broken(tiny_bundle, forecaster_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    broken = root / "bundle"
    shutil.copytree(tiny_bundle, broken)
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download
    env = {
        **_store_env(root),
        "BEHAVE_BEHAVEGPT_BUNDLE": str(broken),
        "BEHAVE_GRAPH_LSTM_BUNDLE": str(forecaster_bundle),
    }
    server = launch_server(env, root / "server.log")
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)


def test_corrupt_model_is_refused_and_the_others_serve(half_broken):
    r = httpx.post(
        f"{half_broken.url}/next_behavior",
        json={"requests": [{"history": [{"behavior": "b1"}]}]},
        timeout=10,
    )
    assert r.status_code == 503
    assert "BehaveGPT model could not be loaded" in r.json()["error"]
    assert "refused at load" in half_broken.log()
    assert httpx.get(f"{half_broken.url}/trajectory/model", timeout=10).status_code == 200
    assert httpx.get(f"{half_broken.url}/readyz", timeout=10).status_code == 200
