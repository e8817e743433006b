"""Overload and slowness over real HTTP: with BentoML's traffic settings turned down (the same
keys the service sets, overridden the documented way), a request past the timeout gets 504 and
one beyond max_concurrency gets 429, both JSON, and the service keeps answering."""

from __future__ import annotations

import threading
import time

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


def _attempt(url: str) -> tuple[int, list[int]]:
    """One slow request in flight, polled by quick ones: (its status, theirs)."""
    results = {}

    def slow():
        results["slow"] = httpx.post(f"{url}/explain", json=SLOW_EXPLAIN, timeout=60)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # let the slow request take the only slot first
    others = []
    while thread.is_alive():  # while it is in flight, a second request is refused
        others.append(httpx.get(f"{url}/behaviors", timeout=10))
        if others[-1].status_code == 429:
            break
    thread.join()
    return results["slow"], others


def test_slow_request_gets_504_and_concurrent_one_429(throttled):
    for _ in range(3):  # the quick request can still win the slot race; then try again
        slow, others = _attempt(throttled.url)
        if slow.status_code != 429:
            break
        time.sleep(1.5)
    assert slow.status_code == 504, slow.text
    assert "seconds" in slow.json()["error"]
    refused = [r for r in others if r.status_code == 429]
    assert refused and refused[0].json()["error"] == "Too many requests"
    # and then it serves again (once the timed-out work has let go of the slot)
    deadline = time.monotonic() + 30
    while httpx.get(f"{throttled.url}/behaviors", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover from overload in 30 s"
        time.sleep(0.5)
