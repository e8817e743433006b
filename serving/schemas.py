"""Request and response shapes of the behave service (pydantic; no torch, no training code).

Everything a client can get wrong is rejected here, during BentoML's request parsing, so it
becomes HTTP 400 with a ``detail`` list whose ``loc`` names the field (e.g.
``["requests", 0, "history", 3, "behavior"]``) — and, for the batchable ``/next_behavior``
route, before the request joins an adaptive batch, so a bad request never fails its neighbours.
Checks that depend on the loaded model (known behavior names, ``top_k`` of ``/generate``) read
the vocabulary the service registers with :func:`use_vocabulary` at start-up; those of
``POST /act`` (observation and action sizes, a default target return) read what it registers
with :func:`use_policy`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "MAX_HISTORY_EVENTS",
    "MAX_REQUESTS_PER_CALL",
    "MAX_TOP_K",
    "MAX_GENERATE_STEPS",
    "MAX_TEMPERATURE",
    "use_vocabulary",
    "truncation_message",
    "Event",
    "History",
    "NextBehaviorRequest",
    "NextBehaviorInput",
    "NextBehaviorResponse",
    "GenerateTopK",
    "GenerateResponse",
    "BehaviorsResponse",
    "ErrorResponse",
    "MAX_ACT_HISTORY_STEPS",
    "use_policy",
    "ActInput",
    "ActResponse",
    "SessionsInfo",
    "BatchingInfo",
    "PolicyResponse",
]

# Histories longer than this are refused (400); longer than the model's context, truncated.
MAX_HISTORY_EVENTS = 10_000
MAX_REQUESTS_PER_CALL = 64  # = the route's max_batch_size
MAX_TOP_K = 100
MAX_GENERATE_STEPS = 256
MAX_TEMPERATURE = 5.0
# Longest stateless /act history: the whole history is re-read for one action (~1 s per 1000
# steps for the default Decision Mamba on one CPU core); longer episodes belong in session mode.
MAX_ACT_HISTORY_STEPS = 4096

# Behavior names of the loaded model; None (no model loaded) skips the vocabulary checks.
_known_behaviors: frozenset[str] | None = None


def use_vocabulary(behaviors: Collection[str] | None) -> None:
    """Checks requests against these behavior names (the loaded model's real behaviors)."""
    global _known_behaviors
    _known_behaviors = None if behaviors is None else frozenset(behaviors)


def truncation_message(total: int, used: int) -> str | None:
    if total <= used:
        return None
    return f"history had {total} events; used the most recent {used} (model context)"


def _known_behavior(name: str) -> str:
    if _known_behaviors is not None and name not in _known_behaviors:
        raise PydanticCustomError(
            "unknown_behavior",
            "unknown behavior '{behavior}'; GET /behaviors lists the known ones",
            {"behavior": name},
        )
    return name


def _top_k_within_vocabulary(top_k: int | None) -> int | None:
    if top_k is not None and _known_behaviors is not None and top_k > len(_known_behaviors):
        raise PydanticCustomError(
            "top_k_too_large",
            "top_k must be at most {size} (the number of behaviors the model knows)",
            {"size": len(_known_behaviors)},
        )
    return top_k


class Event(BaseModel):
    """One past event; unknown locations and domains are encoded as "unknown"."""

    # extra keys (user_id, ...) are ignored so raw event-log rows can be sent as they are
    model_config = ConfigDict(extra="ignore")

    behavior: Annotated[str, AfterValidator(_known_behavior)] = Field(
        description="behavior name, one of GET /behaviors", examples=["open_mail"]
    )
    timestamp: datetime | None = Field(
        None, description="when it happened (ISO 8601); sets weekday and half-hour slot"
    )
    location: str | None = Field(None, description="location name, one of GET /behaviors")
    domain: str | None = Field(None, description="domain name, one of GET /behaviors")


History = Annotated[
    list[Event],
    Field(
        min_length=1,
        max_length=MAX_HISTORY_EVENTS,
        description="past events, oldest first; only the most recent context_length are used",
    ),
]

GenerateTopK = Annotated[
    int | None,
    Field(ge=1, description="sample among the k most likely behaviors; null: all"),
    AfterValidator(_top_k_within_vocabulary),
]


class NextBehaviorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: History
    top_k: int = Field(10, ge=1, le=MAX_TOP_K, description="how many behaviors to return")


class NextBehaviorInput(BaseModel):
    """Body of ``POST /next_behavior``: a list of requests, answered by a list of results."""

    model_config = ConfigDict(title="Input")  # the name BentoML's 400 bodies show

    requests: list[NextBehaviorRequest] = Field(
        min_length=1,
        max_length=MAX_REQUESTS_PER_CALL,
        description="one or more histories; concurrent calls are batched together",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_request(cls, data):
        # the likely mistake: one request's fields sent without the list around them
        if isinstance(data, dict) and "requests" not in data and "history" in data:
            raise PydanticCustomError(
                "missing_requests",
                '/next_behavior takes a list of requests: send {"requests": [{"history": '
                '[...], "top_k": 10}]}; the answer is a list with one result per request',
            )
        return data


class NextBehaviorResponse(BaseModel):
    behaviors: list[str] = Field(description="most likely next behaviors, best first")
    probabilities: list[float] = Field(description="their probabilities, descending")
    events_used: int = Field(description="events of the history the model attended to")
    truncated: bool = Field(description="whether older events were dropped")
    truncated_events: int = Field(description="how many older events were dropped")
    message: str | None = Field(None, description="note on truncation, if any")
    model_version: str = Field(description="registry version of behave.behavegpt (or 'local')")


class GenerateResponse(BaseModel):
    behaviors: list[str] = Field(description="generated future behaviors, in order")
    events_used: int
    truncated: bool
    truncated_events: int
    message: str | None = None
    seed: int = Field(description="the sampling seed; send it again to get the same output")
    model_version: str


class BehaviorsResponse(BaseModel):
    behaviors: list[str] = Field(description="behavior names the model knows")
    locations: list[str] = Field(description="location names ('<unk>' for anything else)")
    domains: list[str] = Field(description="domain names ('<unk>' for anything else)")
    context_length: int = Field(description="most recent events the model attends to")
    max_history_events: int = Field(description="longest history accepted")
    model_version: str


class ErrorResponse(BaseModel):
    error: str


# ---- POST /act: the offline-RL policy (behave.decision_mamba) ---------------------------------
@dataclass(frozen=True)
class _PolicyShape:
    state_dim: int
    act_dim: int
    target_return: float | None  # the bundle's default conditioning return, if any


# Shape of the loaded policy; None (no policy loaded) skips the size checks.
_policy: _PolicyShape | None = None


def use_policy(
    state_dim: int | None, act_dim: int | None = None, target_return: float | None = None
) -> None:
    """Checks /act requests against this policy (``use_policy(None)``: no policy loaded)."""
    global _policy
    _policy = None if state_dim is None else _PolicyShape(state_dim, act_dim, target_return)


def _state_sized(values: list[float]) -> list[float]:
    if _policy is not None and len(values) != _policy.state_dim:
        raise PydanticCustomError(
            "wrong_observation_size",
            "an observation has {size} values: {got} given (state_dim; see GET /policy)",
            {"size": _policy.state_dim, "got": len(values)},
        )
    return values


def _action_sized(values: list[float]) -> list[float]:
    if _policy is not None and len(values) != _policy.act_dim:
        raise PydanticCustomError(
            "wrong_action_size",
            "an action has {size} values: {got} given (act_dim; see GET /policy)",
            {"size": _policy.act_dim, "got": len(values)},
        )
    return values


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]  # NaN / Infinity -> 400
Observation = Annotated[list[FiniteFloat], AfterValidator(_state_sized)]
Action = Annotated[list[FiniteFloat], AfterValidator(_action_sized)]

_STATELESS = ("observations", "returns_to_go", "actions")
_SESSION = ("episode_id", "observation", "reward", "target_return", "step")


class ActInput(BaseModel):
    """Body of ``POST /act``; which fields are present picks the mode.

    - **stateless**: ``observations`` (T x S), ``returns_to_go`` (T), ``actions`` ((T-1) x A)
      -> the action after this history. Nothing is kept on the server.
    - **session start**: ``observation`` (S) [+ ``target_return``] -> the first action and a
      new ``episode_id``; the server keeps the episode's recurrent state.
    - **session step**: ``episode_id`` + ``observation`` + ``reward`` (what the previous
      action earned) -> the next action, O(1) in the episode's length.

    All values in environment units; NaN and infinities are refused.
    """

    model_config = ConfigDict(
        title="Input",  # the name BentoML's 400 bodies show
        extra="forbid",
        # what Swagger's "Try it out" starts from (a session start of the LunarLander policy)
        json_schema_extra={"example": {"observation": [0.0, 1.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}},
    )

    episode_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="session step: the episode_id an earlier answer returned; "
        "omit it to start a new episode",
    )
    observation: Observation | None = Field(
        None,
        description="session modes: the newest observation s_t, state_dim floats",
    )
    reward: FiniteFloat | None = Field(
        None,
        description="session step (required there): the reward the previous action earned; "
        "the server subtracts it from the episode's return-to-go",
    )
    target_return: FiniteFloat | None = Field(
        None,
        description="session start: the return to condition the episode on; "
        "null: the model's default (GET /policy)",
    )
    step: int | None = Field(
        None,
        ge=0,
        description="session step, optional: the index of the action asked for (the previous "
        "answer's step + 1); a mismatch answers 409 instead of advancing the episode twice "
        "(e.g. a retried request)",
    )
    observations: list[Observation] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ACT_HISTORY_STEPS,
        description="stateless: observations s_0..s_{T-1}, oldest first (T x state_dim)",
    )
    returns_to_go: list[FiniteFloat] | None = Field(
        None,
        description="stateless: returns-to-go R̂_0..R̂_{T-1}, one per observation",
    )
    actions: list[Action] | None = Field(
        None,
        description="stateless: actions a_0..a_{T-2} taken before the last observation "
        "((T-1) x act_dim; may be omitted when T = 1)",
    )

    @property
    def mode(self) -> str:
        """``stateless``, ``start`` or ``step``."""
        if self.observations is not None:
            return "stateless"
        return "start" if self.episode_id is None else "step"

    @model_validator(mode="wrap")
    @classmethod
    def _one_mode(cls, data, handler):
        # presence rules first, on the raw body: a field of the wrong mode is the likely cause
        # of anything else that fails, so it is the one error reported
        if isinstance(data, dict):
            _raise_if(_mode_errors({k for k, v in data.items() if v is not None}))
        request = handler(data)
        _raise_if(request._length_errors())
        return request

    def _length_errors(self) -> list[tuple[tuple, str, str]]:
        errors = []
        if self.mode == "stateless":
            T = len(self.observations)
            if len(self.returns_to_go) != T:
                errors.append(
                    (
                        ("returns_to_go",),
                        "wrong_length",
                        f"returns_to_go needs one value per observation ({T}): "
                        f"{len(self.returns_to_go)} given",
                    )
                )
            if self.actions is None and T > 1:
                errors.append(
                    (
                        ("actions",),
                        "missing",
                        f"required: the {T - 1} actions taken before the last observation",
                    )
                )
            elif self.actions is not None and len(self.actions) != T - 1:
                errors.append(
                    (
                        ("actions",),
                        "wrong_length",
                        f"actions needs T - 1 = {T - 1} entries (the actions taken before the last "
                        f"observation): {len(self.actions)} given",
                    )
                )
        elif self.mode == "start" and self.target_return is None:
            if _policy is not None and _policy.target_return is None:
                errors.append(
                    (
                        ("target_return",),
                        "missing",
                        "required: this model has no default target return",
                    )
                )
        return errors


def _mode_errors(present: set[str]) -> list[tuple[tuple, str, str]]:
    """Errors for fields that do not belong together (``present``: the body's non-null keys)."""
    errors = []
    if present & set(_STATELESS):
        for name in _SESSION:
            if name in present:
                errors.append(
                    (
                        (name,),
                        "wrong_mode",
                        "not part of a stateless request (observations, returns_to_go, actions); "
                        "sessions send observation, reward and episode_id instead",
                    )
                )
        for name in ("observations", "returns_to_go"):
            if name not in present:
                errors.append(
                    ((name,), "missing", "required in a stateless request (history given)")
                )
        return errors
    if "observation" not in present:
        errors.append(
            (
                ("observation",),
                "missing",
                "required: the newest observation (state_dim floats); or send observations, "
                "returns_to_go and actions for a stateless answer",
            )
        )
    if "episode_id" in present:
        if "reward" not in present:
            errors.append(
                (("reward",), "missing", "required: the reward the previous action earned")
            )
        if "target_return" in present:
            errors.append(
                (
                    ("target_return",),
                    "wrong_mode",
                    "only when starting an episode (no episode_id); it is fixed per episode",
                )
            )
    else:
        for name, why in (
            ("reward", "an episode's first step has no reward"),
            ("step", "only with episode_id"),
        ):
            if name in present:
                errors.append(((name,), "wrong_mode", f"{why}; to start an episode, omit it"))
    return errors


def _raise_if(errors: list[tuple[tuple, str, str]]) -> None:
    if errors:
        raise ValidationError.from_exception_data(
            "Input",
            [
                InitErrorDetails(type=PydanticCustomError(kind, msg), loc=loc, input=None)
                for loc, kind, msg in errors
            ],
        )


class ActResponse(BaseModel):
    action: list[float] = Field(
        description="the next action a_t, act_dim floats in environment units "
        "(within action_low..action_high)"
    )
    episode_id: str | None = Field(
        None, description="session modes: send it with the next observation; stateless: null"
    )
    step: int = Field(
        description="t, the index of this action in the episode (0: the first); stateless: T - 1"
    )
    return_to_go: float = Field(
        description="R̂_t the action was conditioned on (target return minus rewards so far)"
    )
    model_version: str = Field(description="registry version of behave.decision_mamba")


class SessionsInfo(BaseModel):
    live: int = Field(description="episodes the server keeps now")
    max_sessions: int = Field(description="most live episodes; new ones beyond get 429")
    ttl_s: float = Field(description="an episode idle this long is forgotten (then 404)")


class BatchingInfo(BaseModel):
    model_calls: int = Field(description="policy calls for session steps since start-up")
    episode_steps: int = Field(description="session steps answered by those calls")
    multi_episode_calls: int = Field(description="calls that served more than one episode")
    largest_batch: int = Field(description="most episodes served by one call")
    max_batch_size: int
    max_wait_ms: float = Field(description="how long a step waits for others to join its call")


class PolicyResponse(BaseModel):
    architecture: str = Field(description="decision_mamba, decision_transformer, ...")
    mode: str = Field(description="recurrent (O(1) per step) or window (re-reads context)")
    state_dim: int = Field(description="floats per observation")
    act_dim: int = Field(description="floats per action")
    action_low: list[float]
    action_high: list[float]
    target_return: float | None = Field(description="default return a session is conditioned on")
    reference_returns: dict[str, float] | None = Field(
        None, description="returns of reference policies on this environment (e.g. expert)"
    )
    env: str | None = None
    env_id: str | None = Field(None, description="the simulator the policy was trained for")
    env_kwargs: dict = Field(
        default_factory=dict, description="gymnasium.make keyword arguments, e.g. continuous"
    )
    max_history_steps: int = Field(description="longest stateless history accepted")
    sessions: SessionsInfo
    batching: BatchingInfo
    model_version: str
