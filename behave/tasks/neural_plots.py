"""Figures for Neuroformer runs: raster of real vs generated spikes, inferred vs true
connectivity, decoded vs true behavior."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["raster", "adjacency_heatmaps", "decoded_behavior"]


def raster(real: np.ndarray, generated: np.ndarray, bin_s: float):
    """Two rasters of one trial, (bins, N) counts each: recorded above, generated below."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, sharey=True)
    for ax, counts, title in ((axes[0], real, "recorded"), (axes[1], generated, "generated")):
        b, n = np.nonzero(counts)
        ax.scatter(b * bin_s, n, s=1.5, c="k", marker="|")
        rate = counts.sum() / max(counts.shape[0] * bin_s * counts.shape[1], 1e-9)
        ax.set_title(f"{title} ({rate:.1f} Hz per neuron)")
        ax.set_ylabel("neuron")
    axes[1].set_xlabel("time after the context window (s)")
    fig.tight_layout()
    return fig


def adjacency_heatmaps(inferred: np.ndarray, true: np.ndarray):
    """Inferred (attention) and true adjacency, source rows x target columns, hubs first."""
    order = np.argsort(-true.sum(1), kind="stable")  # neurons with most targets first
    shown = inferred.copy()
    np.fill_diagonal(shown, np.nan)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    axes[0].imshow(true[order][:, order], cmap="Greys", interpolation="nearest")
    axes[0].set_title("true adjacency")
    im = axes[1].imshow(shown[order][:, order], cmap="viridis", interpolation="nearest")
    axes[1].set_title("averaged attention (source -> target)")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xlabel("target neuron (sorted by source out-degree)")
        ax.set_ylabel("source neuron")
    fig.tight_layout()
    return fig


def decoded_behavior(
    pred: np.ndarray, true: np.ndarray, trial: np.ndarray, start: np.ndarray, bin_s: float
):
    """Decoded vs true behavior (z-scored) over the first three evaluated trials."""
    trials = list(dict.fromkeys(trial.tolist()))[:3]
    fig, axes = plt.subplots(len(trials), 1, figsize=(10, 2.6 * len(trials)), squeeze=False)
    for ax, t in zip(axes[:, 0], trials, strict=True):
        rows = np.flatnonzero(trial == t)
        rows = rows[np.argsort(start[rows])]
        x = start[rows] * bin_s
        ax.plot(x, true[rows], color="k", label="true")
        ax.plot(x, pred[rows], color="tab:blue", label="decoded")
        ax.set_title(f"trial {t}")
        ax.set_ylabel("behavior (z)")
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("time in trial (s)")
    fig.tight_layout()
    return fig
