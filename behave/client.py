"""Typed Python client of the behave HTTP service (``serving/service.py``): every route, sync
and async.

    from behave.client import BehaveClient

    with BehaveClient("http://127.0.0.1:3000") as client:  # token: $BEHAVE_API_TOKEN, if set
        client.wait_ready(timeout=60)
        top = client.next_behavior(["open_mail", "search"], top_k=5)
        print(top.behaviors, top.probabilities)

:class:`AsyncBehaveClient` has the same methods as coroutines (``await client.next_behavior(...)``,
``async with AsyncBehaveClient(...)``). Answers are the frozen dataclasses below, field for field
the service's response schemas (``serving/*schemas.py``; tests/serving/test_client.py keeps them
equal); unknown fields a newer service adds are ignored. Any non-2xx answer raises
:class:`BehaveAPIError` (a subclass per status: :class:`BadRequest`, :class:`ServiceUnavailable`,
...) carrying the status, the body's ``error`` message, its field ``detail`` and the route;
network failures are httpx's own exceptions (``httpx.TransportError``).

How it is built: each route's request and the parsing of its answer are written once, as a
:class:`_Call` returned by a builder of :class:`_Routes`; the two clients only send it
(``BehaveClient._send`` / ``AsyncBehaveClient._send``) and bind each builder as a method with
:func:`_sync_method` / :func:`_async_method`, which keep the builder's typed signature. The module
imports httpx and the standard library only (no torch, bentoml, pydantic): the server's pydantic
schemas live in the top-level ``serving`` folder, which is not part of the installed package.

Inputs accept plain Python values, numpy arrays (anything with ``tolist()``) and datetimes: an
event is an :class:`Event`, a mapping (a raw event-log row; extra keys are ignored by the
service) or just a behavior name; a spike is a :class:`SpikeEvent`, a ``{"neuron", "time"}``
mapping or a ``(neuron, time)`` pair; a scene maps each agent_id to its track ``[[x, y], ...]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import os
import re
import time
import types
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, Union

import httpx

__all__ = [
    "BehaveClient",
    "AsyncBehaveClient",
    "DEFAULT_URL",
    "TOKEN_ENV",
    # errors
    "BehaveAPIError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "TooManyRequests",
    "ServiceUnavailable",
    "GatewayTimeout",
    # inputs
    "Event",
    "SpikeEvent",
    # answers
    "NextBehavior",
    "Generated",
    "Behaviors",
    "Action",
    "SessionsInfo",
    "BatchingInfo",
    "PolicyInfo",
    "AgentForecast",
    "SceneForecast",
    "ForecasterInfo",
    "DecodedWindow",
    "Decoded",
    "GeneratedSpikes",
    "Edge",
    "Connectivity",
    "Explanation",
    "ExplainResult",
    "ExplainableModel",
    "Landmark",
    "Landmarks",
    "ProbeResult",
    "ProbeInfo",
]

DEFAULT_URL = "http://127.0.0.1:3000"
TOKEN_ENV = "BEHAVE_API_TOKEN"  # the service's (serving/guards.py); the default token here
# above the service's own 30 s request timeout, so that its 504 arrives rather than ours
DEFAULT_TIMEOUT_S = 60.0

T = TypeVar("T")
P = ParamSpec("P")


# ---- errors ---------------------------------------------------------------------------------
class BehaveAPIError(Exception):
    """A non-2xx answer of the service.

    ``status``: the HTTP status; ``message``: the body's ``error``; ``detail``: its field errors,
    each ``{"type", "loc", "msg"}`` (``loc`` names the field, e.g. ``["history", 3,
    "behavior"]``); ``route``: the request, e.g. ``"POST /probe"``; ``body``: the parsed body (or
    its text). ``str(err)`` is one line: route, status and what to fix.
    """

    status: int = 0  # the class's status; an instance carries the answer's

    def __init__(
        self,
        route: str,
        status: int,
        message: str,
        detail: Sequence[Mapping[str, Any]] = (),
        body: Any = None,
    ) -> None:
        self.route, self.status, self.message = route, status, message
        self.detail = [dict(d) for d in detail]
        self.body = body
        super().__init__(str(self))

    @property
    def field(self) -> str | None:
        """The first field the service blamed, dotted (``history.3.behavior``), if any."""
        if not self.detail:
            return None
        return _dotted(self.detail[0].get("loc") or ()) or None

    def __str__(self) -> str:
        return f"{self.route} -> {self.status}: {_summary(self.message, self.detail)}"

    def __reduce__(self):  # picklable (the default would pass str(self) as the only argument)
        return _rebuild_error, (self.route, self.status, self.message, self.detail, self.body)


class BadRequest(BehaveAPIError):
    """400: the request is invalid; ``detail`` names the field."""

    status = 400


class Unauthorized(BehaveAPIError):
    """401: missing or wrong bearer token (the service runs with ``BEHAVE_API_TOKEN``)."""

    status = 401


class NotFound(BehaveAPIError):
    """404: unknown route, unknown or expired ``episode_id``, unknown model."""

    status = 404


class Conflict(BehaveAPIError):
    """409: a step of that episode is in flight, or ``step`` is not the episode's next one."""

    status = 409


class PayloadTooLarge(BehaveAPIError):
    """413: the body is over ``BEHAVE_MAX_BODY_BYTES``; send fewer items per request."""

    status = 413


class TooManyRequests(BehaveAPIError):
    """429: too many requests in flight, or too many live episodes; retry later."""

    status = 429


class ServiceUnavailable(BehaveAPIError):
    """503: the route's model family is not loaded (the message says how to train one), or the
    service is not ready yet."""

    status = 503


class GatewayTimeout(BehaveAPIError):
    """504: the request ran past the service's timeout."""

    status = 504


_ERRORS: dict[int, type[BehaveAPIError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        NotFound,
        Conflict,
        PayloadTooLarge,
        TooManyRequests,
        ServiceUnavailable,
        GatewayTimeout,
    )
}
_GENERIC = re.compile(r"^\d+ validation errors?( for \w+)?$")  # BentoML's/ours: says no more


def _rebuild_error(route, status, message, detail, body) -> BehaveAPIError:
    return _ERRORS.get(status, BehaveAPIError)(route, status, message, detail, body)


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query"))


def _summary(message: str, detail: Sequence[Mapping[str, Any]]) -> str:
    """What to fix, in one line: the field errors when the message says only how many there are,
    else the message (led by the field it is about, when it does not name it)."""
    if detail and (not message or _GENERIC.match(message)):
        parts = [f"{_dotted(d.get('loc') or ()) or '(body)'}: {d.get('msg')}" for d in detail[:3]]
        more = f"; and {len(detail) - 3} more" if len(detail) > 3 else ""
        return "; ".join(parts) + more
    where = _dotted(detail[0].get("loc") or ()) if detail else ""
    text = " ".join(str(message).split())  # one line
    if where and where.split(".")[-1] not in text:
        text = f"{where}: {text}"
    return text


def _error(route: str, response: httpx.Response) -> BehaveAPIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    payload = body
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML answers some 4xx with a one-item list
    if isinstance(payload, dict):
        message = str(payload.get("error") or payload.get("detail") or "")
        listed = payload.get("detail")
        detail = [d for d in listed if isinstance(d, dict)] if isinstance(listed, list) else []
    else:
        message = str(payload).strip().splitlines()[0][:200] if str(payload).strip() else ""
        detail = []
    message = message or response.reason_phrase or "error"
    cls = _ERRORS.get(response.status_code, BehaveAPIError)
    return cls(route, response.status_code, message, detail, body)


# ---- inputs ---------------------------------------------------------------------------------
class SupportsToList(Protocol):
    """numpy arrays and scalars (and anything else with ``tolist()``)."""

    def tolist(self) -> Any: ...


Vector = Sequence[float] | SupportsToList
Matrix = Sequence[Sequence[float]] | SupportsToList


@dataclass(frozen=True)
class Event:
    """One past event; unknown locations and domains are encoded as "unknown" by the model."""

    behavior: str  # one of GET /behaviors
    timestamp: datetime | str | None = None  # ISO 8601; sets weekday and half-hour slot
    location: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class SpikeEvent:
    neuron: int  # 0..N-1 (Connectivity.num_neurons)
    time: float  # seconds, >= 0


EventLike = Event | Mapping[str, Any] | str
History = Sequence[EventLike]
SpikeLike = SpikeEvent | Mapping[str, Any] | tuple[int, float]
Scene = Mapping[str, Matrix]  # agent_id -> track [[x, y], ...] (metres, oldest first)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy -> lists and floats, datetimes -> ISO 8601, dataclasses -> dicts."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in vars(value).items() if v is not None}
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset) or hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return value


def _event(event: EventLike) -> Any:
    return {"behavior": event} if isinstance(event, str) else _plain(event)


def _history(history: History) -> list:
    return [_event(e) for e in history]


def _spikes(spikes: Sequence[SpikeLike]) -> list:
    out = []
    for s in spikes:
        if isinstance(s, tuple):
            neuron, t = s
            out.append({"neuron": int(neuron), "time": float(t)})
        else:
            out.append(_plain(s))
    return out


def _scene(scene: Scene) -> dict:
    return {"agents": [{"agent_id": a, "track": _plain(track)} for a, track in scene.items()]}


def _body(**fields: Any) -> dict:
    """The JSON body: fields left at None are not sent (the service's default applies)."""
    return {k: _plain(v) for k, v in fields.items() if v is not None}


# ---- answers (field for field the service's response schemas) ------------------------------
@dataclass(frozen=True)
class NextBehavior:
    """``POST /next_behavior``: the most likely next behaviors after one history."""

    behaviors: list[str]  # best first
    probabilities: list[float]  # descending
    events_used: int  # events of the history the model attended to
    truncated: bool  # whether older events were dropped
    truncated_events: int
    model_version: str  # registry version of behave.behavegpt (or 'local')
    message: str | None = None  # note on truncation


@dataclass(frozen=True)
class Generated:
    """``POST /generate``: sampled future behaviors; send ``seed`` again for the same ones."""

    behaviors: list[str]
    events_used: int
    truncated: bool
    truncated_events: int
    seed: int
    model_version: str
    message: str | None = None


@dataclass(frozen=True)
class Behaviors:
    """``GET /behaviors``: the names the BehaveGPT model knows."""

    behaviors: list[str]
    locations: list[str]
    domains: list[str]
    context_length: int  # most recent events the model attends to
    max_history_events: int  # longest history accepted
    model_version: str


@dataclass(frozen=True)
class Action:
    """``POST /act``: the policy's next action, in environment units."""

    action: list[float]
    step: int  # t, the index of this action in the episode; stateless: T - 1
    return_to_go: float  # R̂_t the action was conditioned on
    model_version: str
    episode_id: str | None = None  # session modes: send it with the next observation


@dataclass(frozen=True)
class SessionsInfo:
    live: int
    max_sessions: int
    ttl_s: float


@dataclass(frozen=True)
class BatchingInfo:
    model_calls: int
    episode_steps: int
    multi_episode_calls: int
    largest_batch: int
    max_batch_size: int
    max_wait_ms: float


@dataclass(frozen=True)
class PolicyInfo:
    """``GET /policy``: what ``POST /act`` expects, live sessions and batching counters."""

    architecture: str
    mode: str  # recurrent or window
    state_dim: int
    act_dim: int
    action_low: list[float]
    action_high: list[float]
    target_return: float | None  # the default return a session is conditioned on
    max_history_steps: int  # longest stateless history
    sessions: SessionsInfo
    batching: BatchingInfo
    model_version: str
    reference_returns: dict[str, float] | None = None  # e.g. random, expert
    env: str | None = None
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentForecast:
    agent_id: str
    times_s: list[float]  # seconds ahead of the last observed position
    positions: list[list[float]]  # predicted mean [x, y] (m)
    sigma: list[list[float]]  # [σx, σy] (m)
    correlation: list[float]  # ρ
    behavior: str
    behavior_probabilities: dict[str, float]


@dataclass(frozen=True)
class SceneForecast:
    """``POST /trajectory/forecast``: one scene's agents, in the request's order."""

    agents: list[AgentForecast]
    model_version: str


@dataclass(frozen=True)
class ForecasterInfo:
    """``GET /trajectory/model``: what the forecaster reads and predicts."""

    observe_steps: int
    predict_steps: int
    hz: float
    behaviors: list[str]
    behavior_rule: dict[str, Any]
    model_version: str


@dataclass(frozen=True)
class DecodedWindow:
    start_s: float
    end_s: float
    value: float  # in the training data's units


@dataclass(frozen=True)
class Decoded:
    """``POST /neural/decode``: one decoded value per 50 ms window."""

    behavior: str | None  # the decoded variable, e.g. running_speed
    windows: list[DecodedWindow]
    model_version: str


@dataclass(frozen=True)
class GeneratedSpikes:
    """``POST /neural/generate``: spikes generated after the context."""

    spikes: list[SpikeEvent]
    start_s: float
    end_s: float
    model_version: str


@dataclass(frozen=True)
class Edge:
    source: int
    target: int
    weight: float


@dataclass(frozen=True)
class Connectivity:
    """``GET /neural/connectivity``: connection strengths, source rows x target columns."""

    num_neurons: int
    matrix: list[list[float]]
    top_edges: list[Edge]
    model_version: str


@dataclass(frozen=True)
class Explanation:
    prediction: str
    probability: float
    target: str  # the class whose score is attributed
    attributions: list[list[float]]  # T x D (behavegpt: events x features)
    mask: list[list[int]] | None = None  # timex
    landmark: int | None = None  # timex
    landmark_similarity: float | None = None
    png_base64: str | None = None  # plot=True


@dataclass(frozen=True)
class ExplainResult:
    """``POST /explain``."""

    family: str
    model: str
    method: str
    features: list[str]  # the attribution columns
    explanations: list[Explanation]
    seconds: float
    model_version: str
    explainer_version: str | None = None  # timex


@dataclass(frozen=True)
class ExplainableModel:
    """One entry of ``GET /explain/models``."""

    family: str
    methods: list[str]
    model_version: str
    seq_len: int | None = None
    channels: int | None = None
    classes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why not served
    explainer_version: str | None = None


@dataclass(frozen=True)
class Landmark:
    landmark: int
    count: int
    classes: dict[str, int]
    kept_share: float


@dataclass(frozen=True)
class Landmarks:
    """``GET /explain/landmarks``: TimeX's landmarks of a classifier."""

    model: str
    explainer_version: str
    explains_version: str
    landmarks: list[Landmark]


@dataclass(frozen=True)
class ProbeResult:
    """``POST /probe``: how likely the next event is in the probe's behavior family."""

    probe: str
    score: float
    flagged: bool  # score >= threshold
    threshold: float
    label: str
    events_used: int
    truncated: bool
    probe_version: str
    reads_version: str  # the model version whose hidden states it reads


@dataclass(frozen=True)
class ProbeInfo:
    """One entry of ``GET /probe/models``."""

    label: str
    layer: int
    auroc: float | None
    probe_version: str
    reads_model: str
    reads_version: str
    threshold: float


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _has_dataclass(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) or any(_has_dataclass(a) for a in typing.get_args(tp))


def _load(tp: Any, value: Any) -> Any:
    """JSON -> ``tp`` (dataclasses, lists, dicts and optionals of them); other values as sent."""
    if value is None or not _has_dataclass(tp):
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: _load(hints[k], v) for k, v in value.items() if k in known})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _load(inner, value)
    if origin is list:
        return [_load(args[0], v) for v in value]
    if origin is dict:
        return {k: _load(args[1], v) for k, v in value.items()}
    return value


# ---- one request of one route -----------------------------------------------------------------
@dataclass(frozen=True)
class _Call(Generic[T]):
    """How to ask one route and read its answer; the clients only send it."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]  # the 2xx answer -> the typed result
    json: Any = None
    params: dict[str, Any] | None = None

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    def answer(self, response: httpx.Response) -> T:
        if not response.is_success:
            raise _error(self.route, response)
        return self.read(response)


def _as(tp: Any) -> Callable[[httpx.Response], Any]:
    return lambda response: _load(tp, response.json())


def _nothing(response: httpx.Response) -> None:
    return None


class _Routes:
    """Every route, once: each builder takes the typed arguments and returns its :class:`_Call`.
    Bound as methods of both clients (same name, same signature, same docstring)."""

    # ---- BehaveGPT
    @staticmethod
    def next_behavior(history: History, *, top_k: int = 10) -> _Call[NextBehavior]:
        """``POST /next_behavior`` for one history: its ``top_k`` most likely next behaviors.
        A history longer than the model's context is cut to its most recent events."""
        body = {"requests": [{"history": _history(history), "top_k": top_k}]}
        return _Call("POST", "/next_behavior", lambda r: _load(NextBehavior, r.json()[0]), body)

    @staticmethod
    def next_behavior_batch(
        histories: Sequence[History], *, top_k: int = 10
    ) -> _Call[list[NextBehavior]]:
        """``POST /next_behavior`` for several histories in one call (at most 64): one answer
        per history, in order."""
        requests = [{"history": _history(h), "top_k": top_k} for h in histories]
        return _Call("POST", "/next_behavior", _as(list[NextBehavior]), {"requests": requests})

    @staticmethod
    def generate(
        history: History,
        *,
        num_steps: int = 20,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> _Call[Generated]:
        """``POST /generate``: ``num_steps`` behaviors sampled after a history; the same
        ``seed`` gives the same ones (None: a random seed, returned in the answer)."""
        body = _body(num_steps=num_steps, temperature=temperature, top_k=top_k, seed=seed)
        return _Call("POST", "/generate", _as(Generated), {"history": _history(history), **body})

    @staticmethod
    def behaviors() -> _Call[Behaviors]:
        """``GET /behaviors``: the behavior, location and domain names the model knows."""
        return _Call("GET", "/behaviors", _as(Behaviors))

    # ---- Decision Mamba (POST /act, its three modes)
    @staticmethod
    def act_on_history(
        observations: Matrix, returns_to_go: Vector, actions: Matrix | None = None
    ) -> _Call[Action]:
        """``POST /act``, stateless: the action after T observations, T returns-to-go and the
        T-1 actions taken before the last observation. Nothing is kept on the server."""
        body = _body(observations=observations, returns_to_go=returns_to_go, actions=actions)
        return _Call("POST", "/act", _as(Action), body)

    @staticmethod
    def start_episode(observation: Vector, target_return: float | None = None) -> _Call[Action]:
        """``POST /act``, session start: the first action and a new ``episode_id``
        (``target_return`` None: the model's default, :attr:`PolicyInfo.target_return`)."""
        body = _body(observation=observation, target_return=target_return)
        return _Call("POST", "/act", _as(Action), body)

    @staticmethod
    def step_episode(
        episode_id: str, observation: Vector, reward: float, *, step: int | None = None
    ) -> _Call[Action]:
        """``POST /act``, session step: the next action after the newest observation and the
        reward the previous action earned. ``step`` (the previous answer's + 1), if given, is
        checked: a mismatch (e.g. a retry that already went through) is a 409 :class:`Conflict`."""
        body = _body(episode_id=episode_id, observation=observation, reward=reward, step=step)
        return _Call("POST", "/act", _as(Action), body)

    @staticmethod
    def end_episode(episode_id: str) -> _Call[None]:
        """``DELETE /act/{episode_id}``: forget the episode (404 :class:`NotFound` if it is not
        live)."""
        return _Call("DELETE", f"/act/{episode_id}", _nothing)

    @staticmethod
    def policy() -> _Call[PolicyInfo]:
        """``GET /policy``: sizes, action bounds and default target return of the policy."""
        return _Call("GET", "/policy", _as(PolicyInfo))

    # ---- Graph-LSTM
    @staticmethod
    def forecast(scene: Scene) -> _Call[SceneForecast]:
        """``POST /trajectory/forecast`` for one scene (agent_id -> observed track): each
        agent's future positions, their uncertainty and its behavior."""
        body = {"scenes": [_scene(scene)]}
        return _Call(
            "POST", "/trajectory/forecast", lambda r: _load(SceneForecast, r.json()[0]), body
        )

    @staticmethod
    def forecast_batch(scenes: Sequence[Scene]) -> _Call[list[SceneForecast]]:
        """``POST /trajectory/forecast`` for several scenes (at most 32): one forecast each."""
        body = {"scenes": [_scene(s) for s in scenes]}
        return _Call("POST", "/trajectory/forecast", _as(list[SceneForecast]), body)

    @staticmethod
    def trajectory_model() -> _Call[ForecasterInfo]:
        """``GET /trajectory/model``: track length, frame rate, horizon and behaviors."""
        return _Call("GET", "/trajectory/model", _as(ForecasterInfo))

    # ---- Neuroformer
    @staticmethod
    def neural_decode(
        spikes: Sequence[SpikeLike], *, stimulus: Matrix | None = None
    ) -> _Call[Decoded]:
        """``POST /neural/decode``: the behavior decoded per 50 ms window from spikes sorted by
        time (and optional stimulus rows, one per 10 ms bin from time 0)."""
        body = {"spikes": _spikes(spikes), **_body(stimulus=stimulus)}
        return _Call("POST", "/neural/decode", _as(Decoded), body)

    @staticmethod
    def neural_generate(
        spikes: Sequence[SpikeLike],
        *,
        duration_s: float = 0.5,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stimulus: Matrix | None = None,
    ) -> _Call[GeneratedSpikes]:
        """``POST /neural/generate``: spikes generated for ``duration_s`` after the context;
        the same seed gives the same spikes."""
        fields = _body(
            duration_s=duration_s,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stimulus=stimulus,
        )
        body = {"spikes": _spikes(spikes), **fields}
        return _Call("POST", "/neural/generate", _as(GeneratedSpikes), body)

    @staticmethod
    def neural_connectivity(top: int = 20) -> _Call[Connectivity]:
        """``GET /neural/connectivity``: the inferred adjacency and its ``top`` strongest edges."""
        return _Call("GET", "/neural/connectivity", _as(Connectivity), params={"top": top})

    # ---- explanations
    @staticmethod
    def explain_series(
        inputs: Sequence[Matrix] | SupportsToList,
        method: str,
        *,
        model: str | None = None,
        target: int | str | None = None,
        n_steps: int = 50,
        plot: bool = False,
    ) -> _Call[ExplainResult]:
        """``POST /explain`` of a time-series classifier: attributions for each series (T x D)
        by ``method`` (``timex`` or a Captum method, see :meth:`explain_models`); ``model`` is
        the classifier's dataset (None: the only one loaded); ``target`` a class index or name
        (None: the predicted one); ``plot`` adds a PNG heatmap each."""
        body = _body(
            family="tsclassifier",
            model=model,
            method=method,
            inputs=inputs,
            target=target,
            n_steps=n_steps,
            plot=plot,
        )
        return _Call("POST", "/explain", _as(ExplainResult), body)

    @staticmethod
    def explain_history(
        history: History,
        method: str = "integrated_gradients",
        *,
        target: str | None = None,
        n_steps: int = 50,
        plot: bool = False,
    ) -> _Call[ExplainResult]:
        """``POST /explain`` of BehaveGPT: the next behavior after a history (or ``target``, a
        behavior name) attributed to each event's fields by a Captum method."""
        body = _body(family="behavegpt", method=method, target=target, n_steps=n_steps, plot=plot)
        return _Call("POST", "/explain", _as(ExplainResult), {**body, "history": _history(history)})

    @staticmethod
    def explain_models() -> _Call[dict[str, ExplainableModel]]:
        """``GET /explain/models``: per explainable model, its methods and why one is missing."""
        return _Call(
            "GET",
            "/explain/models",
            lambda r: _load(dict[str, ExplainableModel], r.json()["models"]),
        )

    @staticmethod
    def explain_landmarks(model: str | None = None) -> _Call[Landmarks]:
        """``GET /explain/landmarks``: TimeX's landmarks of a classifier (None: the only one)."""
        params = {"model": model} if model is not None else None
        return _Call("GET", "/explain/landmarks", _as(Landmarks), params=params)

    # ---- behavior probes
    @staticmethod
    def probe(history: History, *, probe: str | None = None) -> _Call[ProbeResult]:
        """``POST /probe``: the probe's score that the next event is in its behavior family
        (``probe`` None: the only one loaded)."""
        body = {**_body(probe=probe), "history": _history(history)}
        return _Call("POST", "/probe", _as(ProbeResult), body)

    @staticmethod
    def probe_models() -> _Call[dict[str, ProbeInfo]]:
        """``GET /probe/models``: the loaded probes, what each detects and its lineage."""
        return _Call(
            "GET", "/probe/models", lambda r: _load(dict[str, ProbeInfo], r.json()["probes"])
        )


# builders bound as methods of both clients (tests/serving/test_client.py checks all are)
ROUTE_METHODS = tuple(
    name for name, value in vars(_Routes).items() if isinstance(value, staticmethod)
)
_READY = _Call("GET", "/readyz", _nothing)  # 200 once the service has loaded its models


def _like(method: Callable, build: Callable) -> None:
    """Give the bound method the builder's name, docstring and signature (plus ``self``,
    returning what the ``_Call`` reads), for help() and IDEs."""
    signature = inspect.signature(build)
    returns = signature.return_annotation
    if isinstance(returns, str) and returns.startswith("_Call["):
        returns = returns[len("_Call[") : -1]
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__name__ = method.__qualname__ = build.__name__
    method.__doc__ = build.__doc__
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *signature.parameters.values()], return_annotation=returns
    )


def _sync_method(build: Callable[P, _Call[T]]) -> Callable[Concatenate[BehaveClient, P], T]:
    def method(self: BehaveClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._send(build(*args, **kwargs))

    _like(method, build)
    return method


def _async_method(
    build: Callable[P, _Call[T]],
) -> Callable[Concatenate[AsyncBehaveClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncBehaveClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._send(build(*args, **kwargs))

    _like(method, build)
    return method


# ---- the clients ----------------------------------------------------------------------------
def _options(base_url: str, token: str | None, timeout: float | None, headers) -> dict[str, Any]:
    token = os.environ.get(TOKEN_ENV) if token is None else token
    merged = {"user-agent": "behave-client", **(headers or {})}
    if token:
        merged["authorization"] = f"Bearer {token}"
    return {"base_url": base_url.rstrip("/"), "timeout": timeout, "headers": merged}


def _not_ready(base_url: str, timeout: float, last: BaseException | None) -> TimeoutError:
    why = f" (last answer: {last})" if last is not None else ""
    return TimeoutError(f"{base_url} not ready after {timeout:g} s{why}")


class BehaveClient:
    """The behave service over HTTP, blocking. One ``httpx.Client`` (connection pool) per
    client; use it as a context manager or call :meth:`close`.

    ``token``: sent as ``Authorization: Bearer <token>``; None: ``$BEHAVE_API_TOKEN`` if set; ""
    sends none. ``timeout``: seconds per request (None: wait forever). ``transport``: an httpx
    transport (e.g. ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            **_options(base_url, token, timeout, headers), transport=transport
        )

    def _send(self, call: _Call[T]) -> T:
        response = self._http.request(call.method, call.path, json=call.json, params=call.params)
        return call.answer(response)

    def is_ready(self) -> bool:
        """Whether ``GET /readyz`` answers 200 (False while the service starts or is down)."""
        try:
            self._send(_READY)
        except (BehaveAPIError, httpx.TransportError):
            return False
        return True

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.25) -> None:
        """Waits until the service is ready; TimeoutError after ``timeout`` seconds."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            try:
                return self._send(_READY)
            except (BehaveAPIError, httpx.TransportError) as err:
                last = err
            if time.monotonic() + interval > deadline:
                raise _not_ready(self.base_url, timeout, last)
            time.sleep(interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BehaveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BehaveClient({self.base_url!r})"

    next_behavior = _sync_method(_Routes.next_behavior)
    next_behavior_batch = _sync_method(_Routes.next_behavior_batch)
    generate = _sync_method(_Routes.generate)
    behaviors = _sync_method(_Routes.behaviors)
    act_on_history = _sync_method(_Routes.act_on_history)
    start_episode = _sync_method(_Routes.start_episode)
    step_episode = _sync_method(_Routes.step_episode)
    end_episode = _sync_method(_Routes.end_episode)
    policy = _sync_method(_Routes.policy)
    forecast = _sync_method(_Routes.forecast)
    forecast_batch = _sync_method(_Routes.forecast_batch)
    trajectory_model = _sync_method(_Routes.trajectory_model)
    neural_decode = _sync_method(_Routes.neural_decode)
    neural_generate = _sync_method(_Routes.neural_generate)
    neural_connectivity = _sync_method(_Routes.neural_connectivity)
    explain_series = _sync_method(_Routes.explain_series)
    explain_history = _sync_method(_Routes.explain_history)
    explain_models = _sync_method(_Routes.explain_models)
    explain_landmarks = _sync_method(_Routes.explain_landmarks)
    probe = _sync_method(_Routes.probe)
    probe_models = _sync_method(_Routes.probe_models)


class AsyncBehaveClient:
    """The behave service over HTTP, for asyncio: the methods of :class:`BehaveClient` as
    coroutines. Use it with ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            **_options(base_url, token, timeout, headers), transport=transport
        )

    async def _send(self, call: _Call[T]) -> T:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params
        )
        return call.answer(response)

    async def is_ready(self) -> bool:
        """Whether ``GET /readyz`` answers 200 (False while the service starts or is down)."""
        try:
            await self._send(_READY)
        except (BehaveAPIError, httpx.TransportError):
            return False
        return True

    async def wait_ready(self, timeout: float = 60.0, interval: float = 0.25) -> None:
        """Waits until the service is ready; TimeoutError after ``timeout`` seconds."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            try:
                return await self._send(_READY)
            except (BehaveAPIError, httpx.TransportError) as err:
                last = err
            if time.monotonic() + interval > deadline:
                raise _not_ready(self.base_url, timeout, last)
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBehaveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBehaveClient({self.base_url!r})"

    next_behavior = _async_method(_Routes.next_behavior)
    next_behavior_batch = _async_method(_Routes.next_behavior_batch)
    generate = _async_method(_Routes.generate)
    behaviors = _async_method(_Routes.behaviors)
    act_on_history = _async_method(_Routes.act_on_history)
    start_episode = _async_method(_Routes.start_episode)
    step_episode = _async_method(_Routes.step_episode)
    end_episode = _async_method(_Routes.end_episode)
    policy = _async_method(_Routes.policy)
    forecast = _async_method(_Routes.forecast)
    forecast_batch = _async_method(_Routes.forecast_batch)
    trajectory_model = _async_method(_Routes.trajectory_model)
    neural_decode = _async_method(_Routes.neural_decode)
    neural_generate = _async_method(_Routes.neural_generate)
    neural_connectivity = _async_method(_Routes.neural_connectivity)
    explain_series = _async_method(_Routes.explain_series)
    explain_history = _async_method(_Routes.explain_history)
    explain_models = _async_method(_Routes.explain_models)
    explain_landmarks = _async_method(_Routes.explain_landmarks)
    probe = _async_method(_Routes.probe)
    probe_models = _async_method(_Routes.probe_models)
