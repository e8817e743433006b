"""POST /probe and GET /probe/models over real HTTP: the registered probe scores a history the
same as the library does, and bad requests get a 400 naming the field."""

import httpx
import pytest

from tests.serving.conftest import PROBE_NAME, tiny_probe

pytestmark = pytest.mark.slow


def _post(server, body):
    return httpx.post(f"{server.url}/probe", json=body, timeout=30)


def test_models_route_lists_the_probe_with_its_lineage(server, registry):
    probes = httpx.get(f"{server.url}/probe/models", timeout=10).json()["probes"]
    assert set(probes) == {PROBE_NAME}
    info = probes[PROBE_NAME]
    assert (info["layer"], info["auroc"], info["probe_version"]) == (1, 0.9, "1")
    assert info["reads_version"] == registry["EXPECTED_VERSION"]


def test_probe_scores_like_the_library(server, registry, tiny_bundle, tiny_model, tmp_path):
    from behave.inference.behavegpt import HistoryEvent
    from behave.inference.probe import ProbePredictor, save_probe_bundle

    histories = [tiny_model.behaviors[:3], tiny_model.behaviors[5:9] * 3]  # the 2nd is truncated
    scores = []
    for history in histories:
        r = _post(server, {"probe": PROBE_NAME, "history": [{"behavior": b} for b in history]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["flagged"] == (body["score"] >= body["threshold"])
        scores.append(body)
    assert scores[1]["truncated"] and scores[1]["events_used"] == tiny_model.context_length
    # the same probe and weights, run locally, give the same scores
    probe = tiny_probe(registry["EXPECTED_VERSION"])
    local = ProbePredictor.from_dir(save_probe_bundle(probe, tiny_bundle, tmp_path / "probe"))
    expected = local.score([[HistoryEvent(b) for b in h] for h in histories])
    for got, want in zip(scores, expected, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert scores[0]["score"] != pytest.approx(scores[1]["score"])


def test_the_only_probe_is_the_default(server, tiny_model):
    r = _post(server, {"history": [{"behavior": tiny_model.behaviors[0]}]})
    assert r.status_code == 200 and r.json()["probe"] == PROBE_NAME


@pytest.mark.parametrize(
    "body, loc, words",
    [
        ({"probe": "behavegpt.nope", "history": [{"behavior": "b1"}]}, "probe", PROBE_NAME),
        ({"probe": PROBE_NAME, "history": []}, "history", "at least 1"),
        ({"probe": PROBE_NAME, "history": [{"behavior": "nope"}]}, "behavior", "GET /behaviors"),
        ({"probe": PROBE_NAME, "history": [{"behavior": "b1"}], "x": 1}, "x", "Extra"),
    ],
)
def test_bad_requests_get_400_naming_the_field(server, body, loc, words):
    r = _post(server, body)
    assert r.status_code == 400, r.text
    assert loc in r.text and words in r.text


def test_empty_store_answers_503_saying_how_to_get_a_probe(empty_server):
    r = _post(empty_server, {"history": [{"behavior": "b1"}]})
    assert r.status_code == 503
    assert "behave surgery" in r.json()["error"]
