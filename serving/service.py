"""The behave HTTP service: each family's ``@champion`` behind BentoML 1.4.

Start it from the repository root with ``bentoml serve serving.service:BehaveService`` (what
``behave serve`` runs). At start-up it loads ``behave.behavegpt@champion``,
``behave.decision_mamba@champion`` and ``behave.graph_lstm@champion`` from the MLflow registry
(``MLFLOW_TRACKING_URI``, default ``./mlflow/mlflow.db``) — or local bundle folders named by
``BEHAVE_BEHAVEGPT_BUNDLE`` / ``BEHAVE_DECISION_MAMBA_BUNDLE`` / ``BEHAVE_GRAPH_LSTM_BUNDLE`` —
on CUDA when available. The families are independent: one without a champion answers 503 on its
routes, saying how to train one, while the others work; the health routes stay up.

Routes (Swagger UI at ``/``, OpenAPI spec at ``/docs.json``):

- ``POST /next_behavior`` ``{"requests": [{"history": [Event, ...], "top_k": 10}, ...]}`` ->
  one result per request. Adaptive batching: concurrent HTTP requests are grouped into one
  batched forward pass (each HTTP request may itself carry several histories).
- ``POST /generate`` ``{"history": [...], "num_steps": 20, "temperature": 1.0, "top_k": null,
  "seed": null}`` -> sampled future behaviors; the same seed gives the same output.
- ``GET /behaviors`` -> behavior, location and domain names the model knows.
- ``POST /act`` -> the offline-RL policy's next action ``{"action", "episode_id", "step",
  "return_to_go", "model_version"}``; the body's fields pick the mode (:class:`ActInput`):

  - stateless ``{"observations": [[...], ...], "returns_to_go": [...], "actions": [[...], ...]}``
    (T observations, T returns-to-go, T-1 actions) -> the action after that history;
  - session start ``{"observation": [...], "target_return": 200.0}`` (``target_return``
    optional) -> the first action and a new ``episode_id``; the server keeps the recurrent state;
  - session step ``{"episode_id": "...", "observation": [...], "reward": 1.5, "step": 1}``
    (``reward``: what the previous action earned; ``step`` optional, checked) -> next action.

  Concurrent session steps of different episodes share one model call (micro-batcher in
  :mod:`serving.sessions`: up to ``BEHAVE_ACT_MAX_BATCH_SIZE`` (64) episodes, a step waits
  ``BEHAVE_ACT_MAX_WAIT_MS`` (2) for others to join). Unknown or expired ``episode_id``: 404; a
  second step of one episode while its first is in flight, or a ``step`` that is not the next:
  409; more than ``BEHAVE_MAX_SESSIONS`` (1024) live episodes: 429. Episodes idle for
  ``BEHAVE_SESSION_TTL_S`` (600) seconds are forgotten. Sessions live in this worker process
  (``workers=1``); with replicas, route each ``episode_id`` to one of them.
- ``DELETE /act/{episode_id}`` -> 204; ends a session (404 if it is not live).
- ``GET /policy`` -> what the policy expects (state_dim, act_dim, action bounds, default target
  return), live sessions and batching counters.
- ``POST /trajectory/forecast`` ``{"scenes": [{"agents": [{"agent_id", "track": [[x, y], ...]}]}]}``
  -> per scene, each agent's predicted positions (metres, at the model's rate), their 2-D normal
  uncertainty and its behavior with probabilities (Graph-LSTM, ``behave.graph_lstm@champion``
  or ``BEHAVE_GRAPH_LSTM_BUNDLE``). Adaptive batching across scenes of concurrent calls.
- ``GET /trajectory/model`` -> track length, frame rate, horizon and behaviors it expects.
- ``POST /neural/decode`` ``{"spikes": [{"neuron": 3, "time": 0.012}, ...], "stimulus": null}``
  -> the decoded behavior of each 50 ms window after the first 150 ms (Neuroformer,
  ``behave.neuroformer@champion`` or ``BEHAVE_NEUROFORMER_BUNDLE``).
- ``POST /neural/generate`` ``{"spikes": [...], "duration_s": 0.5, "seed": 0, "temperature": 1,
  "top_k": null, "top_p": null}`` -> spike events generated after the context; same seed, same
  spikes.
- ``GET /neural/connectivity`` -> the champion's inferred adjacency (its coupling readout's
  attention from source to target neurons) and its strongest edges.
- ``POST /explain`` ``{"family": "tsclassifier", "model": "freqshapes", "method": "timex",
  "inputs": [[[x], ...]], "target": null, "plot": false}`` -> attributions (T x D per series),
  the prediction they explain, TimeX's binary mask and nearest landmark, optional PNG heatmaps;
  ``family: behavegpt`` with a ``history`` explains the next behavior per event and field with a
  Captum method. Every ``behave.tsclassifier.<dataset>@champion`` is loaded, with
  ``behave.timex.<dataset>@champion`` when it explains that version (or local bundles named by
  ``BEHAVE_TSCLASSIFIER_BUNDLE`` / ``BEHAVE_TIMEX_BUNDLE``).
- ``POST /probe`` ``{"probe": "behavegpt.risky", "history": [Event, ...]}`` -> the behavior
  probe's score that the next event is in its family, and whether it is flagged; every
  ``behave.probe.<model>.<behavior>@champion`` (made by ``behave surgery``) is loaded, or the
  local bundle named by ``BEHAVE_PROBE_BUNDLE``. ``GET /probe/models`` lists them.
- ``GET /explain/models`` -> what can be explained, with which methods (and why not timex);
  ``GET /explain/landmarks?model=freqshapes`` -> the TimeX landmarks and the explanations
  grouped under each.
- ``/livez``, ``/readyz``, ``/metrics`` from BentoML (plus ``behave_act_batch_size``).

Bad input is rejected while BentoML parses the request (see :mod:`serving.schemas`): HTTP 400
with ``{"error": ..., "detail": [{"type", "loc", "msg"}, ...]}``, ``loc`` naming the field
(e.g. ``["observations", 3]`` for a wrong-sized or non-finite observation). 404/409 answers use
the same shape. Overload answers 429 (``max_concurrency``), a request past ``timeout`` 504.

No training code is imported here: only :mod:`behave.inference` and :mod:`behave.tracking`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import bentoml
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from behave.device import resolve_device, service_resources
from serving import explain_schemas, neural_schemas, probe_schemas, schemas, trajectory_schemas
from serving.explain_schemas import (
    ExplainInput,
    ExplainModelsResponse,
    ExplainResponse,
    LandmarksResponse,
)
from serving.guards import RequestGuard
from serving.neural_schemas import (
    ConnectivityResponse,
    DecodeInput,
    DecodeResponse,
    GenerateInput,
    SpikeEvent,
)
from serving.neural_schemas import GenerateResponse as SpikesGenerateResponse
from serving.probe_schemas import ProbeInput, ProbeModelsResponse, ProbeResponse
from serving.schemas import (
    MAX_ACT_HISTORY_STEPS,
    MAX_GENERATE_STEPS,
    MAX_HISTORY_EVENTS,
    MAX_REQUESTS_PER_CALL,
    MAX_TEMPERATURE,
    ActInput,
    ActResponse,
    BatchingInfo,
    BehaviorsResponse,
    ErrorResponse,
    GenerateResponse,
    GenerateTopK,
    History,
    NextBehaviorInput,
    NextBehaviorRequest,
    NextBehaviorResponse,
    PolicyResponse,
    SessionsInfo,
)
from serving.sessions import SessionError, SessionStore
from serving.trajectory_schemas import (
    MAX_SCENES_PER_CALL,
    ForecasterInfo,
    ForecastInput,
    Scene,
    SceneForecast,
)

__all__ = ["BehaveService"]

log = logging.getLogger("behave.serving")

FAMILY = "behavegpt"
ALIAS = "champion"
BUNDLE_ENV = "BEHAVE_BEHAVEGPT_BUNDLE"
# Largest adaptive batch of /next_behavior requests. 1 turns adaptive batching off: each HTTP
# call is then handled alone (same request body), the baseline of benchmarks/serving.py.
MAX_BATCH_SIZE = int(os.environ.get("BEHAVE_MAX_BATCH_SIZE", MAX_REQUESTS_PER_CALL))
ADAPTIVE_BATCHING = MAX_BATCH_SIZE > 1  # BentoML requires max_batch_size > 1 when batching

FORECAST_FAMILY = "graph_lstm"
FORECAST_BUNDLE_ENV = "BEHAVE_GRAPH_LSTM_BUNDLE"
POLICY_FAMILY = "decision_mamba"
POLICY_BUNDLE_ENV = "BEHAVE_DECISION_MAMBA_BUNDLE"
NEURAL_FAMILY = "neuroformer"
NEURAL_BUNDLE_ENV = "BEHAVE_NEUROFORMER_BUNDLE"
# POST /act sessions, read at start-up: idle lifetime, how many at once, batching of their steps
SESSION_ENV = {
    "ttl_s": ("BEHAVE_SESSION_TTL_S", 600.0),
    "max_sessions": ("BEHAVE_MAX_SESSIONS", 1024),
    "max_batch_size": ("BEHAVE_ACT_MAX_BATCH_SIZE", 64),
    "max_wait_s": ("BEHAVE_ACT_MAX_WAIT_MS", 2.0),  # milliseconds in the environment
}

# Plain HTTP routes BentoML's @bentoml.api (always POST) cannot express; BentoML mounts this
# app and merges its routes into /docs.json. Its own docs pages are off: BentoML serves them.
http_routes = FastAPI(title="behave", docs_url=None, redoc_url=None, openapi_url=None)


@http_routes.exception_handler(StarletteHTTPException)
async def _http_error(request, err: StarletteHTTPException) -> JSONResponse:
    """Unknown paths and methods answer JSON too (Starlette's default is plain text)."""
    message = (
        err.detail if err.status_code != 404 else f"no route {request.url.path!r}: see /docs.json"
    )
    return JSONResponse({"error": str(message)}, status_code=err.status_code, headers=err.headers)


@http_routes.exception_handler(RequestValidationError)
async def _query_error(request, err: RequestValidationError) -> JSONResponse:
    """A bad query parameter on these routes: 400 with the body every other route gives
    (FastAPI's default is a 422 without an ``error`` message)."""
    details = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")}
        for e in err.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"] if part != "query") or "request"
    return JSONResponse({"error": f"{where}: {first['msg']}", "detail": details}, status_code=400)


@bentoml.asgi_app(http_routes, path="/")
@bentoml.service(
    name="behave",
    # {"gpu": 1} where the service will run on CUDA, else {"cpu": "1"}: one choice, made by
    # behave.device (BEHAVE_DEVICE=auto|cpu|cuda|cuda:N), so the same service runs everywhere
    # (BentoML refuses to start a service that declares a GPU the machine lacks).
    resources=service_resources(),
    workers=1,
    traffic={
        "timeout": 30,  # seconds; a request still running then gets 504
        "max_concurrency": 64,  # requests in flight at once; beyond that 429
    },
)
class BehaveService:
    def __init__(self) -> None:
        import torch

        _one_line_client_errors()
        if log.getEffectiveLevel() > logging.INFO:  # BentoML leaves non-bentoml loggers at WARNING
            log.setLevel(logging.INFO)
        device = str(resolve_device())  # a bad BEHAVE_DEVICE stops start-up with its reason
        log.info("models load on %s (torch %s)", device, torch.__version__)
        # a family whose registered artifact is missing or corrupt is refused with a log line
        # and answers 503 saying why; the other families still load and serve
        for name, load, model_attr, reason_attr in (
            ("BehaveGPT", self._load_behavegpt, "predictor", "unavailable"),
            ("Decision Mamba", self._load_policy, "sessions", "policy_unavailable"),
            ("Graph-LSTM", self._load_forecaster, "forecaster", "forecaster_unavailable"),
            ("Neuroformer", self._load_neuroformer, "neuroformer", "neuroformer_unavailable"),
        ):
            try:
                load(device)
            except Exception as err:  # noqa: BLE001 - whatever broke, keep the others serving
                reason = f"{name} model could not be loaded ({type(err).__name__}: {err})"
                log.error("%s refused at load; its routes answer 503: %s", name, reason)
                setattr(self, model_attr, None)
                setattr(self, reason_attr, reason)
        self._load_explainers(device)
        self._load_probes(device)

    def _load_behavegpt(self, device: str) -> None:
        self.predictor = None
        self.model_version = ""
        self.unavailable: str | None = None
        try:
            path, self.model_version, source = _champion(FAMILY, BUNDLE_ENV)
        except LookupError as err:  # its message names the pipeline that trains one
            self.unavailable = str(err)
            log.warning("BehaveGPT routes answer 503: %s", err)
            return
        from behave.inference.behavegpt import BehaveGPTPredictor

        self.predictor = BehaveGPTPredictor.from_dir(path, device)
        schemas.use_vocabulary(self.predictor.vocab.behaviors[2:])
        log.info(
            "BehaveGPT %s on %s: %d behaviors, context %d events",
            source,
            device,
            len(self.predictor.vocab.behaviors) - 2,
            self.predictor.context_length,
        )

    def _load_policy(self, device: str) -> None:
        """``behave.decision_mamba@champion`` (or a local bundle) and its session store."""
        self.policy = None
        self.sessions: SessionStore | None = None
        self.policy_version = ""
        self.policy_unavailable: str | None = None
        schemas.use_policy(None)
        try:
            path, self.policy_version, source = _champion(POLICY_FAMILY, POLICY_BUNDLE_ENV)
        except LookupError as err:
            self.policy_unavailable = str(err)
            log.warning("Decision Mamba routes answer 503: %s", self.policy_unavailable)
            return
        from behave.inference.offline_rl import load_policy

        policy = load_policy(path, device)
        settings = {
            key: type(default)(os.environ.get(env, default))
            for key, (env, default) in SESSION_ENV.items()
        }
        settings["max_wait_s"] /= 1000
        self.sessions = SessionStore(policy, on_batch=_act_batch_histogram(), **settings)
        # stateless requests may read long histories: their own thread, so they do not hold
        # up the session steps' batches
        self._history_thread = ThreadPoolExecutor(1, thread_name_prefix="behave-act-history")
        schemas.use_policy(policy.state_dim, policy.act_dim, self.sessions.default_target_return)
        self.policy = policy
        log.info(
            "Decision Mamba %s on %s: %s (%s), state_dim %d, act_dim %d, env %s; sessions: "
            "ttl %g s, at most %d, batches of <= %d",
            source,
            device,
            policy.architecture,
            policy.mode,
            policy.state_dim,
            policy.act_dim,
            policy.meta.get("env_id", "?"),
            self.sessions.ttl_s,
            self.sessions.max_sessions,
            self.sessions.max_batch_size,
        )

    def _load_forecaster(self, device: str) -> None:
        """``behave.graph_lstm@champion`` (or a local bundle)."""
        self.forecaster = None
        self.forecaster_version = ""
        self.forecaster_unavailable: str | None = None
        trajectory_schemas.use_forecaster(None)
        try:
            path, self.forecaster_version, source = _champion(FORECAST_FAMILY, FORECAST_BUNDLE_ENV)
        except LookupError as err:
            self.forecaster_unavailable = str(err)
            log.warning("Graph-LSTM routes answer 503: %s", self.forecaster_unavailable)
            return
        from behave.inference.graph_lstm import load_forecaster

        forecaster = load_forecaster(path, device)
        c = forecaster.config
        trajectory_schemas.use_forecaster(c.observe_steps, c.hz)
        self.forecaster = forecaster
        log.info(
            "Graph-LSTM %s on %s: observes %d, predicts %d frames at %g Hz, graph stream %s",
            source,
            device,
            c.observe_steps,
            c.predict_steps,
            c.hz,
            "on" if c.graph_stream else "off",
        )

    def _load_neuroformer(self, device: str) -> None:
        """``behave.neuroformer@champion`` (or a local bundle)."""
        self.neuroformer = None
        self.neuroformer_version = ""
        self.neuroformer_unavailable: str | None = None
        neural_schemas.use_neural_model(None)
        try:
            path, self.neuroformer_version, source = _champion(NEURAL_FAMILY, NEURAL_BUNDLE_ENV)
        except LookupError as err:
            self.neuroformer_unavailable = str(err)
            log.warning("Neuroformer routes answer 503: %s", self.neuroformer_unavailable)
            return
        from behave.inference.neuroformer import load_neuroformer

        runner = load_neuroformer(path, device)
        neural_schemas.use_neural_model(runner.num_neurons, runner.stimulus_channels)
        self.neuroformer = runner
        log.info(
            "Neuroformer %s on %s: %d neurons, %d stimulus channels, decodes %s",
            source,
            device,
            runner.num_neurons,
            runner.stimulus_channels,
            runner.meta.get("behavior"),
        )

    def _load_explainers(self, device: str) -> None:
        """Every ``behave.tsclassifier.<dataset>@champion`` (+ its TimeX) and BehaveGPT."""
        from serving.explainers import load_classifiers

        self.classifiers = load_classifiers(device)
        models = {name: item.entry() for name, item in self.classifiers.items()}
        if self.predictor is not None:
            models["behavegpt"] = explain_schemas.ExplainableModel(
                family="behavegpt", methods=explain_schemas.CAPTUM_METHODS
            )
        explain_schemas.use_explainable(models)
        if not self.classifiers:
            log.warning(
                "no time-series classifier to explain: train one with "
                "`behave fit --config pipelines/tsclassifier-freqshapes.yaml`"
            )

    def _load_probes(self, device: str) -> None:
        """Every ``behave.probe.*@champion``, each with the model weights it reads."""
        from serving.probes import load_probes

        self.probes = load_probes(device)
        probe_schemas.use_probes(self.probes)
        if not self.probes:
            log.warning(
                "no behavior probe: POST /probe answers 503 until `behave surgery` registers one"
            )

    @bentoml.on_shutdown
    def _close_sessions(self) -> None:
        if self.sessions is not None:
            self.sessions.close()
            self._history_thread.shutdown(wait=False, cancel_futures=True)

    # ---- routes --------------------------------------------------------------------------
    @bentoml.api(
        batchable=ADAPTIVE_BATCHING,
        input_spec=NextBehaviorInput,  # {"requests": [...]} (+ a hint for a bare request)
        # queued longer than max_latency_ms: 503 (the dispatcher's overload answer)
        **(
            {"max_batch_size": MAX_BATCH_SIZE, "max_latency_ms": 10_000}
            if ADAPTIVE_BATCHING
            else {}
        ),
    )
    def next_behavior(self, requests: list[NextBehaviorRequest]) -> list[NextBehaviorResponse]:
        """Most likely next behaviors, with probabilities, after each history.

        Send one or more requests per call; concurrent calls are batched together. Histories
        longer than the model's context are truncated to their most recent events.
        """
        from behave.inference.behavegpt import HistoryEvent

        predictor = self._require_model()
        log.debug("next_behavior: batch of %d", len(requests))
        # Requests were validated (vocabulary included) before they joined this batch.
        context = predictor.context_length
        histories = [
            [
                HistoryEvent(e.behavior, e.timestamp, e.location, e.domain)
                for e in r.history[-context:]
            ]
            for r in requests
        ]
        results = predictor.next_behavior(histories, top_k=max(r.top_k for r in requests))
        return [
            NextBehaviorResponse(
                behaviors=result["behaviors"][: request.top_k],
                probabilities=result["probabilities"][: request.top_k],
                **self._truncation(len(request.history), result["events_used"]),
            )
            for request, result in zip(requests, results, strict=True)
        ]

    @bentoml.api
    def generate(
        self,
        history: History,
        num_steps: int = Field(
            20, ge=1, le=MAX_GENERATE_STEPS, description="behaviors to generate"
        ),
        temperature: float = Field(
            # inclusive bounds only: BentoML's spec is OpenAPI 3.0 (boolean exclusive bounds)
            1.0,
            ge=0.01,
            le=MAX_TEMPERATURE,
            allow_inf_nan=False,
            description="softmax temperature",
        ),
        top_k: GenerateTopK = None,
        seed: int | None = Field(
            None, ge=0, le=2**63 - 1, description="sampling seed; null: a random one (returned)"
        ),
    ) -> GenerateResponse:
        """Samples the next ``num_steps`` behaviors after a history.

        Generated events keep the time, location and domain of the last observed event.
        """
        from behave.inference.behavegpt import HistoryEvent, InputError

        predictor = self._require_model()
        seed = secrets.randbits(31) if seed is None else seed
        recent = history[-predictor.context_length :]
        events = [HistoryEvent(e.behavior, e.timestamp, e.location, e.domain) for e in recent]
        try:
            result = predictor.generate(
                events, num_steps, temperature=temperature, top_k=top_k, seed=seed
            )
        except InputError as err:  # the schema checks the same things; kept as a safety net
            return _input_error_response(err)
        return GenerateResponse(
            behaviors=result["behaviors"],
            seed=seed,
            **self._truncation(len(history), result["events_used"]),
        )

    @http_routes.get(
        "/behaviors",
        response_model=BehaviorsResponse,
        responses={503: {"model": ErrorResponse, "description": "no model loaded"}},
        summary="Names the model knows",
    )
    def behaviors(self):
        """Behavior, location and domain names of the loaded model (to fix unknown-behavior errors)."""
        if self.predictor is None:
            return _unavailable_response(self.unavailable)
        vocab = self.predictor.vocab
        return BehaviorsResponse(
            behaviors=vocab.behaviors[2:],
            locations=vocab.locations,
            domains=vocab.domains,
            context_length=self.predictor.context_length,
            max_history_events=MAX_HISTORY_EVENTS,
            model_version=self.model_version,
        )

    @bentoml.api(input_spec=ActInput)  # the body's fields pick the mode: see ActInput
    async def act(self, **fields) -> ActResponse:
        """The policy's next action (offline RL, behave.decision_mamba), three ways.

        **Stateless**: `observations` (T x state_dim), `returns_to_go` (T), `actions`
        ((T-1) x act_dim) -> the action after that history; nothing is kept.
        **Session start**: `observation` [+ `target_return`] -> the first action and an
        `episode_id`; the server keeps the episode's recurrent state.
        **Session step**: `episode_id`, `observation`, `reward` (what the previous action
        earned) [+ `step`] -> the next action. Concurrent steps of different episodes share one
        model call. 404: unknown or expired episode; 409: a step of that episode is in flight,
        or `step` is not the next one; 429: too many live episodes. End an episode with
        `DELETE /act/{episode_id}`; GET /policy tells the sizes and the default target return.
        """
        request = ActInput.model_construct(**fields)  # validated while BentoML parsed it
        sessions = self._require_policy()
        try:
            if request.mode == "stateless":
                return await self._act_on_history(request)
            if request.mode == "start":
                result = await sessions.start(request.observation, request.target_return)
            else:
                result = await sessions.step(
                    request.episode_id, request.observation, request.reward, request.step
                )
        except SessionError as err:
            return _session_error_response(err, "POST /act")
        return ActResponse(
            action=result.action,
            episode_id=result.episode_id,
            step=result.step,
            return_to_go=result.return_to_go,
            model_version=self.policy_version,
        )

    async def _act_on_history(self, request: ActInput) -> ActResponse | JSONResponse:
        import numpy as np

        policy = self.policy
        returns_to_go = np.asarray(request.returns_to_go, np.float32)  # (T,)
        observations = np.asarray(request.observations, np.float32)  # (T, S)
        actions = np.asarray(request.actions or [], np.float32).reshape(-1, policy.act_dim)
        action = await asyncio.get_running_loop().run_in_executor(
            self._history_thread, policy.act_on_history, returns_to_go, observations, actions
        )
        if not np.isfinite(action).all():
            return _session_error_response(
                SessionError(
                    "the model's action is not finite: the history is far outside the range "
                    "it was trained on",
                    ("observations",),
                ),
                "POST /act",
            )
        return ActResponse(
            action=action.tolist(),
            step=len(observations) - 1,
            return_to_go=float(returns_to_go[-1]),
            model_version=self.policy_version,
        )

    @http_routes.delete(
        "/act/{episode_id}",
        status_code=204,
        responses={
            404: {"model": ErrorResponse, "description": "no such live episode"},
            503: {"model": ErrorResponse, "description": "no policy loaded"},
        },
        summary="End a POST /act session",
    )
    async def end_episode(self, episode_id: str):  # async: the session store lives on the loop
        """Forgets the episode's state; its episode_id answers 404 afterwards."""
        if self.sessions is None:
            return _unavailable_response(self.policy_unavailable)
        try:
            self.sessions.delete(episode_id)
        except SessionError as err:
            return _session_error_response(err, "DELETE /act/{episode_id}")
        return Response(status_code=204)

    @http_routes.get(
        "/policy",
        response_model=PolicyResponse,
        responses={503: {"model": ErrorResponse, "description": "no policy loaded"}},
        summary="What POST /act expects",
    )
    async def policy_info(self):
        """Sizes, action bounds and default target return of the loaded policy; live sessions
        and batching counters of POST /act."""
        if self.sessions is None:
            return _unavailable_response(self.policy_unavailable)
        policy, sessions = self.policy, self.sessions
        meta = policy.meta
        return PolicyResponse(
            architecture=policy.architecture,
            mode=policy.mode,
            state_dim=policy.state_dim,
            act_dim=policy.act_dim,
            action_low=list(policy.norm.action_low),
            action_high=list(policy.norm.action_high),
            target_return=sessions.default_target_return,
            reference_returns=meta.get("reference_returns"),
            env=meta.get("env"),
            env_id=meta.get("env_id"),
            env_kwargs=meta.get("env_kwargs") or {},
            max_history_steps=MAX_ACT_HISTORY_STEPS,
            sessions=SessionsInfo(
                live=sessions.live, max_sessions=sessions.max_sessions, ttl_s=sessions.ttl_s
            ),
            batching=BatchingInfo(
                **vars(sessions.stats),
                max_batch_size=sessions.max_batch_size,
                max_wait_ms=sessions.max_wait_s * 1000,
            ),
            model_version=self.policy_version,
        )

    @bentoml.api(
        route="/trajectory/forecast",
        batchable=True,
        input_spec=ForecastInput,  # {"scenes": [...]}
        max_batch_size=MAX_SCENES_PER_CALL,
        max_latency_ms=10_000,
    )
    def forecast_trajectories(self, scenes: list[Scene]) -> list[SceneForecast]:
        """Each agent's future positions (with uncertainty) and behavior, for each scene.

        A scene lists every agent's observed track (metres, oldest first, at the model's rate;
        see ``GET /trajectory/model``). Concurrent calls are batched into one forward pass.
        """
        forecaster = self._require_forecaster()
        results = forecaster.forecast(
            [[{"agent_id": a.agent_id, "track": a.track} for a in scene.agents] for scene in scenes]
        )
        return [
            SceneForecast(agents=agents, model_version=self.forecaster_version)
            for agents in results
        ]

    @http_routes.get(
        "/trajectory/model",
        response_model=ForecasterInfo,
        responses={503: {"model": ErrorResponse, "description": "no forecaster loaded"}},
        summary="What POST /trajectory/forecast expects",
    )
    def forecaster_info(self):
        """Track length, frame rate, horizon and behaviors of the loaded Graph-LSTM."""
        if self.forecaster is None:
            return _unavailable_response(self.forecaster_unavailable)
        f = self.forecaster
        return ForecasterInfo(
            observe_steps=f.config.observe_steps,
            predict_steps=f.config.predict_steps,
            hz=f.config.hz,
            behaviors=f.behaviors,
            behavior_rule=f.meta.get("behavior_rule", {}),
            model_version=self.forecaster_version,
        )

    @bentoml.api(route="/neural/decode", input_spec=DecodeInput)
    def neural_decode(self, **fields) -> DecodeResponse:
        """The behavior decoded from a recording's spikes, one value per 50 ms window after
        the first previous window (150 ms). Stimulus rows (one per 10 ms bin from time 0) are
        optional."""
        from behave.inference.neuroformer import InputError

        request = DecodeInput(**fields)
        runner = self._require_neuroformer()
        try:
            result = runner.decode(
                [s.neuron for s in request.spikes],
                [s.time for s in request.spikes],
                request.stimulus,
            )
        except InputError as err:  # the schema checks the same things; kept as a safety net
            return _input_error_response(err)
        return DecodeResponse(**result, model_version=self.neuroformer_version)

    @bentoml.api(route="/neural/generate", input_spec=GenerateInput)
    def neural_generate(self, **fields) -> SpikesGenerateResponse:
        """Spikes generated autoregressively for ``duration_s`` after the context (its last
        150 ms are read). Sampling is seeded: the same request gives the same spikes."""
        from behave.inference.neuroformer import InputError

        request = GenerateInput(**fields)
        runner = self._require_neuroformer()
        try:
            result = runner.generate(
                [s.neuron for s in request.spikes],
                [s.time for s in request.spikes],
                duration_s=request.duration_s,
                stimulus=request.stimulus,
                seed=request.seed,
                temperature=request.temperature,
                top_k=request.top_k,
                top_p=request.top_p,
            )
        except InputError as err:
            return _input_error_response(err)
        return SpikesGenerateResponse(
            spikes=[SpikeEvent(**e) for e in result["spikes"]],
            start_s=result["start_s"],
            end_s=result["end_s"],
            model_version=self.neuroformer_version,
        )

    @http_routes.get(
        "/neural/connectivity",
        response_model=ConnectivityResponse,
        responses={503: {"model": ErrorResponse, "description": "no Neuroformer loaded"}},
        summary="The champion's inferred connectivity",
    )
    def neural_connectivity(self, top: int = 20):
        """Connection strength from source (row) to target (column) neurons, as the kept
        attention map scores it (by default the coupling readout's)."""
        if self.neuroformer is None:
            return _unavailable_response(self.neuroformer_unavailable)
        matrix = self.neuroformer.connectivity
        if matrix is None:
            return _unavailable_response(
                "this Neuroformer bundle has no connectivity; retrain it with "
                "`behave fit --config pipelines/neuroformer.yaml`"
            )
        import numpy as np

        shown = matrix.copy()
        np.fill_diagonal(shown, -np.inf)
        flat = np.argsort(-shown, axis=None)[: max(0, min(top, 1000))]
        n = matrix.shape[0]
        return ConnectivityResponse(
            num_neurons=n,
            matrix=np.round(matrix, 5).tolist(),
            top_edges=[
                {"source": int(i // n), "target": int(i % n), "weight": float(matrix.flat[i])}
                for i in flat
            ],
            model_version=self.neuroformer_version,
        )

    @bentoml.api(route="/explain", input_spec=ExplainInput)
    def explain(self, **fields) -> ExplainResponse:
        """Why the model predicted what it did: attributions over the input's time steps and
        features, the prediction they explain, and optionally a PNG heatmap (base64).

        `family` tsclassifier (with `model`, the classifier's dataset, and `inputs`, T x D per
        series) explains with `timex` (one forward pass of the registered TimeX explainer; also
        returns its binary mask and nearest landmark) or a Captum method; `family` behavegpt
        explains the next behavior after a `history` with a Captum method, per event and field.
        GET /explain/models lists what is loaded and its methods.
        """
        from behave.inference.behavegpt import InputError as HistoryError
        from behave.inference.timeseries import InputError as SeriesError
        from serving.explainers import explain_history, explain_series

        request = ExplainInput(**fields)
        try:
            if request.family == "behavegpt":
                if self.predictor is None:
                    return _unavailable_response(self.unavailable)
                result = explain_history(self.predictor, request)
                model, version = "behavegpt", self.model_version
            else:
                item = self.classifiers.get(request.model or "")
                if item is None:
                    return _unavailable_response(
                        "no time-series classifier is loaded: train one with "
                        "`behave fit --config pipelines/tsclassifier-freqshapes.yaml`"
                    )
                result = explain_series(item, request)
                model, version = request.model, item.version
        except (HistoryError, SeriesError) as err:  # the schema checks most of it first
            return _input_error_response(err)
        return ExplainResponse(
            family=request.family,
            model=model,
            method=request.method,
            model_version=version,
            **result,
        )

    @http_routes.get(
        "/explain/models",
        response_model=ExplainModelsResponse,
        summary="What /explain can explain, and with which methods",
    )
    def explain_models(self):
        """Per explainable model: family, methods, series shape, classes, and why a method
        (e.g. timex) is not available."""
        models = {}
        for name, entry in explain_schemas.explainable().items():
            item = self.classifiers.get(name)
            models[name] = {
                "family": entry.family,
                "methods": list(entry.methods),
                "seq_len": entry.seq_len,
                "channels": entry.channels,
                "classes": entry.class_names,
                "unavailable": entry.unavailable,
                "model_version": item.version if item else self.model_version,
                "explainer_version": item.timex_version if item else None,
            }
        return ExplainModelsResponse(models=models)

    @http_routes.get(
        "/explain/landmarks",
        response_model=LandmarksResponse,
        responses={
            404: {"model": ErrorResponse, "description": "unknown model"},
            503: {"model": ErrorResponse, "description": "no TimeX explainer for the model"},
        },
        summary="TimeX landmarks of a classifier's explanations",
    )
    def explain_landmarks(self, model: str | None = None):
        """The TimeX landmarks of a time-series classifier: each landmark's id, how many test
        explanations were nearest to it at training time, their classes and kept share. POST
        /explain with method timex names the nearest landmark of each new explanation, so
        explanations can be grouped by landmark."""
        if model is None and len(self.classifiers) == 1:
            model = next(iter(self.classifiers))
        item = self.classifiers.get(model or "")
        if item is None:
            valid = ", ".join(sorted(self.classifiers)) or "(none loaded)"
            return JSONResponse(
                {
                    "error": f"model: unknown {model!r}; valid choices: {valid}",
                    "detail": [
                        {
                            "type": "unknown_model",
                            "loc": ["query", "model"],
                            "msg": f"valid: {valid}",
                        }
                    ],
                },
                status_code=404,
            )
        if item.timex is None:
            return _unavailable_response(item.timex_unavailable)
        return LandmarksResponse(
            model=model,
            explainer_version=item.timex_version,
            explains_version=item.version,
            landmarks=item.timex.landmarks,
        )

    @bentoml.api(route="/probe", input_spec=ProbeInput)
    def probe(self, **fields) -> ProbeResponse:
        """How likely the *next* event after a history is to be in a behavior family (e.g.
        risky), by a linear probe on the hidden states of the model version it was trained on:
        flag an input before acting on it. GET /probe/models lists the loaded probes."""
        from behave.inference.behavegpt import HistoryEvent, InputError
        from behave.inference.probe import THRESHOLD

        request = ProbeInput(**fields)
        if not self.probes:
            return _unavailable_response(
                "no behavior probe is loaded: `behave surgery --model "
                "models:/behave.behavegpt@champion` trains and registers one"
            )
        name = request.probe or next(iter(self.probes))
        item = self.probes[name]
        history = [
            HistoryEvent(e.behavior, e.timestamp, e.location, e.domain) for e in request.history
        ]
        try:
            (result,) = item.predictor.score([history])
        except InputError as err:
            return _input_error_response(err)
        info = item.info()
        return ProbeResponse(
            probe=name,
            score=result["score"],
            flagged=result["flagged"],
            threshold=THRESHOLD,
            label=info["label"],
            events_used=result["events_used"],
            truncated=result["events_dropped"] > 0,
            probe_version=item.version,
            reads_version=info["reads_version"],
        )

    @http_routes.get(
        "/probe/models",
        response_model=ProbeModelsResponse,
        summary="The behavior probes POST /probe can use",
    )
    def probe_models(self):
        """Per loaded probe: what it detects, the layer it reads, its held-out AUROC, its
        version and the model version whose hidden states it reads."""
        return ProbeModelsResponse(probes={name: item.info() for name, item in self.probes.items()})

    # ---- helpers -------------------------------------------------------------------------
    def _require_neuroformer(self):
        if self.neuroformer is None:  # normally answered earlier by _ModelRequired
            raise bentoml.exceptions.ServiceUnavailable(
                self.neuroformer_unavailable or "no Neuroformer"
            )
        return self.neuroformer

    def _require_forecaster(self):
        if self.forecaster is None:  # normally answered earlier by _ModelRequired
            raise bentoml.exceptions.ServiceUnavailable(
                self.forecaster_unavailable or "no forecaster"
            )
        return self.forecaster

    def _require_policy(self) -> SessionStore:
        if self.sessions is None:  # normally answered earlier by _ModelRequired
            raise bentoml.exceptions.ServiceUnavailable(self.policy_unavailable or "no policy")
        return self.sessions

    def _require_model(self):
        if self.predictor is None:  # normally answered earlier by _ModelRequired
            raise bentoml.exceptions.ServiceUnavailable(self.unavailable or "no model loaded")
        return self.predictor

    def _truncation(self, total: int, used: int) -> dict:
        return {
            "events_used": used,
            "truncated": total > used,
            "truncated_events": total - used,
            "message": schemas.truncation_message(total, used),
            "model_version": self.model_version,
        }


class _ModelRequired:
    """ASGI middleware: while a family has no model, its routes answer 503 with the reason.

    BentoML turns exceptions of status >= 500 into a generic body, and a batchable route cannot
    return its own response, so the clear message is given here, before routing (and before the
    body is parsed against a model that is not there). ``paths`` maps each route to the
    service attributes holding its model and the reason it is missing.
    """

    def __init__(self, app, paths: dict[str, tuple[str, str]]) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            service = bentoml.get_current_service()
            model, reason = self.paths[scope["path"]]
            if getattr(service, model) is None:
                await _unavailable_response(getattr(service, reason))(scope, receive, send)
                return
        await self.app(scope, receive, send)


# which service attributes hold each API's model and the reason it is missing
_API_MODELS = {
    "act": ("sessions", "policy_unavailable"),
    "forecast_trajectories": ("forecaster", "forecaster_unavailable"),
    "neural_decode": ("neuroformer", "neuroformer_unavailable"),
    "neural_generate": ("neuroformer", "neuroformer_unavailable"),
}
# routes over several families: they answer 503 themselves, for the family a request names
_CHECKS_ITS_OWN_MODELS = {"explain", "probe"}
# auth and body size are checked before anything else (serving/guards.py); BentoML wraps the
# app in its middlewares in the order added, the first outermost
BehaveService.add_asgi_middleware(RequestGuard)
BehaveService.add_asgi_middleware(
    _ModelRequired,
    paths={
        method.route: _API_MODELS.get(name, ("predictor", "unavailable"))  # else BehaveGPT's
        for name, method in BehaveService.apis.items()
        if name not in _CHECKS_ITS_OWN_MODELS
    },
)


def _champion(family: str, bundle_env: str) -> tuple[str, str, str]:
    """(bundle path, version label, description) of a family's model: the local bundle named
    by ``bundle_env``, else ``behave.<family>@champion``; LookupError (saying how to train
    one) when there is none."""
    bundle = os.environ.get(bundle_env)
    if bundle:
        return bundle, "local", f"local bundle {bundle}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # log noise
    from behave import tracking

    version = tracking.get_version(family, ALIAS)
    name = tracking.registered_name(family)
    # pin the version read above, in case the alias moves while we download
    path = tracking.resolve_model_dir(f"models:/{name}/{version.version}")
    return str(path), str(version.version), f"{name}@{ALIAS} (version {version.version})"


def _unavailable_response(reason: str | None) -> JSONResponse:
    return JSONResponse({"error": reason or "no model loaded"}, status_code=503)


def _input_error_response(err) -> JSONResponse:
    """An :class:`~behave.inference.behavegpt.InputError` as the 400 body pydantic errors get."""
    loc = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", err.field)]
    return JSONResponse(
        {
            "error": "1 validation error",
            "detail": [{"type": "invalid_input", "loc": loc, "msg": err.message}],
        },
        status_code=400,
    )


def _session_error_response(err: SessionError, route: str) -> JSONResponse:
    """A refused /act request: the 400 body's shape, with its own status (404, 409, 429)."""
    log.warning("rejected %s (%d): %s", route, err.status, err.message)
    return JSONResponse(
        {
            "error": err.message,
            "detail": [{"type": err.kind, "loc": list(err.loc), "msg": err.message}],
        },
        status_code=err.status,
    )


_ACT_BATCH_HISTOGRAM = None


def _act_batch_histogram():
    """``behave_act_batch_size`` in /metrics: episodes per policy call of POST /act sessions."""
    global _ACT_BATCH_HISTOGRAM
    if _ACT_BATCH_HISTOGRAM is None:
        # imported here: BentoML sets up prometheus' multiprocess mode when a worker starts
        from prometheus_client import Histogram

        _ACT_BATCH_HISTOGRAM = Histogram(
            "behave_act_batch_size",
            "episodes stepped by one policy call of POST /act",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
    return _ACT_BATCH_HISTOGRAM.observe


class _ClientErrorFilter(logging.Filter):
    """BentoML logs each rejected request at ERROR with a full traceback; make it one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in errors[:3]
            )
            if len(errors) > 3:
                reason += f"; and {len(errors) - 3} more"
            status = 400
        elif isinstance(exc, bentoml.exceptions.BentoMLException) and exc.error_code < 500:
            reason, status = str(exc), int(exc.error_code)
        else:
            return True
        path, method = (
            (record.args + (None, None))[:2] if isinstance(record.args, tuple) else (None, None)
        )
        record.msg, record.args = "rejected %s %s (%d): %s", (method, path, status, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def _one_line_client_errors() -> None:
    target = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML logs them
    if not any(isinstance(f, _ClientErrorFilter) for f in target.filters):
        target.addFilter(_ClientErrorFilter())
