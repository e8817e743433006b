"""``POST /trajectory/forecast`` (Graph-LSTM): schema checks without a server, then the service
over real HTTP on a registered tiny forecaster (conftest.forecaster_bundle, observes 6 at 5 Hz)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from behave.inference.graph_lstm import load_forecaster
from serving import trajectory_schemas as ts

OBSERVE = 6


def scene(agents: int = 3, offset: float = 0.0) -> dict:
    return {
        "agents": [
            {
                "agent_id": f"car-{i}",
                "track": [
                    [offset + 25.0 * i + 5.0 * t / 5, 4.0 * (i % 2)] for t in range(OBSERVE + 2)
                ],
            }
            for i in range(agents)
        ]
    }


BAD = {  # body -> loc of the first error
    "too short": ({"scenes": [{"agents": [{"agent_id": "a", "track": [[0, 0]] * 4}]}]}, ["scenes", 0, "agents", 0, "track"]),
    "NaN": ('{"scenes": [{"agents": [{"agent_id": "a", "track": [[0, 0], [1, NaN], [2, 0], [3, 0], [4, 0], [5, 0]]}]}]}', ["scenes", 0, "agents", 0, "track", 1, 1]),
    "duplicate ids": ({"scenes": [{"agents": [scene()["agents"][0], scene()["agents"][0]]}]}, ["scenes", 0]),
    "empty scene": ({"scenes": [{"agents": []}]}, ["scenes", 0, "agents"]),
    "bare scene": (scene(), []),
    "point of 3": ({"scenes": [{"agents": [{"agent_id": "a", "track": [[0, 0, 0]] * 6}]}]}, ["scenes", 0, "agents", 0, "track", 0]),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_forecast_input_rejects_with_the_field(case):
    body, loc = BAD[case]
    try:
        ts.use_forecaster(OBSERVE, 5.0)
        with pytest.raises(ValueError) as err:
            if isinstance(body, str):
                ts.ForecastInput.model_validate_json(body)
            else:
                ts.ForecastInput.model_validate(body)
    finally:
        ts.use_forecaster(None)
    first = err.value.errors()[0]
    assert tuple(loc) == first["loc"][: len(loc)], err.value.errors()
    if case == "duplicate ids":
        assert "repeats agents[0]" in first["msg"]
    if case == "too short":
        assert "at least 6 positions (1.2 s at 5 Hz)" in first["msg"]


# ---- over HTTP ---------------------------------------------------------------------------------
def post(url: str, body) -> httpx.Response:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    return httpx.post(f"{url}/trajectory/forecast", timeout=30, **kwargs)


@pytest.mark.slow
def test_forecast_over_http_equals_the_bundle(act_server, forecaster_bundle):
    response = post(act_server.url, {"scenes": [scene(3), scene(2, offset=500.0)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == 2 and [len(s["agents"]) for s in body] == [3, 2]
    first = body[0]["agents"][0]
    assert first["agent_id"] == "car-0" and len(first["positions"]) == 10
    assert first["times_s"][0] == pytest.approx(0.2) and first["times_s"][-1] == pytest.approx(2.0)
    assert set(first["behavior_probabilities"]) == {"overspeeding", "neutral", "underspeeding"}
    assert all(s > 0 for xy in first["sigma"] for s in xy)
    assert body[0]["model_version"] == "1"
    local = load_forecaster(forecaster_bundle).forecast([scene(3)["agents"]])[0]
    assert first["positions"] == local[0]["positions"]
    # the second scene was forecast in its own coordinates (500 m further), not the first's
    assert body[1]["agents"][0]["positions"][0][0] > 450


@pytest.mark.slow
def test_concurrent_requests_each_get_their_own_scenes_back(act_server):
    bodies = [{"scenes": [scene(1 + i % 3, offset=100.0 * i)]} for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda b: post(act_server.url, b), bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    for i, r in enumerate(responses):
        agents = r.json()[0]["agents"]
        assert len(agents) == 1 + i % 3
        single = post(act_server.url, bodies[i]).json()[0]["agents"]
        np.testing.assert_allclose(agents[0]["positions"], single[0]["positions"], atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["too short", "NaN", "duplicate ids", "bare scene"])
def test_bad_scenes_are_400_naming_the_field(act_server, case):
    body, loc = BAD[case]
    response = post(act_server.url, body)
    assert response.status_code == 400, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.text


@pytest.mark.slow
def test_model_info_and_503_without_a_forecaster(act_server, empty_server):
    info = httpx.get(f"{act_server.url}/trajectory/model", timeout=10).json()
    assert info["observe_steps"] == OBSERVE and info["hz"] == 5.0 and info["model_version"] == "1"
    assert "behave.graph_lstm@champion (version 1) on cpu" in act_server.log()
    for response in (
        post(empty_server.url, {"scenes": [scene()]}),
        httpx.get(f"{empty_server.url}/trajectory/model", timeout=10),
    ):
        assert response.status_code == 503
        assert (
            "train one with `behave fit --config pipelines/graph-lstm.yaml`"
            in response.json()["error"]
        )
