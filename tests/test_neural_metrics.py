"""Spike metrics and baselines on hand-made cases: ranking metrics against hand-computed values,
connectivity recovery on a simulated Bernoulli GLM, decoders, PSTH correlation, next-window
spike scores."""

from __future__ import annotations

import numpy as np
import pytest

from behave.neural_metrics import (
    _history_features,
    auroc,
    average_precision,
    connectivity_recovery,
    cross_correlation_connectivity,
    fit_glm_decoder,
    fit_ridge_decoder,
    glm_coupling,
    next_spike_scores,
    psth,
    psth_correlation,
    r2_score,
)


def test_auroc_and_average_precision_by_hand():
    labels = np.array([1, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    # positive-negative pairs won: 0.9 -> 2, 0.8 -> 2, 0.6 -> 1 (beats 0.2) of 3 * 2
    assert auroc(labels, scores) == pytest.approx(5 / 6)
    # thresholds: (P, R) = (1, 1/3), (1, 2/3), (2/3, 2/3), (3/4, 1), (3/5, 1)
    assert average_precision(labels, scores) == pytest.approx(1 / 3 + 1 / 3 + 1 / 3 * 3 / 4)


def test_ranking_metrics_perfect_inverted_and_ties():
    labels = np.array([1, 1, 0, 0])
    assert auroc(labels, [0.4, 0.3, 0.2, 0.1]) == 1.0
    assert average_precision(labels, [0.4, 0.3, 0.2, 0.1]) == 1.0
    assert auroc(labels, [0.1, 0.2, 0.3, 0.4]) == 0.0
    # inverted: positives found at ranks 3 and 4 -> (1/2) * 1/3 + (1/2) * 2/4
    assert average_precision(labels, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(5 / 12)
    # a tie between a positive and a negative counts one half
    assert auroc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.1]) == pytest.approx(0.75)
    # tied items enter together: one threshold with 2 of 3 correct, recall 1
    assert average_precision([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
    assert auroc(labels, np.ones(4)) == 0.5
    assert average_precision(labels, np.ones(4)) == 0.5  # the prevalence
    assert np.isnan(auroc([1, 1], [0.1, 0.2])) and np.isnan(average_precision([0, 0], [1, 2]))


def test_connectivity_recovery_ignores_the_diagonal():
    adjacency = np.zeros((4, 4), dtype=bool)
    adjacency[0, 1] = adjacency[2, 3] = True
    scores = adjacency.astype(float) + np.eye(4) * 10  # self-history weights would top the list
    m = connectivity_recovery(scores, adjacency)
    assert m["auroc"] == 1.0 and m["auprc"] == 1.0
    assert m["auprc_chance"] == pytest.approx(2 / 12)


def simulate_hub(num_trials=60, num_bins=200, seed=0, inhibit=0.0):
    """12 neurons; neuron 0 drives 1..4 one bin later (logit +3), and with ``inhibit`` < 0
    neuron 5 suppresses 6..9 by that much; a condition-locked stimulus modulates everyone
    (which is not connectivity)."""
    rng = np.random.default_rng(seed)
    num_neurons = 12
    weight = np.zeros((num_neurons, num_neurons))
    weight[0, 1:5] = 3.0
    weight[5, 6:10] = inhibit
    conditions = rng.integers(0, 2, num_trials)
    stimulus = np.stack([np.sin(np.linspace(0, 2 * np.pi, num_bins)) * s for s in (1, -1)])
    gain = rng.normal(0, 1, num_neurons)
    counts = np.zeros((num_trials, num_bins, num_neurons), dtype=np.uint8)
    for t in range(num_bins):
        eta = -2.5 + gain * stimulus[conditions, t][:, None]  # (K, N)
        if t > 0:
            eta = eta + counts[:, t - 1] @ weight
        counts[:, t] = rng.random(eta.shape) < 1 / (1 + np.exp(-eta))
    return counts, weight != 0, conditions


def test_cross_correlation_by_absolute_value_finds_inhibition_too():
    counts, adjacency, conditions = simulate_hub(num_trials=80, inhibit=-3.0)
    positive = cross_correlation_connectivity(counts, max_lag=2, conditions=conditions)
    absolute = cross_correlation_connectivity(counts, 2, conditions=conditions, sign="abs")
    assert np.all(absolute >= positive - 1e-6)
    assert positive[5, 6:10].max() < 0.02 < absolute[5, 6:10].min()  # inhibition: only |corr|
    assert connectivity_recovery(absolute, adjacency)["auroc"] > 0.95
    assert connectivity_recovery(positive, adjacency)["auroc"] < 0.9
    with pytest.raises(ValueError, match="sign must be"):
        cross_correlation_connectivity(counts, sign="negative")


def test_cross_correlation_and_glm_recover_a_hub():
    counts, adjacency, conditions = simulate_hub()
    xcorr = cross_correlation_connectivity(counts, max_lag=2, conditions=conditions)
    glm = glm_coupling(counts, lags=2, conditions=conditions, max_iter=30)
    assert xcorr.shape == glm.shape == (12, 12)
    for scores in (xcorr, glm):
        m = connectivity_recovery(scores, adjacency)
        assert m["auroc"] > 0.9 and m["auprc"] > 0.5
    assert glm[0, 1:5].min() > 1.5  # close to the true logit weight 3 per spike
    positive = glm_coupling(counts, lags=1, max_iter=20)
    absolute = glm_coupling(counts, lags=1, sign="abs", max_iter=20)
    assert np.all(absolute >= positive - 1e-6) and absolute.min() >= 0


def test_history_features_are_causal():
    counts = np.arange(1, 5, dtype=np.uint8).reshape(1, 4, 1)  # one neuron: 1, 2, 3, 4
    features = _history_features(counts, history_bins=2, smooth_bins=0)
    np.testing.assert_array_equal(features[0], [[1, 0], [2, 1], [3, 2], [4, 3]])
    smoothed = _history_features(counts, history_bins=1, smooth_bins=2)
    np.testing.assert_allclose(smoothed[0, :, 0], [1, 1.5, 2.5, 3.5])


def test_decoders_recover_behavior_and_r2_baselines():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (40, 100, 15)).astype(np.uint8)
    beta = rng.normal(0, 1, 15)
    behavior = counts @ beta  # (K, T)
    behavior[:, 1:] += 0.5 * counts[:, :-1] @ beta
    behavior += rng.normal(0, 0.3, behavior.shape)
    train, test = slice(0, 30), slice(30, None)
    ridge = fit_ridge_decoder(counts[train], behavior[train], history_bins=3)
    prediction = ridge.predict(counts[test])
    assert prediction.shape == behavior[test].shape
    assert r2_score(behavior[test], prediction) > 0.8
    assert r2_score(behavior, np.full_like(behavior, behavior.mean())) == pytest.approx(0.0)
    assert r2_score(behavior, np.full_like(behavior, behavior.mean() + 5)) < 0
    speed = np.exp(0.3 * counts @ beta)  # a non-negative behavior, exponential in the counts
    glm = fit_glm_decoder(counts[train], speed[train], history_bins=1, l2=(1e-3, 1e-2))
    assert glm.link == "log" and glm.offset == 0.0
    assert r2_score(speed[test], glm.predict(counts[test])) > 0.8


def test_psth_by_condition_and_smoothing():
    counts = np.zeros((3, 4, 1), dtype=np.uint8)
    counts[0, 1] = 2
    counts[2, 2] = 4
    out = psth(counts, conditions=np.array([5, 7, 5]), smooth_bins=0)
    assert out.shape == (2, 4, 1)  # conditions in sorted order: 5, 7
    np.testing.assert_allclose(out[:, :, 0], [[0, 1, 2, 0], [0, 0, 0, 0]])
    smooth = psth(counts, smooth_bins=1.0, bin_s=0.01)
    assert smooth.sum() < out.sum() * 100 * 2 and np.all(smooth[0, :, 0] > 0)
    flat = psth(np.ones((2, 6, 1), dtype=np.uint8), smooth_bins=2)
    np.testing.assert_allclose(flat, 1.0)  # renormalized at the trial edges


def test_psth_correlation_identical_vs_shuffled_in_time():
    rng = np.random.default_rng(0)
    bins = np.arange(100)
    rates = 0.5 + 0.4 * np.sin(2 * np.pi * bins[:, None] / 50 + rng.uniform(0, 6, 20))  # (T, N)
    real = rng.poisson(rates, (30, 100, 20)).astype(np.uint8)
    same = psth_correlation(real, real)
    assert same["population"] == pytest.approx(1.0)
    assert same["per_neuron_mean"] == pytest.approx(1.0) and same["neurons_scored"] == 20
    shuffled = psth_correlation(real, real[:, rng.permutation(100)])
    assert shuffled["per_neuron_mean"] < 0.3 and shuffled["population"] < 0.5
    fresh = rng.poisson(rates, (30, 100, 20)).astype(np.uint8)
    assert psth_correlation(real, fresh)["per_neuron_mean"] > 0.8
    conditions = np.repeat([0, 1], 15)
    m = psth_correlation(real, real[:15], conditions, np.zeros(15, dtype=int))
    assert m["population"] == pytest.approx(1.0)  # condition 1 is absent from generated data
    silent = psth_correlation(real, np.zeros_like(real))
    assert silent["per_neuron_mean"] == 0.0 and np.isnan(silent["population"])


def test_next_spike_scores_on_multisets():
    predicted = [[1, 2, 2], [3]]
    true = [[2, 2, 2, 4], []]
    # window 1: neuron 2 matches twice (min(2, 3)); window 2: one spurious prediction
    micro = next_spike_scores(predicted, true)
    assert micro == pytest.approx({"precision": 2 / 4, "recall": 2 / 4, "f1": 0.5})
    macro = next_spike_scores(predicted, true, average="macro")
    # window 1: P = 2/3, R = 1/2, F1 = 4/7; window 2: P = 0, R = 0 (claimed spikes, none true)
    assert macro == pytest.approx({"precision": 1 / 3, "recall": 1 / 4, "f1": 2 / 7})
    assert next_spike_scores([[]], [[]]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert next_spike_scores([np.array([5, 6])], [(6, 5)])["f1"] == 1.0
    with pytest.raises(ValueError):
        next_spike_scores([[1]], [])
