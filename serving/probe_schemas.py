"""Request and response bodies of ``POST /probe`` and ``GET /probe/models``.

A probe (``behave surgery`` trains and registers one as ``behave.probe.<model>.<behavior>``)
scores how likely a history's *next* event is to be in a behavior family, so a product can flag
an input before the model acts on it. The probe name is checked here, against the probes the
service loaded, so a wrong one is a 400 naming the field and the valid names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.schemas import History, _raise_if

__all__ = ["use_probes", "ProbeInput", "ProbeResponse", "ProbeInfo", "ProbeModelsResponse"]

_loaded: frozenset[str] = frozenset()


def use_probes(names) -> None:
    """The probe names requests may use (the loaded probes)."""
    global _loaded
    _loaded = frozenset(names)


class ProbeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probe: str | None = Field(
        None,
        description="probe name, e.g. behavegpt.risky (GET /probe/models lists them); "
        "null: the only one loaded",
        examples=["behavegpt.risky"],
    )
    history: History

    @model_validator(mode="after")
    def _known_probe(self) -> ProbeInput:
        valid = ", ".join(sorted(_loaded)) or "(none loaded)"
        if self.probe is None and len(_loaded) > 1:
            _raise_if(
                [(("probe",), "probe_required", f"several probes are loaded; name one of: {valid}")]
            )
        if self.probe is not None and _loaded and self.probe not in _loaded:
            _raise_if(
                [(("probe",), "unknown_probe", f"unknown probe {self.probe!r}; valid: {valid}")]
            )
        return self


class ProbeResponse(BaseModel):
    probe: str = Field(description="the probe that scored the history")
    score: float = Field(description="probability that the next event is in the behavior family")
    flagged: bool = Field(description="score >= threshold")
    threshold: float
    label: str = Field(description="what the probe detects")
    events_used: int
    truncated: bool
    probe_version: str = Field(description="registry version of behave.probe.<name> (or 'local')")
    reads_version: str = Field(description="the model version whose hidden states it reads")


class ProbeInfo(BaseModel):
    label: str
    layer: int
    auroc: float | None = Field(description="held-out AUROC at training time")
    probe_version: str
    reads_model: str
    reads_version: str
    threshold: float


class ProbeModelsResponse(BaseModel):
    probes: dict[str, ProbeInfo]
