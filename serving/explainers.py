"""The models the service explains, loaded at start-up, and the one function per request.

- every ``behave.tsclassifier.<dataset>@champion`` in the registry (or the local bundle named
  by ``BEHAVE_TSCLASSIFIER_BUNDLE``): Captum methods; plus ``timex`` when
  ``behave.timex.<dataset>@champion`` (or ``BEHAVE_TIMEX_BUNDLE``) explains that very version
  (its ``explains`` names it); otherwise ``timex`` is listed as unavailable with the reason;
- the BehaveGPT predictor the service already serves: Captum methods over its events' fields.

No training code: :mod:`behave.inference` and :mod:`behave.explain` only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.explain_schemas import CAPTUM_METHODS, ExplainableModel, ExplainInput

__all__ = ["LoadedClassifier", "load_classifiers", "explain_series", "explain_history"]

log = logging.getLogger("behave.serving")

# Captum registers hooks on the model (DeepLift) and switches it to eval mode and back: one
# explanation at a time per process (BentoML runs sync routes on a thread pool)
_CAPTUM_LOCK = threading.Lock()

CLASSIFIER_BUNDLE_ENV = "BEHAVE_TSCLASSIFIER_BUNDLE"
TIMEX_BUNDLE_ENV = "BEHAVE_TIMEX_BUNDLE"


@dataclass
class LoadedClassifier:
    runner: object  # behave.inference.timeseries.ClassifierRunner
    version: str
    timex: object | None = None  # TimeXRunner
    timex_version: str | None = None
    timex_unavailable: str | None = None

    def entry(self) -> ExplainableModel:
        methods = (*CAPTUM_METHODS, "timex") if self.timex is not None else CAPTUM_METHODS
        return ExplainableModel(
            family="tsclassifier",
            methods=tuple(methods),
            seq_len=self.runner.seq_len,
            channels=self.runner.channels,
            class_names=list(self.runner.class_names),
            unavailable={} if self.timex is not None else {"timex": self.timex_unavailable or ""},
        )


def _local(bundle_env: str) -> Path | None:
    path = os.environ.get(bundle_env)
    return Path(path) if path else None


def load_classifiers(device: str) -> dict[str, LoadedClassifier]:
    """Dataset -> its classifier (+ TimeX) from local bundles or the registry's champions.
    A model that fails to load is logged and skipped; the others still serve."""
    from behave.inference.timeseries import load_classifier, load_timex

    found: dict[str, tuple[Path, str]] = {}
    local = _local(CLASSIFIER_BUNDLE_ENV)
    if local is not None:
        meta = json.loads((local / "config.json").read_text())
        found[meta["dataset"]] = (local, "local")
    else:
        from behave import tracking

        try:
            families = tracking.families_with_prefix("tsclassifier")
        except Exception as err:  # an unreachable registry must not take the other families down
            log.error("cannot list time-series classifiers in the registry: %s", err)
            families = []
        for family in families:
            dataset = family.split(".", 1)[1]
            try:
                version = tracking.get_version(family, "champion")
                path = tracking.resolve_model_dir(f"models:/behave.{family}/{version.version}")
            except (LookupError, FileNotFoundError) as err:
                log.warning("tsclassifier %s not served: %s", dataset, err)
                continue
            found[dataset] = (path, str(version.version))
    loaded = {}
    for dataset, (path, version) in found.items():
        try:
            runner = load_classifier(path, device)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            log.error("tsclassifier %s (version %s) refused at load: %s", dataset, version, err)
            continue
        item = LoadedClassifier(runner, version)
        _attach_timex(item, dataset, device, load_timex)
        loaded[dataset] = item
        log.info(
            "tsclassifier %s version %s on %s: %d x %d series, %d classes; timex: %s",
            dataset,
            version,
            device,
            runner.seq_len,
            runner.channels,
            runner.num_classes,
            f"version {item.timex_version}" if item.timex else item.timex_unavailable,
        )
    return loaded


def _attach_timex(item: LoadedClassifier, dataset: str, device: str, load_timex) -> None:
    local = _local(TIMEX_BUNDLE_ENV)
    try:
        if local is not None:
            path, version = local, "local"
        else:
            from behave import tracking

            v = tracking.get_version(f"timex.{dataset}", "champion")
            path, version = (
                tracking.resolve_model_dir(f"models:/behave.timex.{dataset}/{v.version}"),
                str(v.version),
            )
    except LookupError as err:
        item.timex_unavailable = f"no TimeX explainer registered: {err}"
        return
    try:
        timex = load_timex(path, device)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        item.timex_unavailable = f"TimeX version {version} refused at load: {err}"
        log.error("%s", item.timex_unavailable)
        return
    explains = str(timex.meta.get("explains", {}).get("version", ""))
    if item.version != "local" and version != "local" and explains != item.version:
        item.timex_unavailable = (
            f"behave.timex.{dataset}@champion (version {version}) explains classifier version "
            f"{explains or '?'}, but version {item.version} is served; retrain it with "
            f"`behave fit --config pipelines/timex-{dataset}.yaml`"
        )
        log.warning("%s", item.timex_unavailable)
        return
    item.timex, item.timex_version = timex, version


def _heatmap(values: np.ndarray, inputs: np.ndarray, title: str) -> str:
    from behave.explain.attributions import attribution_heatmap, figure_png_base64

    return figure_png_base64(attribution_heatmap(values, inputs, title))


def explain_series(item: LoadedClassifier, request: ExplainInput) -> dict:
    """Attributions of each series: TimeX (one forward pass) or a Captum method."""
    runner = item.runner
    names = list(runner.class_names)
    target = request.target
    if isinstance(target, str):
        target = names.index(target)
    if request.method == "timex":
        result = item.timex.explain(request.inputs)
        probs = result["probabilities"]
        targets = probs.argmax(-1)
    else:
        options = {"n_steps": request.n_steps} if request.method == "integrated_gradients" else {}
        with _CAPTUM_LOCK:
            result = runner.explain(request.inputs, request.method, target, **options)
        probs, targets = result["probabilities"], result["target"]
    x = np.asarray(request.inputs, dtype=np.float32)
    explanations = []
    for i, values in enumerate(result["attributions"]):
        predicted = int(probs[i].argmax())
        one = {
            "prediction": names[predicted],
            "probability": round(float(probs[i, predicted]), 6),
            "target": names[int(targets[i])],
            "attributions": np.round(values, 6).tolist(),
        }
        if request.method == "timex":
            one.update(
                mask=result["mask"][i].tolist(),
                landmark=int(result["landmark"][i]),
                landmark_similarity=round(float(result["landmark_similarity"][i]), 6),
            )
        if request.plot:
            one["png_base64"] = _heatmap(values, x[i], f"{request.method}: {names[predicted]}")
        explanations.append(one)
    return {
        "features": [f"channel_{d}" for d in range(runner.channels)],
        "explanations": explanations,
        "seconds": result["seconds"],
        "explainer_version": item.timex_version if request.method == "timex" else None,
    }


def explain_history(predictor, request: ExplainInput) -> dict:
    """Attributions of BehaveGPT's next-behavior score to each event's fields."""
    from behave.explain.attributions import EVENT_FEATURES
    from behave.inference.behavegpt import HistoryEvent

    history = request.history[-predictor.context_length :]
    events = [HistoryEvent(e.behavior, e.timestamp, e.location, e.domain) for e in history]
    start = time.perf_counter()
    with _CAPTUM_LOCK:
        result = predictor.explain(events, request.method, request.target, n_steps=request.n_steps)
    seconds = time.perf_counter() - start
    values = result["attributions"]  # (L, F)
    one = {
        "prediction": result["prediction"],
        "probability": round(float(result["probability"]), 6),
        "target": result["target"],
        "attributions": np.round(values, 6).tolist(),
    }
    if request.plot:
        one["png_base64"] = _heatmap(
            values, np.zeros_like(values), f"{request.method}: next behavior"
        )
    return {
        "features": list(EVENT_FEATURES),
        "explanations": [one],
        "seconds": seconds,
        "explainer_version": None,
    }
