"""The BentoML service end to end: registry -> ``bentoml serve`` -> HTTP (see conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from serving import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN = [f"b{i}" for i in range(10)]  # names the tiny model knows (conftest: b0..b17)
CONTEXT_LENGTH = 8  # the tiny model's (conftest); test_behaviors_lists_the_vocabulary checks it


def history(n: int, start: int = 0) -> list[dict]:
    return [{"behavior": KNOWN[(start + i) % len(KNOWN)]} for i in range(n)]


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30)


def error_locs(response: httpx.Response) -> list[list]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert "error" in body and body["detail"], body
    return [d["loc"] for d in body["detail"]]


# ---- without a server ----------------------------------------------------------------------
def test_schemas_check_vocabulary_only_when_one_is_set():
    request = {"history": [{"behavior": "anything"}], "top_k": 3}
    try:
        schemas.use_vocabulary(None)
        assert schemas.NextBehaviorRequest.model_validate(request).top_k == 3
        schemas.use_vocabulary(["b0", "b1"])
        with pytest.raises(ValueError, match="unknown behavior 'anything'"):
            schemas.NextBehaviorRequest.model_validate(request)
    finally:
        schemas.use_vocabulary(None)
    assert schemas.truncation_message(5, 5) is None
    assert schemas.truncation_message(80, 64) == (
        "history had 80 events; used the most recent 64 (model context)"
    )


def test_service_imports_no_training_code():
    code = (
        "import sys, serving.service, behave.inference.behavegpt, behave.tracking\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')"
        " or m.startswith(('behave.tasks', 'behave.data.user_events_datamodule'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# ---- the service on a registered champion ------------------------------------------------------
@pytest.mark.slow
def test_start_up_loads_the_champion(server, registry):
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert "bentoml_service_request" in httpx.get(f"{server.url}/metrics").text
    version = registry["EXPECTED_VERSION"]
    assert f"behave.behavegpt@champion (version {version}) on cpu" in server.log()


@pytest.mark.slow
def test_next_behavior(server, registry, tiny_model):
    response = post(
        server.url, "/next_behavior", {"requests": [{"history": history(3), "top_k": 5}]}
    )
    assert response.status_code == 200, response.text
    [result] = response.json()
    assert len(result["behaviors"]) == len(result["probabilities"]) == 5
    assert set(result["behaviors"]) <= set(tiny_model.behaviors)
    probabilities = result["probabilities"]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    assert result["events_used"] == 3 and result["truncated"] is False
    assert result["truncated_events"] == 0 and result["message"] is None
    assert result["model_version"] == registry["EXPECTED_VERSION"]


@pytest.mark.slow
def test_several_requests_in_one_call_keep_their_order_and_top_k(server):
    requests = [{"history": history(2, start=i), "top_k": k} for i, k in enumerate((1, 7, 3))]
    response = post(server.url, "/next_behavior", {"requests": requests})
    assert response.status_code == 200, response.text
    assert [len(r["behaviors"]) for r in response.json()] == [1, 7, 3]
    # the same history alone gives the same answer as in the group (padding does not leak)
    alone = post(server.url, "/next_behavior", {"requests": [requests[1]]}).json()[0]
    assert alone["behaviors"] == response.json()[1]["behaviors"]


@pytest.mark.slow
def test_long_history_is_truncated_to_the_context(server):
    events = history(80)
    response = post(server.url, "/next_behavior", {"requests": [{"history": events}]})
    assert response.status_code == 200, response.text
    [result] = response.json()
    assert result["events_used"] == CONTEXT_LENGTH
    assert result["truncated"] is True and result["truncated_events"] == 80 - CONTEXT_LENGTH
    assert result["message"] == (
        f"history had 80 events; used the most recent {CONTEXT_LENGTH} (model context)"
    )
    recent = post(
        server.url, "/next_behavior", {"requests": [{"history": events[-CONTEXT_LENGTH:]}]}
    )
    assert recent.json()[0]["behaviors"] == result["behaviors"]


def _batch_metrics(url: str) -> tuple[float, float]:
    """(batches, items) the adaptive batcher has run for /next_behavior so far."""
    text = httpx.get(f"{url}/metrics").text
    values = []
    for kind in ("count", "sum"):
        match = re.search(
            rf'adaptive_batch_size_{kind}\{{[^}}]*method_name="next_behavior"[^}}]*\}} (\S+)', text
        )
        values.append(float(match.group(1)) if match else 0.0)
    return values[0], values[1]


def _burst(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Sends the bodies to /next_behavior at the same moment, one thread each."""
    barrier = threading.Barrier(len(bodies))
    responses: list[httpx.Response | None] = [None] * len(bodies)

    def send(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            responses[i] = client.post(f"{url}/next_behavior", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return responses


@pytest.mark.slow
def test_concurrent_requests_are_batched(server):
    bodies = [{"requests": [{"history": history(5, start=i), "top_k": 3}]} for i in range(16)]
    for _ in range(3):  # on a busy machine a burst may trickle in; it groups within a few
        before = _batch_metrics(server.url)
        responses = _burst(server.url, bodies)
        batches, items = (a - b for a, b in zip(_batch_metrics(server.url), before, strict=True))
        assert [r.status_code for r in responses] == [200] * 16
        assert items == 16
        for body, response in zip(bodies, responses, strict=True):  # each got its own answer
            alone = post(server.url, "/next_behavior", body).json()
            assert response.json()[0]["behaviors"] == alone[0]["behaviors"]
        print(f"16 concurrent requests ran in {batches:.0f} batches")
        if batches < 16:
            return
    pytest.fail("16 concurrent requests were never grouped into fewer batches")


@pytest.mark.slow
def test_a_bad_request_does_not_fail_its_batch_neighbours(server):
    good = {"requests": [{"history": history(4), "top_k": 2}]}
    bad = {"requests": [{"history": [{"behavior": "no_such_behavior"}]}]}
    responses = _burst(server.url, [good, bad] * 6)
    assert [r.status_code for r in responses] == [200, 400] * 6


@pytest.mark.slow
def test_generate_is_deterministic_for_a_seed(server, tiny_model):
    body = {"history": history(4), "num_steps": 12, "temperature": 1.5, "top_k": 10, "seed": 7}
    first = post(server.url, "/generate", body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert len(result["behaviors"]) == 12 and set(result["behaviors"]) <= set(tiny_model.behaviors)
    assert result["seed"] == 7 and result["events_used"] == 4 and result["truncated"] is False
    assert post(server.url, "/generate", body).json()["behaviors"] == result["behaviors"]
    # without a seed the service picks one and returns it, so the sample can be repeated
    unseeded = post(server.url, "/generate", {**body, "seed": None}).json()
    repeat = post(server.url, "/generate", {**body, "seed": unseeded["seed"]}).json()
    assert repeat["behaviors"] == unseeded["behaviors"]


@pytest.mark.slow
def test_generate_truncates_long_histories(server):
    result = post(server.url, "/generate", {"history": history(20), "num_steps": 3}).json()
    assert (
        result["events_used"] == CONTEXT_LENGTH
        and result["truncated_events"] == 20 - CONTEXT_LENGTH
    )
    assert result["message"].startswith("history had 20 events")


@pytest.mark.slow
def test_unknown_behavior_names_the_field(server):
    events = [*history(2), {"behavior": "teleport"}]
    response = post(server.url, "/next_behavior", {"requests": [{"history": events}]})
    assert error_locs(response) == [["requests", 0, "history", 2, "behavior"]]
    detail = response.json()["detail"][0]
    assert detail["type"] == "unknown_behavior" and "'teleport'" in detail["msg"]
    assert "GET /behaviors" in detail["msg"]
    response = post(server.url, "/generate", {"history": [{"behavior": "teleport"}]})
    assert error_locs(response) == [["history", 0, "behavior"]]


ONE = [{"behavior": "b1"}]
BAD_NEXT_BEHAVIOR = {
    "empty history": ({"requests": [{"history": []}]}, ["requests", 0, "history"]),
    "history not a list": ({"requests": [{"history": "b1 b2"}]}, ["requests", 0, "history"]),
    "behavior not a string": ({"requests": [{"history": [{"behavior": 3}]}]}, ["requests", 0, "history", 0, "behavior"]),
    "bad timestamp": ({"requests": [{"history": [{"behavior": "b1", "timestamp": "noon"}]}]}, ["requests", 0, "history", 0, "timestamp"]),
    "top_k not an int": ({"requests": [{"history": ONE, "top_k": "ten"}]}, ["requests", 0, "top_k"]),
    "top_k = 0": ({"requests": [{"history": ONE, "top_k": 0}]}, ["requests", 0, "top_k"]),
    "top_k > 100": ({"requests": [{"history": ONE, "top_k": 101}]}, ["requests", 0, "top_k"]),
    "misspelt field": ({"requests": [{"history": ONE, "topk": 3}]}, ["requests", 0, "topk"]),
    "oversize history": ({"requests": [{"history": ONE * 10_001}]}, ["requests", 0, "history"]),
    "no requests": ({"requests": []}, ["requests"]),
    "bare request": ({"history": ONE}, []),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_NEXT_BEHAVIOR)
def test_bad_next_behavior_requests_are_400(server, case):
    body, loc = BAD_NEXT_BEHAVIOR[case]
    assert loc in error_locs(post(server.url, "/next_behavior", body))


BAD_GENERATE = {
    "temperature NaN": ('{"history": [{"behavior": "b1"}], "temperature": NaN}', ["temperature"]),
    "temperature Infinity": ('{"history": [{"behavior": "b1"}], "temperature": Infinity}', ["temperature"]),
    "temperature 0": ({"history": ONE, "temperature": 0}, ["temperature"]),
    "temperature > 5": ({"history": ONE, "temperature": 5.5}, ["temperature"]),
    "num_steps 0": ({"history": ONE, "num_steps": 0}, ["num_steps"]),
    "num_steps > 256": ({"history": ONE, "num_steps": 257}, ["num_steps"]),
    "top_k > vocabulary": ({"history": ONE, "top_k": 100}, ["top_k"]),  # the model knows 18
    "seed not an int": ({"history": ONE, "seed": "abc"}, ["seed"]),
    "empty history": ({"history": []}, ["history"]),
    "not JSON": ('{"history": [', []),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_GENERATE)
def test_bad_generate_requests_are_400(server, case):
    body, loc = BAD_GENERATE[case]
    if isinstance(body, str):
        response = httpx.post(
            f"{server.url}/generate", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = post(server.url, "/generate", body)
    assert loc in error_locs(response)


@pytest.mark.slow
def test_client_errors_are_logged_as_one_line(server):
    post(server.url, "/next_behavior", {"requests": [{"history": [{"behavior": "log_me"}]}]})
    log = server.log()
    assert (
        "rejected POST /next_behavior (400): requests.0.history.0.behavior: unknown behavior 'log_me'"
        in log
    )
    assert "Traceback" not in log


@pytest.mark.slow
def test_behaviors_lists_the_vocabulary(server, registry, tiny_model):
    response = httpx.get(f"{server.url}/behaviors")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["behaviors"] == tiny_model.behaviors
    assert body["locations"] == ["<unk>", "home", "work"] and body["domains"] == [
        "<unk>",
        "apps",
        "web",
    ]
    assert body["context_length"] == tiny_model.context_length == CONTEXT_LENGTH
    assert body["max_history_events"] == schemas.MAX_HISTORY_EVENTS
    assert body["model_version"] == registry["EXPECTED_VERSION"]


@pytest.mark.slow
def test_openapi_spec_and_swagger_ui(server):
    spec = httpx.get(f"{server.url}/docs.json").json()
    assert {"/next_behavior", "/generate", "/behaviors", "/readyz"} <= set(spec["paths"])
    assert "post" in spec["paths"]["/next_behavior"] and "get" in spec["paths"]["/behaviors"]
    assert httpx.get(f"{server.url}/").status_code == 200
    assert json.dumps(spec).count("top_k") >= 2


# ---- the service on an empty registry ------------------------------------------------------------
@pytest.mark.slow
def test_without_a_champion_model_routes_answer_503(empty_server):
    hint = "train one with `behave fit --config pipelines/behavegpt.yaml`"
    for response in (
        post(empty_server.url, "/next_behavior", {"requests": [{"history": ONE}]}),
        post(empty_server.url, "/generate", {"history": ONE}),
        httpx.get(f"{empty_server.url}/behaviors"),
    ):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (
            error.startswith("no model behave.behavegpt@champion in sqlite:///") and hint in error
        )
    for health in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert httpx.get(f"{empty_server.url}{health}").status_code == 200
    assert "BehaveGPT routes answer 503: no model behave.behavegpt@champion" in empty_server.log()
