"""``/neural/*`` (Neuroformer): schema checks without a server, then the service over real HTTP
on a registered tiny Neuroformer (conftest.neuroformer_bundle: 12 neurons, 3 stimulus channels)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from behave.inference.neuroformer import load_neuroformer
from serving import neural_schemas as ns

N, S = 12, 3


def spikes(count: int = 40, duration_s: float = 0.4) -> list[dict]:
    times = np.linspace(0.0, duration_s, count)
    return [{"neuron": int(i % N), "time": float(round(t, 4))} for i, t in enumerate(times)]


BAD = {  # body -> (loc of the error, words of its message)
    "empty": ({"spikes": []}, ["spikes"], "no spikes"),
    "negative time": ({"spikes": [{"neuron": 0, "time": -0.1}]}, ["spikes", 0, "time"], "greater than or equal to 0"),
    "unknown neuron": ({"spikes": [{"neuron": 0, "time": 0.0}, {"neuron": N, "time": 0.1}]}, ["spikes"], "unknown neuron id 12; this model knows ids 0..11"),
    "unsorted": ({"spikes": [{"neuron": 0, "time": 0.2}, {"neuron": 1, "time": 0.1}]}, ["spikes"], "spikes must be sorted by time"),
    "too long": ({"spikes": [{"neuron": 0, "time": 5125.0}]}, ["spikes"], "past the 60 s one request may span"),
    "stimulus width": ({"spikes": spikes(), "stimulus": [[0.0] * 2]}, ["stimulus"], "expected 3 channels per bin"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_spike_lists_are_rejected_with_the_reason(case):
    body, loc, words = BAD[case]
    try:
        ns.use_neural_model(N, S)
        with pytest.raises(ValueError) as err:
            ns.DecodeInput.model_validate(body)
    finally:
        ns.use_neural_model(None)
    first = err.value.errors()[0]
    assert tuple(loc) == first["loc"][: len(loc)], err.value.errors()
    assert words in first["msg"], first["msg"]


def post(url: str, route: str, body) -> httpx.Response:
    return httpx.post(f"{url}/neural/{route}", json=body, timeout=60)


@pytest.mark.slow
def test_decode_over_http_equals_the_bundle(act_server, neuroformer_bundle):
    body = {"spikes": spikes(), "stimulus": [[0.5, 0.0, 1.0]] * 40}
    response = post(act_server.url, "decode", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["behavior"] == "running_speed" and result["model_version"] == "1"
    # spikes up to 0.4 s: windows of 50 ms after the first 150 ms, the last one holds 0.4 s
    starts = [w["start_s"] for w in result["windows"]]
    assert starts == pytest.approx([0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
    local = load_neuroformer(neuroformer_bundle).decode(
        [s["neuron"] for s in body["spikes"]], [s["time"] for s in body["spikes"]], body["stimulus"]
    )
    np.testing.assert_allclose(
        [w["value"] for w in result["windows"]], [w["value"] for w in local["windows"]], rtol=1e-4
    )


@pytest.mark.slow
def test_generate_over_http_is_seeded(act_server):
    body = {"spikes": spikes(), "duration_s": 0.2, "seed": 7, "top_k": 5}
    first, again = post(act_server.url, "generate", body), post(act_server.url, "generate", body)
    assert first.status_code == 200, first.text
    assert first.json() == again.json()
    result = first.json()
    assert result["start_s"] == pytest.approx(0.41) and result["end_s"] == pytest.approx(0.61)
    assert all(0 <= s["neuron"] < N for s in result["spikes"])
    assert all(result["start_s"] <= s["time"] < result["end_s"] for s in result["spikes"])
    other = post(act_server.url, "generate", {**body, "seed": 8}).json()
    assert other["spikes"] != result["spikes"] or not result["spikes"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty", "negative time", "unknown neuron", "unsorted"])
def test_malformed_spike_lists_are_400_with_the_reason(act_server, case):
    body, loc, words = BAD[case]
    for route in ("decode", "generate"):
        response = post(act_server.url, route, body)
        assert response.status_code == 400, response.text
        assert words in response.text, response.text


@pytest.mark.slow
def test_connectivity_and_503_without_a_model(act_server, empty_server):
    result = httpx.get(f"{act_server.url}/neural/connectivity?top=3", timeout=10).json()
    assert result["num_neurons"] == N and len(result["matrix"]) == N
    assert result["top_edges"][0] == {"source": 3, "target": 7, "weight": 4.0}
    assert len(result["top_edges"]) == 3
    for response in (
        post(empty_server.url, "decode", {"spikes": spikes()}),
        httpx.get(f"{empty_server.url}/neural/connectivity", timeout=10),
    ):
        assert response.status_code == 503
        assert "behave fit --config pipelines/neuroformer.yaml" in response.json()["error"]
