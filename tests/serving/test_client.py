"""``behave.client`` (BehaveClient, AsyncBehaveClient): without a server, that it stays light,
that its answer types equal the service's schemas and how each error status maps (httpx's
MockTransport); then every route over real HTTP, through the sync and the async client alike, on
the session's servers (conftest.py: ``server`` serves BehaveGPT, its probe and the explainable
classifier; ``act_server`` Decision Mamba, the Graph-LSTM and Neuroformer)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import numpy as np
import pytest

from behave import client as bc
from behave.client import (
    Action,
    AsyncBehaveClient,
    BadRequest,
    BehaveAPIError,
    BehaveClient,
    Conflict,
    Event,
    NotFound,
    ServiceUnavailable,
    SpikeEvent,
)
from tests.serving.conftest import (
    FORECAST_OBSERVE,
    NEURAL_NEURONS,
    NEURAL_STIMULUS,
    POLICY_ACT_DIM,
    POLICY_STATE_DIM,
    POLICY_TARGET_RETURN,
    PROBE_NAME,
    REPO_ROOT,
    SERIES_CHANNELS,
    SERIES_CLASSES,
    SERIES_LEN,
)

MODES = ["sync", "async"]


# ---- without a server ----------------------------------------------------------------------
def test_importing_the_client_imports_no_framework():
    code = (
        "import sys, behave.client\n"
        "heavy = ('torch', 'bentoml', 'lightning', 'pytorch_lightning', 'mlflow', 'pydantic',"
        " 'numpy', 'serving')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_answer_types_have_the_fields_of_the_service_schemas():
    from serving import explain_schemas, neural_schemas, probe_schemas, schemas
    from serving import trajectory_schemas as ts

    pairs = {
        bc.NextBehavior: schemas.NextBehaviorResponse,
        bc.Generated: schemas.GenerateResponse,
        bc.Behaviors: schemas.BehaviorsResponse,
        bc.Action: schemas.ActResponse,
        bc.SessionsInfo: schemas.SessionsInfo,
        bc.BatchingInfo: schemas.BatchingInfo,
        bc.PolicyInfo: schemas.PolicyResponse,
        bc.AgentForecast: ts.AgentForecast,
        bc.SceneForecast: ts.SceneForecast,
        bc.ForecasterInfo: ts.ForecasterInfo,
        bc.SpikeEvent: neural_schemas.SpikeEvent,
        bc.DecodedWindow: neural_schemas.DecodedWindow,
        bc.Decoded: neural_schemas.DecodeResponse,
        bc.GeneratedSpikes: neural_schemas.GenerateResponse,
        bc.Connectivity: neural_schemas.ConnectivityResponse,
        bc.Explanation: explain_schemas.Explanation,
        bc.ExplainResult: explain_schemas.ExplainResponse,
        bc.Landmark: explain_schemas.LandmarkInfo,
        bc.Landmarks: explain_schemas.LandmarksResponse,
        bc.ProbeResult: probe_schemas.ProbeResponse,
        bc.ProbeInfo: probe_schemas.ProbeInfo,
        bc.Event: schemas.Event,
    }
    for ours, theirs in pairs.items():
        fields = {f.name for f in dataclasses.fields(ours)}
        assert fields == set(theirs.model_fields), (ours.__name__, theirs.__name__)
        # a field the service may leave out has a default here too
        for f in dataclasses.fields(ours):
            if not theirs.model_fields[f.name].is_required():
                assert f.default is not dataclasses.MISSING or f.default_factory is not None, (
                    f"{ours.__name__}.{f.name}"
                )


def test_both_clients_have_every_route_with_the_builders_signature():
    assert len(bc.ROUTE_METHODS) == 21
    for name in bc.ROUTE_METHODS:
        build = getattr(bc._Routes, name)
        sync, asynchronous = getattr(BehaveClient, name), getattr(AsyncBehaveClient, name)
        assert inspect.iscoroutinefunction(asynchronous) and not inspect.iscoroutinefunction(sync)
        for method in (sync, asynchronous):
            params = list(inspect.signature(method).parameters)
            assert params == ["self", *inspect.signature(build).parameters], name
            assert method.__doc__ == build.__doc__ and method.__name__ == name


ERRORS = {  # status -> (body the service sends, class, message, field)
    400: ({"error": "1 validation error for Input",
           "detail": [{"type": "unknown_behavior", "loc": ["history", 1, "behavior"],
                       "msg": "unknown behavior 'x'; GET /behaviors lists the known ones"}]},
          bc.BadRequest, "1 validation error for Input", "history.1.behavior"),
    401: ({"error": "missing or wrong bearer token: send 'Authorization: Bearer <token>' with "
                    "the token the service was started with (BEHAVE_API_TOKEN)"},
          bc.Unauthorized, "missing or wrong bearer token", None),
    404: ({"error": "unknown episode_id 'e1'",
           "detail": [{"type": "unknown_episode", "loc": ["episode_id"], "msg": "unknown"}]},
          bc.NotFound, "unknown episode_id 'e1'", "episode_id"),
    409: ({"error": "episode 'e1' is at step 2, not 1",
           "detail": [{"type": "step_mismatch", "loc": ["step"], "msg": "..."}]},
          bc.Conflict, "is at step 2, not 1", "step"),
    413: ({"error": "request body too large: 3000 bytes over the limit of 2000 bytes "
                    "(BEHAVE_MAX_BODY_BYTES); send fewer items per request"},
          bc.PayloadTooLarge, "BEHAVE_MAX_BODY_BYTES", None),
    429: ({"error": "Too many requests"}, bc.TooManyRequests, "Too many requests", None),
    503: ({"error": "no model behave.behavegpt@champion in sqlite:///x.db: train one with\n"
                    "`behave fit --config pipelines/behavegpt.yaml`"},
          bc.ServiceUnavailable, "train one with", None),
    504: ({"error": "Not able to process the request in 30 seconds"},
          bc.GatewayTimeout, "Not able to process the request", None),
    422: ([{"error": "BentoML answers some 4xx with a one-item list"}],
          bc.BehaveAPIError, "one-item list", None),
    502: ("<html><body>Bad gateway</body></html>\n<p>proxy</p>",
          bc.BehaveAPIError, "<html><body>Bad gateway", None),
}  # fmt: skip


def _mock(status: int, body) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", ERRORS)
def test_each_error_status_is_one_behave_api_error(status, mode):
    body, cls, words, field = ERRORS[status]
    if mode == "sync":
        with BehaveClient("http://behave.test", transport=_mock(status, body)) as client:
            with pytest.raises(BehaveAPIError) as err:
                client.probe(["b1", "x"])
    else:

        async def probe():
            async with AsyncBehaveClient(
                "http://behave.test", transport=_mock(status, body)
            ) as client:
                await client.probe(["b1", "x"])

        with pytest.raises(BehaveAPIError) as err:
            asyncio.run(probe())
    error = err.value
    assert type(error) is cls and error.status == status and error.route == "POST /probe"
    assert words in error.message and error.field == field
    text = str(error)
    assert text.startswith(f"POST /probe -> {status}: ") and "\n" not in text
    if status == 400:  # the generic message gives way to the field and what is wrong with it
        assert text.endswith(
            "history.1.behavior: unknown behavior 'x'; GET /behaviors lists the known ones"
        )
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls and str(again) == text


def test_the_token_is_sent_as_a_bearer_header(monkeypatch):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"probes": {}})

    monkeypatch.setenv("BEHAVE_API_TOKEN", "from-env")
    for token in (None, "given", ""):
        with BehaveClient(token=token, transport=httpx.MockTransport(answer)) as client:
            assert client.probe_models() == {}
    assert seen == ["Bearer from-env", "Bearer given", None]


def test_wait_ready_gives_up_after_its_timeout():
    transport = _mock(503, {"error": "Runners are not ready."})
    with BehaveClient("http://behave.test", transport=transport) as client:
        assert client.is_ready() is False
        with pytest.raises(TimeoutError, match="not ready after 0.3 s.*Runners are not ready"):
            client.wait_ready(timeout=0.3, interval=0.1)


# ---- over HTTP: every route, sync and async ---------------------------------------------------
@contextmanager
def calling(url: str, mode: str) -> Iterator[Callable]:
    """``call(name, *args, **kwargs)``: the client method ``name``, through the sync client or
    (mode "async") through the async one on an event loop of its own, so that one scenario
    checks both."""
    if mode == "sync":
        with BehaveClient(url, token="") as client:
            yield lambda name, *args, **kwargs: getattr(client, name)(*args, **kwargs)
        return
    loop = asyncio.new_event_loop()
    client = AsyncBehaveClient(url, token="")
    try:
        yield lambda name, *a, **kw: loop.run_until_complete(getattr(client, name)(*a, **kw))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


HISTORY = [
    Event("b1", datetime(2026, 1, 1, 9, 30), "home", "apps"),
    {"behavior": "b2", "timestamp": "2026-01-01T09:31:00", "user_id": 7},  # a raw log row
    "b3",
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_behavegpt_probe_and_explain_routes(server, registry, tiny_model, mode):
    version = registry["EXPECTED_VERSION"]
    with calling(server.url, mode) as call:
        assert call("is_ready") is True
        call("wait_ready", 5)

        vocab = call("behaviors")
        assert isinstance(vocab, bc.Behaviors) and vocab.behaviors == tiny_model.behaviors
        assert vocab.context_length == tiny_model.context_length and vocab.model_version == version

        top = call("next_behavior", HISTORY, top_k=3)
        assert isinstance(top, bc.NextBehavior) and len(top.behaviors) == 3
        assert top.probabilities == sorted(top.probabilities, reverse=True)
        assert (top.events_used, top.truncated, top.message) == (3, False, None)
        short, long = call("next_behavior_batch", [HISTORY, ["b0"] * 12], top_k=2)
        assert short.behaviors == top.behaviors[:2]
        assert long.truncated and long.truncated_events == 12 - tiny_model.context_length
        assert long.message.startswith("history had 12 events")

        generated = call("generate", HISTORY, num_steps=4, temperature=0.8, seed=7)
        assert isinstance(generated, bc.Generated) and len(generated.behaviors) == 4
        assert generated.seed == 7 and call("generate", HISTORY, num_steps=4, temperature=0.8,
                                            seed=7) == generated  # fmt: skip

        probes = call("probe_models")
        assert set(probes) == {PROBE_NAME} and isinstance(probes[PROBE_NAME], bc.ProbeInfo)
        assert probes[PROBE_NAME].reads_version == version and probes[PROBE_NAME].auroc == 0.9
        scored = call("probe", HISTORY)
        assert isinstance(scored, bc.ProbeResult) and scored.probe == PROBE_NAME
        assert scored.flagged == (scored.score >= scored.threshold)
        assert call("probe", HISTORY, probe=PROBE_NAME).score == pytest.approx(scored.score)

        models = call("explain_models")
        assert set(models) == {"toy", "behavegpt"}
        toy = models["toy"]
        assert isinstance(toy, bc.ExplainableModel) and "timex" in toy.methods
        assert (toy.seq_len, toy.channels, toy.classes) == (SERIES_LEN, SERIES_CHANNELS,
                                                            SERIES_CLASSES)  # fmt: skip
        series = np.random.default_rng(0).normal(size=(2, SERIES_LEN, SERIES_CHANNELS))
        timex = call("explain_series", series.astype(np.float32), "timex", model="toy")
        assert isinstance(timex, bc.ExplainResult) and timex.explainer_version == "1"
        assert len(timex.explanations) == 2
        for e in timex.explanations:
            assert isinstance(e, bc.Explanation) and e.prediction in SERIES_CLASSES
            assert len(e.attributions) == SERIES_LEN and len(e.attributions[0]) == SERIES_CHANNELS
            assert {v for row in e.mask for v in row} <= {0, 1} and 0 <= e.landmark < 3
        saliency = call("explain_series", series[:1], "saliency", target="dip", plot=True)
        assert saliency.explanations[0].target == "dip"
        assert saliency.explanations[0].png_base64.startswith("iVBOR")  # a PNG
        why = call("explain_history", HISTORY, "saliency")
        assert why.family == "behavegpt" and len(why.explanations[0].attributions) == 3
        assert why.features[0] == "behavior"
        landmarks = call("explain_landmarks", "toy")
        assert isinstance(landmarks, bc.Landmarks) and landmarks.explains_version == "1"
        assert [(m.landmark, m.count) for m in landmarks.landmarks] == [(0, 2), (1, 3), (2, 4)]
        assert call("explain_landmarks") == landmarks  # the only classifier

        with pytest.raises(BadRequest) as err:
            call("next_behavior", ["b1", "teleport"])
        assert err.value.status == 400 and err.value.field == "requests.0.history.1.behavior"
        assert str(err.value) == (
            "POST /next_behavior -> 400: requests.0.history.1.behavior: unknown behavior "
            "'teleport'; GET /behaviors lists the known ones"
        )
        with pytest.raises(BadRequest, match=r"probe: unknown probe 'behavegpt.nope'"):
            call("probe", HISTORY, probe="behavegpt.nope")
        with pytest.raises(NotFound, match="GET /explain/landmarks -> 404: .*valid choices: toy"):
            call("explain_landmarks", "nope")
        with pytest.raises(ServiceUnavailable) as err:  # this server has no policy
            call("policy")
        assert err.value.route == "GET /policy" and "decision_mamba" in err.value.message


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_policy_forecast_and_neural_routes(act_server, mode):
    S, A = POLICY_STATE_DIM, POLICY_ACT_DIM
    with calling(act_server.url, mode) as call:
        info = call("policy")
        assert isinstance(info, bc.PolicyInfo) and (info.state_dim, info.act_dim) == (S, A)
        assert isinstance(info.sessions, bc.SessionsInfo) and info.sessions.max_sessions == 16
        assert isinstance(info.batching, bc.BatchingInfo)
        assert info.target_return == POLICY_TARGET_RETURN and info.env_id == "Toy-v0"

        first = call("start_episode", np.zeros(S, np.float32))
        assert isinstance(first, Action) and first.episode_id and first.step == 0
        assert first.return_to_go == POLICY_TARGET_RETURN and len(first.action) == A
        try:
            second = call("step_episode", first.episode_id, [0.1] * S, np.float32(1.5), step=1)
            assert (second.episode_id, second.step) == (first.episode_id, 1)
            assert second.return_to_go == pytest.approx(POLICY_TARGET_RETURN - 1.5)
            with pytest.raises(Conflict, match="is at step 2, not 1"):  # a retried step
                call("step_episode", first.episode_id, [0.1] * S, 1.5, step=1)
        finally:
            assert call("end_episode", first.episode_id) is None
        with pytest.raises(NotFound, match=r"DELETE /act/.* -> 404: .*was deleted"):
            call("end_episode", first.episode_id)
        stateless = call("act_on_history", np.zeros((2, S)), [50.0, 49.0], [[0.0, 1.0]])
        assert stateless.episode_id is None and stateless.step == 1
        with pytest.raises(BadRequest) as err:
            call("start_episode", [0.0] * (S - 1))
        assert err.value.field == "observation" and f"has {S} values" in str(err.value)

        model = call("trajectory_model")
        assert isinstance(model, bc.ForecasterInfo) and model.observe_steps == FORECAST_OBSERVE
        track = np.stack([np.arange(FORECAST_OBSERVE) * 2.0, np.zeros(FORECAST_OBSERVE)], 1)
        scene = {"car-1": track, "car-0": (track + [30.0, 4.0]).tolist()}
        forecast = call("forecast", scene)
        assert isinstance(forecast, bc.SceneForecast) and forecast.model_version == "1"
        assert [a.agent_id for a in forecast.agents] == ["car-1", "car-0"]  # request order
        agent = forecast.agents[0]
        assert isinstance(agent, bc.AgentForecast) and len(agent.positions) == model.predict_steps
        assert set(agent.behavior_probabilities) == set(model.behaviors)
        both = call("forecast_batch", [scene, {"solo": track + 500.0}])
        assert [len(s.agents) for s in both] == [2, 1]

        times = np.linspace(0.0, 0.4, 40).round(4)
        spikes = [
            SpikeEvent(int(i % NEURAL_NEURONS), float(t)) if i % 3 == 0
            else (i % NEURAL_NEURONS, t) if i % 3 == 1
            else {"neuron": i % NEURAL_NEURONS, "time": float(t)}
            for i, t in enumerate(times)
        ]  # fmt: skip
        decoded = call("neural_decode", spikes, stimulus=np.full((40, NEURAL_STIMULUS), 0.5))
        assert isinstance(decoded, bc.Decoded) and decoded.behavior == "running_speed"
        assert [w.start_s for w in decoded.windows] == pytest.approx(
            [0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
        )
        assert isinstance(decoded.windows[0], bc.DecodedWindow)
        generated = call("neural_generate", spikes, duration_s=0.2, seed=7, top_k=5)
        assert isinstance(generated, bc.GeneratedSpikes)
        assert generated.start_s == pytest.approx(0.41) and generated.end_s == pytest.approx(0.61)
        assert all(isinstance(s, SpikeEvent) for s in generated.spikes)
        assert call("neural_generate", spikes, duration_s=0.2, seed=7, top_k=5) == generated
        connectivity = call("neural_connectivity", top=3)
        assert isinstance(connectivity, bc.Connectivity)
        assert connectivity.num_neurons == NEURAL_NEURONS and len(connectivity.top_edges) == 3
        assert connectivity.top_edges[0] == bc.Edge(source=3, target=7, weight=4.0)
        with pytest.raises(BadRequest, match="spikes must be sorted by time"):
            call("neural_decode", [(0, 0.2), (1, 0.1)])

        with pytest.raises(ServiceUnavailable) as err:  # no BehaveGPT here
            call("behaviors")
        assert err.value.status == 503 and "behave fit --config pipelines/behavegpt" in str(
            err.value
        )


@pytest.mark.slow
def test_the_async_client_sends_concurrent_requests(server):
    async def main():
        async with AsyncBehaveClient(server.url, token="") as client:
            await client.wait_ready(5)
            return await asyncio.gather(
                *(client.next_behavior([f"b{i}", f"b{i + 1}"], top_k=2) for i in range(8))
            )

    answers = asyncio.run(main())
    assert len(answers) == 8 and all(len(a.behaviors) == 2 for a in answers)
    with BehaveClient(server.url, token="") as client:  # each the same as alone
        assert client.next_behavior(["b3", "b4"], top_k=2).behaviors == answers[3].behaviors
