"""Scores for saliency maps: ground-truth AUPRC / AUP / AUR (TimeX protocol) and faithfulness.

Paper: "Encoding Time-Series Explanations through Self-Supervised Model Behavior Consistency"
(TimeX), Queen et al., NeurIPS 2023, https://arxiv.org/abs/2306.02109.
Official implementation: https://github.com/mims-harvard/TimeX — ``ground_truth_xai_eval`` in
``txai/utils/evaluation.py``, called from ``experiments/evaluation/saliency_exp_synth.py``.

How the authors score one explanation (and so do we, in numpy, without scikit-learn):
- each sample's saliency is min-max normalized over all its (time, channel) cells,
  ``(s - min) / (max - min + 1e-9)``, so a constant map becomes all zeros;
- AUPRC is scikit-learn's ``average_precision_score`` of the flattened truth mask against the
  flattened normalized saliency: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score values
  taken as thresholds from the highest down (tied scores form one threshold);
- from ``precision_recall_curve`` (thresholds ascending, precision/recall one longer than the
  thresholds, ending in 1 and 0), ``AUR = auc(thresholds, recall[:-1])`` and
  ``AUP = auc(thresholds, precision[:-1])``: trapezoid areas under recall and precision as
  functions of the threshold (pinned scikit-learn 1.1.2 already keeps the full curve down to
  the lowest score, as today's releases do);
- SeqComb's class 0 has no ground truth and is dropped before scoring (``y != 0``);
- the per-sample scores are averaged and reported as ``mean +- np.std(v) / sqrt(len(v))``.

Where we differ, and why:
- samples whose truth mask is all zero are skipped and counted (scikit-learn would warn and
  return a meaningless AP of 0 or -0); the authors only drop the null class;
- with fewer than two distinct scores AUP = AUR = 0. The authors' repository calls ``auc``
  unguarded (scikit-learn raises for < 2 points); later forks of their code return 0.0;
- ``mean_and_stderr`` uses the sample standard deviation (ddof=1) by default; pass ``ddof=0``
  for the authors' exact error bars;
- truth masks must be binary: the authors cast with ``astype(int)``, which silently turns a
  soft mask value like 0.9 into 0.
- ``faithfulness`` (no ground truth needed) is ours: accuracy after removing the top-k% cells
  by attribution versus removing a random k%. TimeX's real-data check is a different occlusion
  experiment.

Axis glossary: N samples, T time steps, D channels, C classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "average_precision",
    "precision_recall_curve",
    "ground_truth_scores",
    "mean_and_stderr",
    "faithfulness",
    "score_attributions",
]

# The authors' normalization adds this to the range; it keeps AUP/AUR bit-comparable to theirs.
_NORM_EPS = 1e-9


def precision_recall_curve(
    truth: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's binary ``precision_recall_curve`` (``drop_intermediate=False``) in numpy.

    Returns (precision, recall, thresholds): thresholds are the distinct scores ascending;
    precision[i] / recall[i] describe predicting positive where ``score >= thresholds[i]``; the
    two curves carry one extra last point (1, 0) without a threshold.
    """
    truth = np.asarray(truth).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(scores, kind="mergesort")[::-1]  # descending, as scikit-learn
    scores, truth = scores[order], truth[order]
    # the last index of each run of tied scores: ties enter the prediction together
    distinct = np.flatnonzero(np.diff(scores))
    last = np.r_[distinct, scores.size - 1]
    tps = np.cumsum(truth)[last].astype(np.float64)
    fps = (last + 1) - tps
    precision = tps / (tps + fps)  # tps + fps >= 1 at every threshold
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return (
        np.r_[precision[::-1], 1.0],
        np.r_[recall[::-1], 0.0],
        scores[last][::-1],
    )


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score``: ``sum_n (R_n - R_{n-1}) P_n``, no interpolation."""
    precision, recall, _ = precision_recall_curve(truth, scores)
    # recall decreases along the returned curve, hence the minus sign
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _normalize(saliency: np.ndarray) -> np.ndarray:
    """Per-sample min-max over all (T, D) cells, as the authors' ``normalize_exp``."""
    flat = saliency.reshape(saliency.shape[0], -1)
    low = flat.min(axis=1, keepdims=True)
    high = flat.max(axis=1, keepdims=True)
    return ((flat - low) / (high - low + _NORM_EPS)).reshape(saliency.shape)


def ground_truth_scores(
    saliency: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray | None = None,
    null_class: int | None = None,
) -> dict[str, Any]:
    """AUPRC, AUP and AUR of saliency maps against ground-truth masks, per sample, then averaged.

    saliency, truth: (N, T, D); truth binary (0/1 or bool). labels (N,) with ``null_class``
    drops the samples of a class that has no ground truth (SeqComb's class 0); samples whose
    truth mask is all zero are skipped as well and counted in ``num_skipped``.
    Returns ``{"auprc", "aup", "aur"}`` means (NaN when nothing was scored), ``per_sample``
    arrays of the scored samples with their original ``index``, ``num_scored`` and
    ``num_skipped`` (null-class samples are dropped, not counted as skipped).
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    truth = np.asarray(truth)
    if saliency.ndim != 3 or saliency.shape != truth.shape:
        raise ValueError(
            f"saliency and truth must both be (N, T, D); got {saliency.shape} and {truth.shape}"
        )
    if not np.all((truth == 0) | (truth == 1)):
        raise ValueError("truth must be a binary mask (values 0/1 or bool)")
    if not np.all(np.isfinite(saliency)):
        raise ValueError("saliency contains non-finite values")
    keep = np.ones(saliency.shape[0], dtype=bool)
    if null_class is not None:
        if labels is None:
            raise ValueError("null_class needs labels to know which samples to drop")
        labels = np.asarray(labels).ravel()
        if labels.shape[0] != saliency.shape[0]:
            raise ValueError(
                f"labels has {labels.shape[0]} entries for {saliency.shape[0]} samples"
            )
        keep &= labels != null_class
    index = np.flatnonzero(keep)
    has_truth = truth[index].reshape(len(index), -1).any(axis=1)
    num_skipped = int((~has_truth).sum())
    index = index[has_truth]

    normalized = _normalize(saliency[index]) if len(index) else saliency[index]
    auprc, aup, aur = (np.zeros(len(index)) for _ in range(3))
    for row, (scores, mask) in enumerate(zip(normalized, truth[index], strict=True)):
        precision, recall, thresholds = precision_recall_curve(mask, scores)
        auprc[row] = float(-np.sum(np.diff(recall) * precision[:-1]))
        if len(thresholds) >= 2:
            # the authors pair each threshold with precision[:-1] / recall[:-1]: the extra
            # last point (1, 0) has no threshold
            aup[row] = _trapezoid(thresholds, precision[:-1])
            aur[row] = _trapezoid(thresholds, recall[:-1])

    def _mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    return {
        "auprc": _mean(auprc),
        "aup": _mean(aup),
        "aur": _mean(aur),
        "per_sample": {"index": index, "auprc": auprc, "aup": aup, "aur": aur},
        "num_scored": len(index),
        "num_skipped": num_skipped,
    }


def mean_and_stderr(values: Sequence[float] | np.ndarray, ddof: int = 1) -> tuple[float, float]:
    """Mean and standard error ``std(ddof) / sqrt(n)``; the error is 0 for a single value.

    The TimeX authors print ``np.std(v) / np.sqrt(len(v))`` (ddof=0) over the per-sample scores
    of all five splits pooled; pass ``ddof=0`` to reproduce their error bars exactly.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_and_stderr needs at least one value")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=ddof) / np.sqrt(values.size))


def _replace_cells(X: np.ndarray, cells: np.ndarray, fill_values: np.ndarray) -> np.ndarray:
    """Copy of X (N, T, D) with the flat (T*D) cell ids ``cells`` (N, k) set to ``fill_values``."""
    N, T, D = X.shape
    out = X.reshape(N, T * D).copy()
    fill = fill_values.reshape(N, T * D)
    rows = np.arange(N)[:, None]
    out[rows, cells] = fill[rows, cells]
    return out.reshape(N, T, D)


def faithfulness(
    predict_fn: Callable[[np.ndarray], Any],
    X: np.ndarray,
    y: np.ndarray,
    attributions: np.ndarray,
    fractions: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
    fill: str = "mean",
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy drop when the top-k% attributed cells are removed, against a random k%.

    X, attributions: (N, T, D); y: (N,) class ids; ``predict_fn(X') -> (N,)`` class ids.
    For each fraction k the ``ceil(k * T * D)`` cells with the highest attribution of each sample
    (rank by signed value: pass ``np.abs(a)`` to rank by magnitude) are replaced by ``fill``:
    ``"mean"`` = that sample's per-channel mean over time, ``"zero"`` = 0. The same number of
    cells chosen uniformly at random (seeded) gives the reference. A faithful attribution makes
    ``drop_top`` larger than ``drop_random``; ``faithfulness_gap`` is the mean of
    ``drop_top - drop_random`` over the fractions.
    """
    X = np.asarray(X)
    attributions = np.asarray(attributions, dtype=np.float64)
    y = np.asarray(y).ravel()
    if X.ndim != 3 or X.shape != attributions.shape:
        raise ValueError(
            f"X and attributions must both be (N, T, D); got {X.shape} and {attributions.shape}"
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} samples")
    if fill not in ("mean", "zero"):
        raise ValueError(f"fill must be 'mean' or 'zero', got {fill!r}")
    N, T, D = X.shape
    if fill == "mean":
        fill_values = np.broadcast_to(X.mean(axis=1, keepdims=True), X.shape)  # (N, T, D)
    else:
        fill_values = np.zeros_like(X)

    def accuracy(inputs: np.ndarray) -> float:
        predicted = np.asarray(predict_fn(inputs)).ravel()
        return float(np.mean(predicted == y))

    base = accuracy(X)
    # stable descending order: ties fall to the earlier cell, so results are reproducible
    ranking = np.argsort(-attributions.reshape(N, T * D), axis=1, kind="stable")  # (N, T*D)
    rng = np.random.default_rng(seed)
    per_fraction: dict[float, dict[str, float]] = {}
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {fraction}")
        k = min(T * D, max(1, int(np.ceil(fraction * T * D - 1e-9))))
        top = ranking[:, :k]  # (N, k)
        random = np.argsort(rng.random((N, T * D)), axis=1)[:, :k]  # (N, k)
        acc_top = accuracy(_replace_cells(X, top, fill_values))
        acc_random = accuracy(_replace_cells(X, random, fill_values))
        per_fraction[float(fraction)] = {
            "num_cells": k,
            "accuracy_top": acc_top,
            "accuracy_random": acc_random,
            "drop_top": base - acc_top,
            "drop_random": base - acc_random,
        }
    gaps = [v["drop_top"] - v["drop_random"] for v in per_fraction.values()]
    return {
        "accuracy": base,
        "per_fraction": per_fraction,
        "faithfulness_gap": float(np.mean(gaps)) if gaps else float("nan"),
    }


def score_attributions(
    attributions: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    truth: np.ndarray | None,
    predict_fn: Callable[[np.ndarray], Any],
    null_class: int | None = None,
) -> dict[str, float]:
    """The one score of an explanation: AUPRC / AUP / AUR against ``truth`` where the data has
    one (synthetic sets), else the faithfulness gap of ``predict_fn`` (real sets)."""
    if truth is not None:
        s = ground_truth_scores(attributions, truth, labels=y, null_class=null_class)
        return {key: float(s[key]) for key in ("auprc", "aup", "aur")}
    return {
        "faithfulness_gap": float(faithfulness(predict_fn, X, y, attributions)["faithfulness_gap"])
    }
