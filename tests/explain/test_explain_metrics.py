"""Hand-checked cases for the TimeX ground-truth scores and the faithfulness check."""

from __future__ import annotations

import numpy as np
import pytest

from behave.explain.metrics import (
    average_precision,
    faithfulness,
    ground_truth_scores,
    mean_and_stderr,
    precision_recall_curve,
)


def _one(values, truth):
    """One sample, one channel: (1, T, 1) arrays."""
    return (
        np.asarray(values, dtype=float).reshape(1, -1, 1),
        np.asarray(truth, dtype=float).reshape(1, -1, 1),
    )


def test_perfect_saliency_scores_one():
    saliency, truth = _one([0.1, 0.9, 0.8, 0.0, 0.2], [0, 1, 1, 0, 0])
    out = ground_truth_scores(saliency, truth)
    assert out["auprc"] == pytest.approx(1.0)
    assert out["num_scored"] == 1 and out["num_skipped"] == 0


def test_reversed_saliency_known_value():
    # normalized [0, 1/3, 2/3, 1] against truth [1, 1, 0, 0]: the positives come last.
    # Thresholds high -> low: 1 (P=0, R=0), 2/3 (P=0, R=0), 1/3 (P=1/3, R=1/2), 0 (P=1/2, R=1)
    # AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12
    saliency, truth = _one([0, 1, 2, 3], [1, 1, 0, 0])
    assert ground_truth_scores(saliency, truth)["auprc"] == pytest.approx(5 / 12)


def test_ties_enter_together():
    # scores [1, 1, 0, 0], truth [1, 0, 1, 0]: threshold 1 predicts two cells (P=1/2, R=1/2),
    # threshold 0 predicts all (P=1/2, R=1): AP = 1/2, whatever order the tied cells had.
    saliency, truth = _one([1, 1, 0, 0], [1, 0, 1, 0])
    out = ground_truth_scores(saliency, truth)
    assert out["auprc"] == pytest.approx(0.5)
    assert out["aup"] == pytest.approx(0.5, abs=1e-6)  # precision 1/2 on thresholds [0, 1]
    assert out["aur"] == pytest.approx(0.75, abs=1e-6)  # recall 1 -> 1/2 on [0, 1]
    swapped, swapped_truth = _one([1, 1, 0, 0], [0, 1, 0, 1])
    assert ground_truth_scores(swapped, swapped_truth)["auprc"] == pytest.approx(0.5)


def test_constant_saliency_scores_prevalence_and_zero_areas():
    saliency, truth = _one([3.0, 3.0, 3.0, 3.0], [1, 0, 0, 0])
    out = ground_truth_scores(saliency, truth)
    assert out["auprc"] == pytest.approx(0.25)  # one threshold: everything predicted
    assert out["aup"] == 0.0 and out["aur"] == 0.0  # fewer than two thresholds


def test_aup_aur_by_hand_on_four_cells():
    # scikit-learn's documentation example: scores [0.1, 0.4, 0.35, 0.8], truth [0, 0, 1, 1].
    # Normalized: [0, 3/7, 5/14, 1]. Ascending thresholds with (precision, recall):
    # 0 (1/2, 1), 5/14 (2/3, 1), 3/7 (1/2, 1/2), 1 (1, 1/2).
    saliency, truth = _one([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    out = ground_truth_scores(saliency, truth)
    aup = (1 / 2 + 2 / 3) / 2 * 5 / 14 + (2 / 3 + 1 / 2) / 2 * 1 / 14 + (1 / 2 + 1) / 2 * 4 / 7
    aur = 1 * 5 / 14 + (1 + 1 / 2) / 2 * 1 / 14 + 1 / 2 * 4 / 7
    assert aup == pytest.approx(19 / 28) and aur == pytest.approx(39 / 56)
    assert out["aup"] == pytest.approx(aup, abs=1e-6)
    assert out["aur"] == pytest.approx(aur, abs=1e-6)
    assert out["auprc"] == pytest.approx(5 / 6)  # 1/2 * 1 + 1/2 * 2/3


def test_curve_matches_sklearn_documentation_example():
    precision, recall, thresholds = precision_recall_curve(
        np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    )
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(thresholds, [0.1, 0.35, 0.4, 0.8])


def test_null_class_dropped_and_empty_truth_skipped():
    rng = np.random.default_rng(0)
    saliency = rng.random((5, 6, 2))
    truth = np.zeros((5, 6, 2))
    truth[1, :2, 0] = 1
    truth[2, 3:, 1] = 1
    truth[4, 0, 0] = 1
    # sample 3 has an all-zero mask; samples 0 and 4 are class 0
    labels = np.array([0, 1, 2, 1, 0])
    out = ground_truth_scores(saliency, truth, labels=labels, null_class=0)
    assert out["num_scored"] == 2 and out["num_skipped"] == 1
    np.testing.assert_array_equal(out["per_sample"]["index"], [1, 2])
    # without a null class only the empty mask (and sample 0's empty mask) are skipped
    everything = ground_truth_scores(saliency, truth)
    assert everything["num_scored"] == 3 and everything["num_skipped"] == 2
    np.testing.assert_array_equal(everything["per_sample"]["index"], [1, 2, 4])
    assert everything["per_sample"]["auprc"][:2] == pytest.approx(out["per_sample"]["auprc"])
    with pytest.raises(ValueError, match="labels"):
        ground_truth_scores(saliency, truth, null_class=0)


def test_rejects_soft_truth_and_shape_mismatch():
    with pytest.raises(ValueError, match="binary"):
        ground_truth_scores(np.zeros((1, 3, 1)), np.full((1, 3, 1), 0.5))
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        ground_truth_scores(np.zeros((1, 3, 1)), np.zeros((1, 4, 1)))


def test_average_precision_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        truth = rng.random(n) < 0.3
        truth[rng.integers(n)] = True
        # rounding makes plenty of ties
        scores = np.round(rng.random(n), int(rng.integers(1, 3)))
        assert average_precision(truth, scores) == pytest.approx(
            metrics.average_precision_score(truth, scores)
        )
        ours = precision_recall_curve(truth, scores)
        theirs = metrics.precision_recall_curve(truth, scores)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b)


def test_scores_match_the_authors_recipe_with_sklearn():
    """The TimeX recipe written with scikit-learn, as in their ``ground_truth_xai_eval``."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    saliency = rng.normal(size=(8, 20, 3))
    truth = (rng.random((8, 20, 3)) < 0.2).astype(int)
    truth[:, 0, 0] = 1
    out = ground_truth_scores(saliency, truth)
    for i in range(8):
        s = saliency[i]
        s = (s - s.min()) / (s.max() - s.min() + 1e-9)
        precision, recall, thresholds = metrics.precision_recall_curve(truth[i].ravel(), s.ravel())
        assert out["per_sample"]["auprc"][i] == pytest.approx(
            metrics.average_precision_score(truth[i].ravel(), s.ravel())
        )
        assert out["per_sample"]["aup"][i] == pytest.approx(metrics.auc(thresholds, precision[:-1]))
        assert out["per_sample"]["aur"][i] == pytest.approx(metrics.auc(thresholds, recall[:-1]))


def test_mean_and_stderr():
    assert mean_and_stderr([2.0]) == (2.0, 0.0)
    mean, stderr = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert stderr == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_and_stderr([1.0, 3.0], ddof=0)[1] == pytest.approx(1 / np.sqrt(2))


def test_faithfulness_prefers_the_decisive_cell():
    rng = np.random.default_rng(0)
    N, T, D = 200, 10, 2
    X = rng.normal(size=(N, T, D))
    X[:, 3, 1] = rng.choice([-3.0, 3.0], size=N)  # the one decisive cell, far from the mean

    def predict(inputs: np.ndarray) -> np.ndarray:
        return (inputs[:, 3, 1] > 1.5).astype(int)

    y = predict(X)
    good = np.zeros((N, T, D))
    good[:, 3, 1] = 1.0
    out = faithfulness(predict, X, y, good, fractions=(0.05, 0.1), fill="zero")
    assert out["accuracy"] == 1.0
    for stats in out["per_fraction"].values():
        assert stats["num_cells"] in (1, 2)
        assert stats["drop_top"] == pytest.approx(y.mean())  # every class-1 sample flips
        assert stats["drop_random"] < stats["drop_top"]
    assert out["faithfulness_gap"] > 0.3
    # an attribution that points anywhere else scores no better than random
    bad = np.zeros((N, T, D))
    bad[:, 0, 0] = 1.0
    worse = faithfulness(predict, X, y, bad, fractions=(0.05,), fill="mean")
    assert worse["per_fraction"][0.05]["drop_top"] == 0.0
    assert worse["faithfulness_gap"] <= 0.0
    # seeded: the same call gives the same random reference
    again = faithfulness(predict, X, y, bad, fractions=(0.05,), fill="mean")
    assert again == worse
