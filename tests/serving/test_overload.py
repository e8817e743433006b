"""Overload and slowness over real HTTP: with BentoML's traffic settings turned down (the same
keys the service sets, overridden the documented way), a request past the timeout gets 504 and
one beyond max_concurrency gets 429, both JSON, and the service keeps answering."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.serving.conftest import (
    SERIES_CHANNELS,
    SERIES_LEN,
    launch_server,
    stop_server,
    wait_ready,
)

pytestmark = pytest.mark.slow

SLOW_EXPLAIN = {  # 64 series x 300 integrated-gradients steps: seconds on a CPU core
    "family": "tsclassifier",
    "model": "toy",
    "method": "integrated_gradients",
    "n_steps": 300,
    "inputs": [[[0.1 * t] * SERIES_CHANNELS for t in range(SERIES_LEN)]] * 64,
}


@pytest.fixture(scope="module")
def throttled(registry, tmp_path_factory):
    env = {k: v for k, v in registry.items() if k != "EXPECTED_VERSION"}
    env["BENTOML_CONFIG_OPTIONS"] = (
        "services.behave.traffic.timeout=1 services.behave.traffic.max_concurrency=1"
    )
    server = launch_server(env, tmp_path_factory.mktemp("throttled") / "server.log")
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)


def test_slow_request_gets_504_and_concurrent_one_429(throttled):
    results = {}

    def slow():
        results["slow"] = httpx.post(f"{throttled.url}/explain", json=SLOW_EXPLAIN, timeout=60)

    thread = threading.Thread(target=slow)
    thread.start()
    other = None
    while thread.is_alive():  # while the slow one is in flight, a second request is refused
        other = httpx.get(f"{throttled.url}/behaviors", timeout=10)
        if other.status_code == 429:
            break
    thread.join()
    assert results["slow"].status_code == 504, results["slow"].text
    assert "seconds" in results["slow"].json()["error"]
    assert other is not None and other.status_code == 429
    assert other.json()["error"] == "Too many requests"
    # and then it serves again
    assert httpx.get(f"{throttled.url}/behaviors", timeout=10).status_code == 200
