"""Request and response bodies of the Neuroformer routes (``/neural/...``).

Spike lists are checked while BentoML parses the body, so a bad list is answered 400 with the
field's location (e.g. ``["spikes", 3, "time"]``) and the reason: an empty list, a negative or
non-finite time, a neuron id the model does not know, spikes not sorted by time, or more
spikes / stimulus rows / seconds than the limits below.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_SPIKES",
    "MAX_GENERATE_S",
    "MAX_RECORDING_S",
    "use_neural_model",
    "SpikeEvent",
    "DecodeInput",
    "DecodedWindow",
    "DecodeResponse",
    "GenerateInput",
    "GenerateResponse",
    "ConnectivityResponse",
]

MAX_SPIKES = 50_000  # one request's events
MAX_GENERATE_S = 5.0  # generation is sequential: about a second of compute per simulated second
MAX_STIMULUS_ROWS = 10_000
# decoding runs one forward per 50 ms window of the whole span: a lone spike at t = 5,000 s
# asked for 100,000 windows and ran past the service's timeout (found by the fuzz test)
MAX_RECORDING_S = 60.0

# neurons / stimulus channels of the loaded model (None: no model loaded, skip those checks)
_num_neurons: int | None = None
_stimulus_channels: int | None = None


def use_neural_model(num_neurons: int | None, stimulus_channels: int | None = None) -> None:
    """Check /neural requests against this model (None: no model loaded)."""
    global _num_neurons, _stimulus_channels
    _num_neurons, _stimulus_channels = num_neurons, stimulus_channels


class SpikeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    neuron: int = Field(ge=0, description="neuron id, 0..N-1 (GET /neural/connectivity: N)")
    time: float = Field(ge=0, allow_inf_nan=False, description="spike time in seconds, >= 0")


def _check_spikes(spikes: list[SpikeEvent]) -> None:
    if not spikes:
        raise PydanticCustomError(
            "empty_spikes", "no spikes: send at least one {neuron, time} event", {}
        )
    prev = -math.inf
    for i, s in enumerate(spikes):
        if _num_neurons is not None and s.neuron >= _num_neurons:
            raise PydanticCustomError(
                "unknown_neuron",
                "spikes[{i}].neuron: unknown neuron id {n}; this model knows ids 0..{last}",
                {"i": i, "n": s.neuron, "last": _num_neurons - 1},
            )
        if s.time > MAX_RECORDING_S:
            raise PydanticCustomError(
                "recording_too_long",
                "spikes[{i}].time: {t} s is past the {m} s one request may span; "
                "send longer recordings in pieces of at most {m} s",
                {"i": i, "t": s.time, "m": f"{MAX_RECORDING_S:g}"},
            )
        if s.time < prev:
            raise PydanticCustomError(
                "unsorted_spikes",
                "spikes[{i}].time: spikes must be sorted by time ({t} s comes after {p} s); "
                "sort them by time",
                {"i": i, "t": s.time, "p": prev},
            )
        prev = s.time


def _check_stimulus(stimulus: list[list[float]] | None) -> None:
    if stimulus is None or _stimulus_channels is None:
        return
    if _stimulus_channels == 0:
        raise PydanticCustomError(
            "no_stimulus", "stimulus: this model was trained without a stimulus; leave it out", {}
        )
    for i, row in enumerate(stimulus):
        if len(row) != _stimulus_channels:
            raise PydanticCustomError(
                "stimulus_shape",
                "stimulus[{i}]: expected {c} channels per bin, got {n}",
                {"i": i, "c": _stimulus_channels, "n": len(row)},
            )
        if not all(math.isfinite(v) for v in row):
            raise PydanticCustomError(
                "stimulus_value", "stimulus[{i}]: values must be finite numbers", {"i": i}
            )


class _SpikesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spikes: list[SpikeEvent] = Field(
        max_length=MAX_SPIKES, description="spike events sorted by time"
    )
    stimulus: list[list[float]] | None = Field(
        default=None,
        max_length=MAX_STIMULUS_ROWS,
        description="optional stimulus, one row of channels per 10 ms bin from time 0",
    )

    @field_validator("spikes")
    @classmethod
    def _valid_spikes(cls, spikes):
        _check_spikes(spikes)
        return spikes

    @field_validator("stimulus")
    @classmethod
    def _valid_stimulus(cls, stimulus):
        _check_stimulus(stimulus)
        return stimulus


class DecodeInput(_SpikesInput):
    """Spike events of a recording (>= the model's previous + current window, 200 ms)."""


class DecodedWindow(BaseModel):
    start_s: float
    end_s: float
    value: float = Field(description="decoded behavior, in the training data's units")


class DecodeResponse(BaseModel):
    behavior: str | None = Field(description="the decoded variable (e.g. running_speed)")
    windows: list[DecodedWindow]
    model_version: str


class GenerateInput(_SpikesInput):
    """Context spikes (the last 150 ms are read) -> spikes generated after them. Stimulus rows
    start at the context window's start (the last spike's bin minus the previous window)."""

    duration_s: float = Field(
        default=0.5,
        ge=0.01,
        le=MAX_GENERATE_S,
        description="seconds to generate (one 10 ms bin at least)",
    )
    seed: int = Field(default=0, ge=0, description="same seed, same spikes")
    # inclusive bounds only: BentoML's spec is OpenAPI 3.0, where exclusive ones are booleans
    temperature: float = Field(default=1.0, ge=0.01, le=10)
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0.001, le=1)


class GenerateResponse(BaseModel):
    spikes: list[SpikeEvent]
    start_s: float
    end_s: float
    model_version: str


class ConnectivityResponse(BaseModel):
    num_neurons: int
    matrix: list[list[float]] = Field(
        description=(
            "connection strength from source (row) to target (column): the coupling readout's "
            "|attention score| x kernel norm (log-odds change per source spike, summed over "
            "heads); a model kept with a cross-attention map gives averaged attention, 1 = uniform"
        )
    )
    top_edges: list[dict] = Field(description="the strongest source -> target pairs")
    model_version: str
