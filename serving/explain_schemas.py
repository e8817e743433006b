"""Request and response bodies of the explanation routes (``/explain``, ``/explain/...``).

A request names the family (``tsclassifier`` or ``behavegpt``), for time-series classifiers the
model (its dataset, e.g. ``freqshapes``), and the method: ``timex`` where a TimeX explainer is
registered for that classifier, or one of the Captum methods. Everything that can be checked
without running a model is checked here, while BentoML parses the body, so the answer is 400 with
``loc`` naming the field and the message listing the valid choices: an unknown family, model or
method; series of the wrong length or width; NaN/inf values; an unknown target class; a history
for a time-series model or series for BehaveGPT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.schemas import Event, _raise_if

__all__ = [
    "CAPTUM_METHODS",
    "FAMILIES",
    "MAX_SERIES",
    "ExplainableModel",
    "use_explainable",
    "explainable",
    "ExplainInput",
    "Explanation",
    "ExplainResponse",
    "LandmarksResponse",
    "ExplainModelsResponse",
]

# the methods of behave.explain.attributions.CAPTUM_METHODS (a test keeps the two equal; the
# service's schemas import no torch)
CAPTUM_METHODS = (
    "integrated_gradients",
    "deeplift",
    "saliency",
    "input_x_gradient",
    "occlusion",
    "feature_ablation",
)
FAMILIES = ("tsclassifier", "behavegpt")
MAX_SERIES = 64  # series explained by one request (IG with 50 steps is 50 forward+backward each)
MAX_IG_STEPS = 300


@dataclass
class ExplainableModel:
    """What the service loaded for one explainable model (set at start-up)."""

    family: str
    methods: tuple[str, ...]
    seq_len: int | None = None  # time-series classifiers only
    channels: int | None = None
    class_names: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why it is not served


_models: dict[str, ExplainableModel] = {}


def use_explainable(models: dict[str, ExplainableModel]) -> None:
    """The service's explainable models, keyed by model name (a dataset, or ``behavegpt``)."""
    _models.clear()
    _models.update(models)


def explainable() -> dict[str, ExplainableModel]:
    return dict(_models)


def _fail(loc: tuple, kind: str, message: str) -> None:
    """A 400 whose ``loc`` names the field (raised from the model validator)."""
    _raise_if([(loc, kind, message)])


class ExplainInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str = Field(description="tsclassifier or behavegpt", examples=["tsclassifier"])
    model: str | None = Field(
        None,
        description="tsclassifier: the dataset its classifier was trained on (GET /explain/models "
        "lists them); null: the only one loaded",
        examples=["freqshapes"],
    )
    method: str = Field(
        description="timex (where a TimeX explainer is registered for the model) or a Captum "
        f"method: {', '.join(CAPTUM_METHODS)}",
        examples=["timex"],
    )
    inputs: list[list[list[float]]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SERIES,
        description="tsclassifier: series to explain, each T time steps x D channels",
    )
    history: list[Event] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="behavegpt: past events, oldest first; the next behavior is explained",
    )
    target: int | str | None = Field(
        None,
        description="the class (tsclassifier: index or name; behavegpt: behavior name) whose "
        "score is attributed; null: the predicted one",
    )
    n_steps: int = Field(50, ge=1, le=MAX_IG_STEPS, description="integrated_gradients steps")
    plot: bool = Field(False, description="also return a PNG heatmap per explanation (base64)")

    @model_validator(mode="after")
    def _check(self) -> ExplainInput:
        if self.family not in FAMILIES:
            _fail(
                ("family",),
                "unknown_family",
                f"unknown family '{self.family}'; valid choices: {', '.join(FAMILIES)}",
            )
        if self.family == "behavegpt":
            self._check_behavegpt()
        else:
            self._check_series()
        return self

    def _check_methods(self, name: str, entry: ExplainableModel | None) -> None:
        valid = entry.methods if entry is not None else (*CAPTUM_METHODS,)
        if self.method in valid:
            return
        reason = (entry.unavailable.get(self.method) if entry is not None else None) or ""
        _fail(
            ("method",),
            "unknown_method",
            f"'{self.method}' is not available for {name}{f' ({reason})' if reason else ''}; "
            f"valid choices: {', '.join(valid)}",
        )

    def _check_behavegpt(self) -> None:
        if self.inputs is not None or self.model is not None:
            _fail(
                ("inputs" if self.inputs is not None else "model",),
                "wrong_input",
                "behavegpt explains a `history` of events; leave out `inputs` and `model`",
            )
        if self.history is None:
            _fail(("history",), "missing_history", "send the past events to explain")
        self._check_methods("behavegpt", _models.get("behavegpt"))

    def _check_series(self) -> None:
        loaded = {k: m for k, m in _models.items() if m.family == "tsclassifier"}
        if self.history is not None:
            _fail(
                ("history",),
                "wrong_input",
                "tsclassifier explains `inputs` (series); leave out `history`",
            )
        if self.model is None and len(loaded) == 1:
            self.model = next(iter(loaded))
        if self.model is None or (loaded and self.model not in loaded):
            what = (
                "name the classifier's dataset" if self.model is None else f"unknown '{self.model}'"
            )
            _fail(
                ("model",),
                "unknown_model",
                f"{what}; valid choices: {', '.join(sorted(loaded)) or '(none loaded)'}",
            )
        entry = loaded.get(self.model)
        self._check_methods(f"tsclassifier {self.model}", entry)
        if self.inputs is None:
            _fail(("inputs",), "missing_inputs", "send the series to explain (T x D values each)")
        if entry is None:  # nothing loaded: the route answers 503
            return
        for i, series in enumerate(self.inputs):
            if len(series) != entry.seq_len:
                _fail(
                    ("inputs", i),
                    "wrong_length",
                    f"{len(series)} time steps; this model reads {entry.seq_len}",
                )
            for t, row in enumerate(series):
                if len(row) != entry.channels:
                    _fail(
                        ("inputs", i, t),
                        "wrong_width",
                        f"{len(row)} channels; this model reads {entry.channels}",
                    )
                if not all(math.isfinite(v) for v in row):
                    _fail(("inputs", i, t), "not_finite", "values must be finite (no NaN/inf)")
        if self.target is not None:
            names = entry.class_names
            ok = (isinstance(self.target, int) and 0 <= self.target < len(names)) or (
                isinstance(self.target, str) and self.target in names
            )
            if not ok:
                _fail(
                    ("target",),
                    "unknown_target",
                    f"unknown class '{self.target}'; valid: indices 0..{len(names) - 1} or "
                    f"names {', '.join(names)}",
                )


class Explanation(BaseModel):
    prediction: str = Field(description="the class (or next behavior) the model predicts")
    probability: float = Field(description="its probability")
    target: str = Field(description="the class whose score is attributed")
    attributions: list[list[float]] = Field(
        description="T x D per time step and channel (behavegpt: events x features)"
    )
    mask: list[list[int]] | None = Field(None, description="timex: the binary explanation mask")
    landmark: int | None = Field(None, description="timex: the nearest landmark's id")
    landmark_similarity: float | None = None
    png_base64: str | None = Field(None, description="heatmap of the attributions (plot: true)")


class ExplainResponse(BaseModel):
    family: str
    model: str
    method: str
    features: list[str] = Field(description="names of the attribution columns")
    explanations: list[Explanation]
    seconds: float = Field(description="wall-clock of the explanation itself")
    model_version: str
    explainer_version: str | None = Field(None, description="timex: the explainer's version")


class LandmarkInfo(BaseModel):
    landmark: int
    count: int = Field(description="test explanations nearest to it at training time")
    classes: dict[str, int]
    kept_share: float = Field(description="mean share of cells its explanations keep")


class LandmarksResponse(BaseModel):
    model: str
    explainer_version: str
    explains_version: str
    landmarks: list[LandmarkInfo]


class ExplainModelsResponse(BaseModel):
    models: dict[str, dict]
