"""``behave explain score``: explanations of a registered classifier, scored on a data folder.

Every method explains the same series (the classifier's predicted class): TimeX (a registered
``behave.timex.<dataset>`` or bundle folder) in one forward pass, Captum methods through
:func:`behave.explain.attributions.attribute`. Where the data has a ground truth (synthetic sets)
the scores are AUPRC / AUP / AUR as the TimeX authors compute them; on real sets, the
faithfulness gap. Wall-clock per explained series is measured for each method alone.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np

from behave.errors import ConfigError

__all__ = ["score_explainers", "format_scores"]


def _bundle(uri: str) -> Path:
    from behave import tracking

    return tracking.resolve_model_dir(uri)


def score_explainers(
    model: str,
    data_dir: Path,
    methods: list[str],
    explainer: str | None = None,
    split: str = "test",
    samples: int | None = None,
    device: str = "cpu",
) -> dict:
    """{method: {auprc, aup, aur | faithfulness_gap, seconds_per_series}} plus the facts."""
    from behave.data.timeseries import load_timeseries
    from behave.explain.attributions import CAPTUM_METHODS
    from behave.explain.metrics import score_attributions
    from behave.inference.timeseries import load_classifier, load_timex, predict_classes

    unknown = sorted(set(methods) - {*CAPTUM_METHODS, "timex"})
    if unknown:
        raise ConfigError(
            f"--methods: unknown {unknown}; choose from timex, {', '.join(CAPTUM_METHODS)}"
        )
    data = load_timeseries(Path(data_dir))
    if split not in data.splits:
        raise ConfigError(
            f"--split: {split!r} is not a split of {data_dir}; use train, val or test"
        )
    x, y, truth = data.splits[split]
    if samples:
        x, y = x[:samples], y[:samples]
        truth = None if truth is None else truth[:samples]
    classifier = load_classifier(_bundle(model), device)
    if (classifier.seq_len, classifier.channels) != tuple(x.shape[1:]):
        raise ConfigError(
            f"{model} reads {classifier.seq_len} x {classifier.channels} series; {data_dir} has "
            f"{x.shape[1]} x {x.shape[2]}"
        )
    timex = None
    if "timex" in methods:
        if explainer is None:
            raise ConfigError(
                "--explainer: name the TimeX explainer to score (e.g. "
                f"models:/behave.timex.{data.name}@champion), or leave timex out of --methods"
            )
        timex = load_timex(_bundle(explainer), device)
        explains = timex.meta.get("explains") or {}
        if str(model).startswith("models:/") and explains.get("version"):
            from behave import tracking

            name, version = tracking.model_version_of(model)
            if (name, version) != (explains.get("name"), str(explains["version"])):
                raise ConfigError(
                    f"--explainer explains {explains.get('name')} version {explains['version']}, "
                    f"not {name} version {version}: score it with --model "
                    f"models:/{explains.get('name')}/{explains['version']}, or retrain TimeX "
                    f"against this version"
                )
    probs = classifier.predict_proba(x)
    predicted = probs.argmax(-1)
    results: dict[str, dict] = {}
    for method in methods:
        start = time.perf_counter()
        if method == "timex":
            values = np.concatenate(
                [timex.explain(x[i : i + 256])["attributions"] for i in range(0, len(x), 256)]
            )
        else:
            values = np.concatenate(
                [
                    classifier.explain(x[i : i + 64], method, predicted[i : i + 64])["attributions"]
                    for i in range(0, len(x), 64)
                ]
            )
        seconds = (time.perf_counter() - start) / max(len(x), 1)
        predict = partial(predict_classes, classifier.model)
        results[method] = score_attributions(values, x, y, truth, predict, data.null_class)
        results[method]["seconds_per_series"] = seconds
    return {
        "model": model,
        "explainer": explainer,
        "data_dir": str(data_dir),
        "split": split,
        "series": int(len(y)),
        "accuracy": float((predicted == y).mean()),
        "scores": results,
    }


def format_scores(report: dict) -> str:
    """The report as a table (one row per method)."""
    first = next(iter(report["scores"].values()))
    metrics = [k for k in first if k != "seconds_per_series"]
    lines = [
        f"{report['model']} on {report['series']} {report['split']} series of "
        f"{report['data_dir']} (accuracy {report['accuracy']:.3f})",
        f"{'method':<22}" + "".join(f"{m:>18}" for m in metrics) + f"{'ms / series':>14}",
    ]
    for method, row in report["scores"].items():
        cells = "".join(f"{row[m]:>18.4f}" for m in metrics)
        lines.append(f"{method:<22}{cells}{1000 * row['seconds_per_series']:>14.3f}")
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
