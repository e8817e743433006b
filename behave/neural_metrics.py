"""Spike-model metrics and baselines for the Neuroformer family (pure numpy / torch, CPU).

Neuroformer: Antoniades et al., "Neuroformer: Multimodal and Multitask Generative Pretraining
for Brain Data", ICLR 2024 (https://arxiv.org/abs/2311.00136); official code:
https://github.com/a-antoniades/Neuroformer. Inputs are numpy arrays in the spikes data
contract: binned counts ``(trials, bins, neurons)`` (uint8, 10 ms bins), behavior
``(trials, bins)``, adjacency ``(neurons, neurons)`` bool indexed ``[source, target]``.

How each number is computed:
- ``auroc``: Mann-Whitney U / (n_pos * n_neg) with tied scores given their average rank (a tie
  between a positive and a negative counts one half). NaN when a class is missing.
- ``average_precision``: scikit-learn's step-wise AP, sum_k (R_k - R_{k-1}) * P_k over the
  distinct score thresholds in decreasing order (no interpolation). NaN without positives.
- ``connectivity_recovery``: both of the above over the off-diagonal entries of an (N, N)
  score matrix against the true adjacency; ``auprc_chance`` = share of true edges among them.
- ``cross_correlation_connectivity``: shift-predictor-corrected lagged correlation (below).
- ``glm_coupling``: coupling weights of a multi-output Bernoulli GLM (below).
- decoders: ridge on spike-count history (closed form, alpha by k-fold over trials) and a
  Poisson-family GLM with log link; ``r2_score`` = 1 - SS_res / SS_tot over all bins pooled.
- ``psth`` / ``psth_correlation``: trial-averaged, Gaussian-smoothed rates and Pearson
  correlations of generated vs real PSTHs (population and per neuron).
- ``next_spike_scores``: multiset precision / recall / F1 of predicted neuron ids per window.

Axis letters in shape comments: K trials, T bins, N neurons, C covariates or conditions,
L lags, M rows (trial-bins used for fitting), P features.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "auroc",
    "average_precision",
    "connectivity_recovery",
    "cross_correlation_connectivity",
    "glm_coupling",
    "LinearDecoder",
    "fit_ridge_decoder",
    "fit_glm_decoder",
    "r2_score",
    "psth",
    "psth_correlation",
    "next_spike_scores",
]


# --------------------------------------------------------------------------- ranking metrics
def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` with ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    _, first, count = np.unique(values[order], return_index=True, return_counts=True)
    group_rank = first + (count + 1) / 2.0  # mean of ranks first+1 .. first+count
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, count)
    return ranks


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > that of a random negative),
    ties counting 1/2: (sum of the positives' average ranks - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg). NaN when there are no positives or no negatives."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in size")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = _average_ranks(scores)[labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: sort by decreasing score, take every
    distinct score as a threshold (tied items enter together), and sum (R_k - R_{k-1}) * P_k,
    where P_k and R_k are precision and recall at the k-th threshold and R_0 = 0. NaN when there
    are no positives."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in size")
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def connectivity_recovery(scores: np.ndarray, adjacency: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC (= ``average_precision``) of an (N, N) ``[source, target]`` score matrix
    against the true boolean adjacency, over the N (N - 1) off-diagonal pairs (self-history is
    not a connection). ``auprc_chance`` is the AUPRC of random scores: the edge density."""
    scores, adjacency = np.asarray(scores), np.asarray(adjacency).astype(bool)
    if scores.shape != adjacency.shape or scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"need two (N, N) matrices, got {scores.shape} and {adjacency.shape}")
    off = ~np.eye(len(scores), dtype=bool)
    labels, values = adjacency[off], scores[off]
    return {
        "auroc": auroc(labels, values),
        "auprc": average_precision(labels, values),
        "auprc_chance": float(labels.mean()),
    }


# ------------------------------------------------------------------ connectivity baselines
def cross_correlation_connectivity(
    counts: np.ndarray,
    max_lag: int = 3,
    correction: str = "psth",
    conditions: np.ndarray | None = None,
    sign: str = "positive",
) -> np.ndarray:
    """Connectivity scores (N, N) ``[source, target]`` from lagged cross-correlation.

    Each neuron's counts x_n[k, t] become residuals r_n[k, t]:
    - ``correction="psth"`` (default, the shift-predictor correction): subtract the neuron's
      trial-averaged PSTH at that bin (averaged over the trials of the same condition when
      ``conditions`` (K,) is given), then each trial's mean residual. Subtracting the PSTH
      equals subtracting the all-trial-pairs shift predictor up to a 1/K term, so rate changes
      locked to the trial (stimulus) do not count as coupling. Needs K >= 2 trials.
    - ``correction="trial_mean"``: subtract only each trial's mean (plain z-scored
      correlation within trials; keeps stimulus-locked co-modulation).
    For each lag l in 1..max_lag, with all trial-bins (k, t) where t + l is in the trial,
        c_l[s, n] = mean_{k,t} (r_s[k,t] - m_s)(r_n[k,t+l] - m_n) / (sd_s sd_n),
    the Pearson correlation of the source's past with the target's future (means and sds over
    those same bins; a silent neuron has sd 0 and scores 0). The score is max_l c_l[s, n] for
    ``sign="positive"`` (excitatory influence at any of the lags; inhibition scores low) or
    max_l |c_l[s, n]| for ``sign="abs"`` (influence of either sign). One (N, N) matrix product
    per lag.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise ValueError(f"counts must be (trials, bins, neurons), got {counts.shape}")
    num_trials, num_bins, num_neurons = counts.shape
    if not 1 <= max_lag < num_bins:
        raise ValueError(f"max_lag must be in 1..{num_bins - 1}, got {max_lag}")
    if sign not in ("positive", "abs"):
        raise ValueError(f"sign must be 'positive' or 'abs', got {sign!r}")
    x = counts.astype(np.float32)  # (K, T, N)
    if correction == "psth":
        if num_trials < 2:
            raise ValueError("correction='psth' needs at least 2 trials; use 'trial_mean'")
        x = x - _condition_psth(x, conditions)
    elif correction != "trial_mean":
        raise ValueError(f"correction must be 'psth' or 'trial_mean', got {correction!r}")
    x = x - x.mean(axis=1, keepdims=True)
    best = np.full((num_neurons, num_neurons), -np.inf)
    for lag in range(1, max_lag + 1):
        past = x[:, :-lag].reshape(-1, num_neurons)  # (M, N) sources at t
        future = x[:, lag:].reshape(-1, num_neurons)  # (M, N) targets at t + l
        past = past - past.mean(0)
        future = future - future.mean(0)
        sd_past, sd_future = past.std(0), future.std(0)  # (N,), (N,)
        cov = past.T @ future / len(past)  # (N, N) [source, target]
        denom = np.outer(sd_past, sd_future)
        corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
        best = np.maximum(best, np.abs(corr) if sign == "abs" else corr)
    return best


def _condition_psth(x: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
    """(K, T, N) -> (K, T, N): each trial's row replaced by the mean over the trials of its
    condition (over all trials when ``conditions`` is None)."""
    if conditions is None:
        return x.mean(axis=0, keepdims=True)
    conditions = np.asarray(conditions)
    if conditions.shape != (len(x),):
        raise ValueError(f"conditions {conditions.shape} must be ({len(x)},)")
    out = np.empty_like(x)
    for c in np.unique(conditions):
        out[conditions == c] = x[conditions == c].mean(axis=0)
    return out


def _lagged_design(counts: np.ndarray, lags: int) -> np.ndarray:
    """(K, T, N) -> (K, T - lags, L*N): counts at t-1, ..., t-lags for bins t >= lags; feature
    index = (lag - 1) * N + source."""
    num_bins = counts.shape[1]
    blocks = [counts[:, lags - d : num_bins - d] for d in range(1, lags + 1)]
    return np.concatenate(blocks, axis=-1)


def _smooth_matrix(num_bins: int, sigma: float) -> np.ndarray:
    """(T, T) row-normalized Gaussian smoother (std ``sigma`` bins, cut at 4 sigma); rows are
    renormalized at the trial edges, so a constant stays constant. Identity when sigma <= 0."""
    if sigma <= 0:
        return np.eye(num_bins)
    t = np.arange(num_bins)
    dist = t[:, None] - t[None, :]
    kernel = np.exp(-0.5 * (dist / sigma) ** 2) * (np.abs(dist) <= 4 * sigma)
    return kernel / kernel.sum(1, keepdims=True)


def glm_coupling(
    counts: np.ndarray,
    covariates: np.ndarray | None = None,
    lags: int = 3,
    l2: float = 1e-3,
    max_iter: int = 100,
    sign: str = "positive",
    psth_covariate: bool = True,
    psth_smooth_bins: float = 2.0,
    conditions: np.ndarray | None = None,
) -> np.ndarray:
    """Coupling scores (N, N) ``[source, target]`` of a fitted Bernoulli GLM.

    One multi-output logistic regression, all targets at once: for every trial-bin (k, t) with
    t >= lags, target n's spike indicator y = [x_n[k, t] > 0] has
        logit P(y = 1) = b_n + sum_{s, l=1..lags} W[l, s, n] x_s[k, t - l]
                         + sum_c V[c, n] u_c[k, t] + g_n * h_n[k, t],
    over the counts of all neurons (self-history included) at lags 1..lags, the covariates u
    (e.g. stimulus channels) at bin t, and, when ``psth_covariate``, h_n = logit of target n's
    leave-this-trial-out PSTH of spike indicators over the other trials of the same condition
    (``conditions`` (K,); all trials when None or when a condition has one trial;
    Gaussian-smoothed, std ``psth_smooth_bins``), which absorbs trial-locked rate changes the covariates miss (the GLM analogue of the
    shift-predictor correction). Inputs are standardized over the rows; the loss is the mean
    binary cross-entropy per target, summed over targets, + ``l2`` * (sum of squared
    standardized weights; biases free), minimized by full-batch L-BFGS (strong Wolfe, at most
    ``max_iter`` iterations, float32 on CPU).

    The weights are mapped back to logit change per spike (divided by the input's sd), and
    score[s, n] = max_l W[l, s, n] for ``sign="positive"`` (excitatory evidence: a strong
    negative weight scores low) or max_l |W[l, s, n]| for ``sign="abs"``. The diagonal holds the
    self-history weights.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise ValueError(f"counts must be (trials, bins, neurons), got {counts.shape}")
    if sign not in ("positive", "abs"):
        raise ValueError(f"sign must be 'positive' or 'abs', got {sign!r}")
    num_trials, num_bins, num_neurons = counts.shape
    if not 1 <= lags < num_bins:
        raise ValueError(f"lags must be in 1..{num_bins - 1}, got {lags}")
    x = counts.astype(np.float32)
    spiked = (counts > 0).astype(np.float32)  # (K, T, N)
    inputs = [_lagged_design(x, lags)]  # (K, T-L, L*N)
    if covariates is not None:
        covariates = np.asarray(covariates, dtype=np.float32)
        if covariates.shape[:2] != counts.shape[:2]:
            raise ValueError(f"covariates {covariates.shape} do not match counts {counts.shape}")
        inputs.append(covariates[:, lags:])
    design = np.concatenate(inputs, -1).reshape(num_trials * (num_bins - lags), -1)  # (M, P)
    target = spiked[:, lags:].reshape(-1, num_neurons)  # (M, N)

    mean, sd = design.mean(0), design.std(0)
    sd = np.where(sd > 0, sd, 1.0).astype(np.float32)
    X = torch.from_numpy((design - mean) / sd)  # (M, P)
    Y = torch.from_numpy(target)
    own = None
    if psth_covariate and num_trials >= 2:
        loo = (spiked.sum(0, keepdims=True) - spiked) / (num_trials - 1)  # (K, T, N)
        if conditions is not None:
            conditions = np.asarray(conditions)
            if conditions.shape != (num_trials,):
                raise ValueError(f"conditions {conditions.shape} must be ({num_trials},)")
            for c in np.unique(conditions):
                members = conditions == c
                if members.sum() >= 2:
                    total = spiked[members].sum(0, keepdims=True)
                    loo[members] = (total - spiked[members]) / (members.sum() - 1)
        loo = np.matmul(_smooth_matrix(num_bins, psth_smooth_bins).astype(np.float32), loo)
        loo = np.clip(loo, 1e-4, 1 - 1e-4)
        h = np.log(loo / (1 - loo))[:, lags:].reshape(-1, num_neurons)  # (M, N)
        h_sd = h.std(0)
        own = torch.from_numpy(((h - h.mean(0)) / np.where(h_sd > 0, h_sd, 1.0)).astype(np.float32))

    rate = target.mean(0).clip(1e-4, 1 - 1e-4)
    bias = torch.tensor(np.log(rate / (1 - rate)), dtype=torch.float32, requires_grad=True)
    weight = torch.zeros(X.shape[1], num_neurons, requires_grad=True)  # (P, N)
    gain = torch.zeros(num_neurons, requires_grad=True)  # (N,) on the own-PSTH input
    params = [weight, bias] + ([gain] if own is not None else [])
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        logits = X @ weight + bias  # (M, N)
        if own is not None:
            logits = logits + own * gain
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, Y, reduction="none"
        ).mean(0).sum() + l2 * (weight.square().sum() + gain.square().sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    coupling = weight.detach().numpy()[: lags * num_neurons] / sd[: lags * num_neurons, None]
    coupling = coupling.reshape(lags, num_neurons, num_neurons)  # (L, N source, N target)
    if sign == "abs":
        coupling = np.abs(coupling)
    return coupling.max(0).astype(np.float64)


# ------------------------------------------------------------------------ behavior decoders
def _history_features(counts: np.ndarray, history_bins: int, smooth_bins: int) -> np.ndarray:
    """(K, T, N) -> (K, T, H*N): counts of every neuron at bins t, t-1, ..., t-H+1 (zeros before
    the trial starts), feature index = h * N + neuron. With ``smooth_bins`` > 1 each count is
    first replaced by the mean over its last ``smooth_bins`` bins (causal box, no future)."""
    x = np.asarray(counts, dtype=np.float32)
    if smooth_bins > 1:
        cumulative = np.cumsum(x, axis=1)
        shifted = np.zeros_like(cumulative)
        shifted[:, smooth_bins:] = cumulative[:, :-smooth_bins]
        window = np.minimum(np.arange(1, x.shape[1] + 1), smooth_bins).astype(np.float32)
        x = (cumulative - shifted) / window[None, :, None]
    blocks = [x]
    for h in range(1, history_bins):
        past = np.zeros_like(x)
        past[:, h:] = x[:, :-h]
        blocks.append(past)
    return np.concatenate(blocks, axis=-1)


@dataclass
class LinearDecoder:
    """A fitted readout behavior[k, t] = f(features[k, t] . weights + intercept) with f the
    identity (``link="identity"``) or exp(.) + offset (``link="log"``); features are those of
    ``_history_features`` (raw units, the standardization folded into the weights)."""

    weights: np.ndarray  # (H*N,)
    intercept: float
    history_bins: int
    smooth_bins: int
    link: str = "identity"
    offset: float = 0.0
    alpha: float = 0.0  # the chosen regularization strength

    def predict(self, counts: np.ndarray) -> np.ndarray:
        """counts (K, T, N) -> predicted behavior (K, T) float64."""
        features = _history_features(counts, self.history_bins, self.smooth_bins)
        eta = features.astype(np.float64) @ self.weights + self.intercept  # (K, T)
        if self.link == "log":
            return np.exp(np.clip(eta, -50, 50)) + self.offset
        return eta


def _ridge_from_moments(
    moments: np.ndarray, xy: np.ndarray, alphas: Sequence[float]
) -> list[np.ndarray]:
    """Ridge fits from the augmented second moments A = Z^T Z, b = Z^T y (Z = [X, 1]): features
    standardized with the moments' own mean and sd, intercept unpenalized. Returns, per alpha,
    theta (P+1,) such that prediction = [x, 1] . theta in raw units."""
    n = moments[-1, -1]
    mean, y_mean = moments[:-1, -1] / n, xy[-1] / n
    centered = moments[:-1, :-1] - n * np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(centered) / n, 0, None))
    sd = np.where(sd > 1e-12, sd, 1.0)
    gram = centered / np.outer(sd, sd)
    cross = (xy[:-1] - n * mean * y_mean) / sd
    eigval, eigvec = np.linalg.eigh(gram)
    projected = eigvec.T @ cross
    thetas = []
    for alpha in alphas:
        w = eigvec @ (projected / (np.clip(eigval, 0, None) + alpha)) / sd
        thetas.append(np.r_[w, y_mean - mean @ w])
    return thetas


def _trial_folds(num_trials: int, folds: int | None, seed: int) -> list[np.ndarray]:
    """Trials split into ``folds`` groups at random (None or >= K: leave-one-trial-out)."""
    order = np.random.default_rng(seed).permutation(num_trials)
    folds = num_trials if folds is None else min(folds, num_trials)
    return [f for f in np.array_split(order, folds) if len(f)]


def fit_ridge_decoder(
    counts: np.ndarray,
    behavior: np.ndarray,
    history_bins: int = 5,
    alpha: float | Sequence[float] | None = None,
    smooth_bins: int = 0,
    folds: int | None = 5,
    seed: int = 0,
) -> LinearDecoder:
    """Closed-form ridge regression of behavior (K, T) on spike-count history.

    Features (``_history_features``): counts of all N neurons in the current bin and the
    ``history_bins - 1`` bins before it (H*N features, zero before the trial start), optionally
    causally box-smoothed over ``smooth_bins`` bins. Features are standardized (zero mean, unit
    variance over the training bins), the intercept is free, and the loss is
    sum (y - y_hat)^2 + alpha * |w|^2 on the standardized weights (so alpha compares with the
    number of training bins). ``alpha``: a number is used as is; a sequence (default
    logspace(-1, 7, 17)) is searched by k-fold cross-validation over whole trials (``folds``
    random groups of trials; None = leave-one-trial-out), picking the alpha with the least
    pooled held-out squared error; the final model is refitted on all trials. Everything is
    computed from per-fold second moments (float32 products of mean-shifted features,
    summed in float64 over folds), one pass over the data.
    """
    counts, behavior = np.asarray(counts), np.asarray(behavior, dtype=np.float64)
    if behavior.shape != counts.shape[:2]:
        raise ValueError(f"behavior {behavior.shape} does not match counts {counts.shape}")
    grid = np.logspace(-1, 7, 17) if alpha is None else np.atleast_1d(alpha).astype(float)
    if len(grid) > 1 and len(counts) < 2:
        raise ValueError("choosing alpha needs at least 2 trials; pass a single alpha")
    groups = _trial_folds(len(counts), folds, seed) if len(grid) > 1 else [np.arange(len(counts))]
    features = _history_features(counts, history_bins, smooth_bins)  # (K, T, P)
    # moments of features and behavior shifted by their overall means: float32 products stay
    # accurate (no large-mean cancellation) and the shift is undone on the final weights
    x_shift = features.mean((0, 1), dtype=np.float64).astype(np.float32)  # (P,)
    y_shift = float(behavior.mean())
    stats = []  # per fold: (A, b, y^T y) of z = [x - x_shift, 1] and y - y_shift
    for trials in groups:
        x = features[trials].reshape(-1, features.shape[-1]) - x_shift  # (M, P) float32
        y = behavior[trials].ravel() - y_shift  # (M,) float64
        moments = np.empty((x.shape[1] + 1,) * 2)
        moments[:-1, :-1] = x.T @ x
        moments[:-1, -1] = moments[-1, :-1] = x.sum(0, dtype=np.float64)
        moments[-1, -1] = len(x)
        xy = np.r_[x.T @ y.astype(np.float32), y.sum()]
        stats.append((moments, xy, y @ y))
    total_a = sum(s[0] for s in stats)
    total_b = sum(s[1] for s in stats)
    best = grid[0]
    if len(grid) > 1:
        errors = np.zeros(len(grid))
        for a_val, b_val, yy_val in stats:
            thetas = _ridge_from_moments(total_a - a_val, total_b - b_val, grid)
            for i, theta in enumerate(thetas):
                errors[i] += yy_val - 2 * theta @ b_val + theta @ a_val @ theta
        best = grid[int(np.argmin(errors))]
    theta = _ridge_from_moments(total_a, total_b, [best])[0]
    weights = theta[:-1]
    intercept = theta[-1] - x_shift.astype(np.float64) @ weights + y_shift
    return LinearDecoder(weights, float(intercept), history_bins, smooth_bins, alpha=float(best))


def fit_glm_decoder(
    counts: np.ndarray,
    behavior: np.ndarray,
    history_bins: int = 5,
    l2: float | Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
    smooth_bins: int = 0,
    validation_fraction: float = 0.2,
    max_iter: int = 100,
    seed: int = 0,
) -> LinearDecoder:
    """A Poisson-family GLM readout: behavior ~ exp(features . w + b) + offset.

    Same features as ``fit_ridge_decoder`` (standardized). The target is shifted to be
    non-negative (offset = min(behavior, 0), so running speed is used as is) and the Poisson
    quasi-likelihood mean(exp(eta) - y eta) + l2 * |w|^2 (standardized weights) is minimized
    by full-batch L-BFGS (float32, CPU). ``l2``: a number is used as is; a sequence is searched
    on a held-out ``validation_fraction`` of the trials (random, at least one), by squared error
    of the predictions, fitted from the strongest to the weakest penalty with warm starts; the
    final model is refitted on all trials with the chosen l2.
    """
    counts, behavior = np.asarray(counts), np.asarray(behavior, dtype=np.float64)
    if behavior.shape != counts.shape[:2]:
        raise ValueError(f"behavior {behavior.shape} does not match counts {counts.shape}")
    offset = min(float(behavior.min()), 0.0)
    features = _history_features(counts, history_bins, smooth_bins)  # (K, T, P)
    grid = sorted(np.atleast_1d(l2).astype(float), reverse=True)

    def fit(trials: np.ndarray, penalties: list[float], start=None):
        design = features[trials].reshape(-1, features.shape[-1])
        mean, sd = design.mean(0), design.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        X = torch.from_numpy(((design - mean) / sd).astype(np.float32))  # (M, P)
        y = torch.from_numpy((behavior[trials].ravel() - offset).astype(np.float32))  # (M,)
        w = torch.zeros(X.shape[1]) if start is None else start[0].clone()
        b = torch.tensor(math.log(max(float(y.mean()), 1e-6))) if start is None else start[1]
        w, b = w.requires_grad_(True), b.clone().requires_grad_(True)
        fits = []
        for penalty in penalties:
            optimizer = torch.optim.LBFGS(
                [w, b], max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
            )

            def closure(penalty=penalty, optimizer=optimizer):
                optimizer.zero_grad()
                eta = (X @ w + b).clamp(max=30)  # (M,)
                loss = (eta.exp() - y * eta).mean() + penalty * w.square().sum()
                loss.backward()
                return loss

            optimizer.step(closure)
            raw = w.detach().double().numpy() / sd
            fits.append((raw, float(b.detach()) - float(mean @ raw), penalty))
        return fits

    best = grid[0]
    if len(grid) > 1:
        if len(counts) < 2:
            raise ValueError("choosing l2 needs at least 2 trials; pass a single l2")
        order = np.random.default_rng(seed).permutation(len(counts))
        held = max(1, int(round(validation_fraction * len(counts))))
        held_out, train = order[:held], order[held:]
        errors = []
        for raw, intercept, _ in fit(train, grid):
            decoder = LinearDecoder(raw, intercept, history_bins, smooth_bins, "log", offset)
            errors.append(np.sum((decoder.predict(counts[held_out]) - behavior[held_out]) ** 2))
        best = grid[int(np.argmin(errors))]
    raw, intercept, _ = fit(np.arange(len(counts)), [best])[0]
    return LinearDecoder(raw, intercept, history_bins, smooth_bins, "log", offset, best)


def r2_score(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination over all entries pooled (all trials and bins):
    1 - sum (true - pred)^2 / sum (true - mean(true))^2. 0 for predicting the mean, negative
    when worse; NaN when ``true`` is constant."""
    true = np.asarray(true, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and pred {pred.shape} differ in size")
    total = np.sum((true - true.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((true - pred) ** 2) / total)


# ------------------------------------------------------------------------------------ PSTH
def psth(
    counts: np.ndarray,
    conditions: np.ndarray | None = None,
    smooth_bins: float = 5,
    bin_s: float | None = None,
) -> np.ndarray:
    """Peri-stimulus time histograms (C, T, N): the mean count over the trials of each
    condition (conditions in ``np.unique`` order; one condition when None), smoothed along bins
    by a Gaussian of std ``smooth_bins`` bins (cut at 4 std, renormalized at the trial edges;
    0 = no smoothing). Spikes per bin, or spikes per second when ``bin_s`` is given."""
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise ValueError(f"counts must be (trials, bins, neurons), got {counts.shape}")
    if conditions is None:
        conditions = np.zeros(len(counts), dtype=int)
    conditions = np.asarray(conditions)
    if conditions.shape != (len(counts),):
        raise ValueError(f"conditions {conditions.shape} must be ({len(counts)},)")
    means = np.stack(
        [counts[conditions == c].mean(0, dtype=np.float64) for c in np.unique(conditions)]
    )  # (C, T, N)
    smoothed = np.matmul(_smooth_matrix(counts.shape[1], smooth_bins), means)  # (C, T, N)
    return smoothed / bin_s if bin_s else smoothed


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def psth_correlation(
    real_counts: np.ndarray,
    generated_counts: np.ndarray,
    real_conditions: np.ndarray | None = None,
    generated_conditions: np.ndarray | None = None,
    smooth_bins: float = 5,
) -> dict[str, float]:
    """Pearson correlations between the PSTHs of real (held-out) and generated activity.

    PSTHs come from ``psth`` (same smoothing), over the conditions present in both sets (all
    trials as one condition when neither has conditions), concatenated over conditions and bins:
    - ``population``: correlation of the population PSTH (summed over neurons), (C*T,) values;
    - ``per_neuron_mean``: mean over neurons whose real PSTH varies of each neuron's (C*T,)
      correlation; a neuron whose generated PSTH is flat counts 0 (no credit for silence);
    - ``neurons_scored``: how many neurons entered that mean.
    """
    if (real_conditions is None) != (generated_conditions is None):
        raise ValueError("give conditions for both real and generated trials, or for neither")
    real_counts, generated_counts = np.asarray(real_counts), np.asarray(generated_counts)
    if real_counts.shape[1:] != generated_counts.shape[1:]:
        raise ValueError(
            f"real {real_counts.shape} and generated {generated_counts.shape} differ in "
            "bins or neurons"
        )
    if real_conditions is not None:
        real_conditions, generated_conditions = (
            np.asarray(real_conditions),
            np.asarray(generated_conditions),
        )
        shared = np.intersect1d(real_conditions, generated_conditions)
        if len(shared) == 0:
            raise ValueError("real and generated trials share no condition")
        keep_real = np.isin(real_conditions, shared)
        keep_generated = np.isin(generated_conditions, shared)
        real = psth(real_counts[keep_real], real_conditions[keep_real], smooth_bins)
        generated = psth(
            generated_counts[keep_generated], generated_conditions[keep_generated], smooth_bins
        )
    else:
        real, generated = (
            psth(real_counts, None, smooth_bins),
            psth(generated_counts, None, smooth_bins),
        )
    num_neurons = real.shape[-1]
    real, generated = real.reshape(-1, num_neurons), generated.reshape(-1, num_neurons)  # (C*T, N)
    per_neuron = []
    for n in np.flatnonzero(real.std(0) > 0):
        r = _pearson(real[:, n], generated[:, n])
        per_neuron.append(0.0 if np.isnan(r) else r)
    return {
        "population": _pearson(real.sum(1), generated.sum(1)),
        "per_neuron_mean": float(np.mean(per_neuron)) if per_neuron else float("nan"),
        "neurons_scored": float(len(per_neuron)),
    }


# -------------------------------------------------------------------- next-window spikes
def next_spike_scores(
    predicted: Sequence[Sequence[int]], true: Sequence[Sequence[int]], average: str = "micro"
) -> dict[str, float]:
    """Precision / recall / F1 of the neuron ids predicted to fire in each window.

    Each window is a multiset of neuron ids (a neuron firing twice appears twice); its matches
    are sum over ids of min(predicted count, true count). ``average="micro"`` (default):
    precision = total matches / total predicted, recall = total matches / total true over all
    windows, F1 = their harmonic mean. ``average="macro"``: those three per window, then their
    means over windows. A zero denominator scores 1 when the other side is empty too (nothing
    to find, nothing claimed) and 0 otherwise; F1 is 0 when precision + recall = 0.
    """
    if len(predicted) != len(true):
        raise ValueError(f"{len(predicted)} predicted windows but {len(true)} true windows")
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")

    def scores(matches: int, num_predicted: int, num_true: int) -> tuple[float, float, float]:
        precision = matches / num_predicted if num_predicted else float(num_true == 0)
        recall = matches / num_true if num_true else float(num_predicted == 0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    per_window, totals = [], np.zeros(3, dtype=np.int64)
    for guess, truth in zip(predicted, true, strict=True):
        guess_ids, true_ids = Counter(int(i) for i in guess), Counter(int(i) for i in truth)
        matches = sum((guess_ids & true_ids).values())
        counts = (matches, sum(guess_ids.values()), sum(true_ids.values()))
        totals += counts
        per_window.append(scores(*counts))
    if average == "micro":
        precision, recall, f1 = scores(*(int(v) for v in totals))
    else:
        precision, recall, f1 = (
            (float(v) for v in np.mean(per_window, axis=0)) if per_window else (float("nan"),) * 3
        )
    return {"precision": precision, "recall": recall, "f1": f1}
