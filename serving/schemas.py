"""Request and response shapes of the behave service (pydantic; no torch, no training code).

Everything a client can get wrong is rejected here, during BentoML's request parsing, so it
becomes HTTP 400 with a ``detail`` list whose ``loc`` names the field (e.g.
``["requests", 0, "history", 3, "behavior"]``) — and, for the batchable ``/next_behavior``
route, before the request joins an adaptive batch, so a bad request never fails its neighbours.
Checks that depend on the loaded model (known behavior names, ``top_k`` of ``/generate``) read
the vocabulary the service registers with :func:`use_vocabulary` at start-up.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

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
]

# Histories longer than this are refused (400); longer than the model's context, truncated.
MAX_HISTORY_EVENTS = 10_000
MAX_REQUESTS_PER_CALL = 64  # = the route's max_batch_size
MAX_TOP_K = 100
MAX_GENERATE_STEPS = 256
MAX_TEMPERATURE = 5.0

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
