"""Request and response bodies of ``POST /trajectory/forecast`` (Graph-LSTM).

Validation happens while BentoML parses the body, so a bad scene is answered 400 with the
field's location (e.g. ``["scenes", 0, "agents", 2, "track"]``) before it joins a batch:
a track shorter than the model observes, a non-finite coordinate, a repeated ``agent_id``
within a scene, an empty scene, or more scenes / agents / points than the limits below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_SCENES_PER_CALL",
    "MAX_AGENTS_PER_SCENE",
    "MAX_TRACK_POINTS",
    "use_forecaster",
    "AgentTrack",
    "Scene",
    "ForecastInput",
    "AgentForecast",
    "SceneForecast",
    "ForecasterInfo",
]

MAX_SCENES_PER_CALL = 32  # = the route's max_batch_size
MAX_AGENTS_PER_SCENE = 128  # the graph is N x N per frame
MAX_TRACK_POINTS = 1_000  # only the last observe_s seconds are read

# positions the loaded forecaster observes (None: no forecaster loaded, skip the check)
_observe_steps: int | None = None
_observe_hint = ""


def use_forecaster(observe_steps: int | None, hz: float | None = None) -> None:
    """Check /trajectory/forecast requests against this model (None: no model loaded)."""
    global _observe_steps, _observe_hint
    _observe_steps = observe_steps
    _observe_hint = f"{observe_steps / hz:g} s at {hz:g} Hz" if observe_steps and hz else ""


def _long_enough(track: list) -> list:
    if _observe_steps is not None and len(track) < _observe_steps:
        raise PydanticCustomError(
            "track_too_short",
            "a track needs at least {need} positions ({hint}): {got} given; send the agent's "
            "last positions, oldest first (see GET /trajectory/model)",
            {"need": _observe_steps, "hint": _observe_hint, "got": len(track)},
        )
    return track


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]  # NaN / Infinity -> 400
Position = tuple[FiniteFloat, FiniteFloat]


class AgentTrack(BaseModel):
    agent_id: str = Field(min_length=1, max_length=128, description="unique within its scene")
    track: Annotated[
        list[Position],
        Field(min_length=2, max_length=MAX_TRACK_POINTS),
        AfterValidator(_long_enough),
    ] = Field(description="[[x, y], ...] in metres at the model's rate, oldest first, last = now")


class Scene(BaseModel):
    agents: list[AgentTrack] = Field(
        min_length=1, max_length=MAX_AGENTS_PER_SCENE, description="every agent of the scene"
    )

    @model_validator(mode="after")
    def _unique_agents(self):
        first: dict[str, int] = {}
        for i, agent in enumerate(self.agents):
            if agent.agent_id in first:
                raise PydanticCustomError(
                    "duplicate_agent_id",
                    "agents[{i}].agent_id {agent_id!r} repeats agents[{j}]; give each agent of "
                    "a scene its own id",
                    {"i": i, "j": first[agent.agent_id], "agent_id": agent.agent_id},
                )
            first[agent.agent_id] = i
        return self


class ForecastInput(BaseModel):
    """Body of ``POST /trajectory/forecast``: scenes, answered by one forecast per scene."""

    model_config = ConfigDict(title="Input")  # the name BentoML's 400 bodies show

    scenes: list[Scene] = Field(
        min_length=1,
        max_length=MAX_SCENES_PER_CALL,
        description="one or more scenes; concurrent calls are batched together",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_scene(cls, data):
        if isinstance(data, dict) and "scenes" not in data and "agents" in data:
            raise PydanticCustomError(
                "missing_scenes",
                '/trajectory/forecast takes a list of scenes: send {"scenes": [{"agents": '
                "[...]}]}; the answer is a list with one forecast per scene",
            )
        return data


class AgentForecast(BaseModel):
    agent_id: str
    times_s: list[float] = Field(description="seconds ahead of the last observed position")
    positions: list[list[float]] = Field(description="predicted mean [x, y] (m) at each time")
    sigma: list[list[float]] = Field(description="standard deviations [σx, σy] (m)")
    correlation: list[float] = Field(description="correlation ρ of x and y errors")
    behavior: str = Field(description="most likely behavior over the horizon")
    behavior_probabilities: dict[str, float]


class SceneForecast(BaseModel):
    agents: list[AgentForecast] = Field(description="in the order of the request's agents")
    model_version: str = Field(description="registry version of behave.graph_lstm (or 'local')")


class ForecasterInfo(BaseModel):
    observe_steps: int = Field(description="positions per track the model reads")
    predict_steps: int
    hz: float = Field(description="frames per second of tracks and forecasts")
    behaviors: list[str]
    behavior_rule: dict = Field(description="how the training labels were defined")
    model_version: str
