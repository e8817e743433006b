"""Matplotlib figures logged to MLflow runs (learning curves, recall by frequency, heatmaps)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: training runs and CI have no display
import matplotlib.pyplot as plt
import numpy as np

from behave.metrics import transition_counts

__all__ = ["learning_curves", "recall_by_frequency", "transition_heatmaps"]


def learning_curves(history: dict[str, list[tuple[int, float]]]):
    """One line per metric key: (step, value) pairs, e.g. train/loss and val/loss."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, points in sorted(history.items()):
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=key, marker="o" if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Learning curves")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def recall_by_frequency(per_type_recall: np.ndarray, counts: np.ndarray, num_buckets: int = 10):
    """Mean recall@10 of the types in each training-frequency decile (head on the left)."""
    seen = np.flatnonzero((counts > 0) & ~np.isnan(per_type_recall))
    order = seen[np.argsort(-counts[seen], kind="stable")]
    buckets = np.array_split(order, num_buckets)
    means = [float(np.nanmean(per_type_recall[b])) if len(b) else 0.0 for b in buckets]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(1, len(buckets) + 1), means, color="tab:blue")
    ax.set_xlabel("behavior-frequency decile (1 = most frequent types)")
    ax.set_ylabel("recall@10 (macro within decile)")
    ax.set_ylim(0, 1)
    ax.set_title("Recall@10 by behavior frequency")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def transition_heatmaps(
    real: list[np.ndarray], generated: list[np.ndarray], num_types: int, top: int = 30
):
    """Row-normalized transition matrices among the ``top`` most frequent real types."""
    real_counts = transition_counts(real, num_types)
    gen_counts = transition_counts(generated, num_types)
    types = np.argsort(-np.bincount(np.concatenate(real), minlength=num_types))[:top]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    for ax, counts, title in ((axes[0], real_counts, "real"), (axes[1], gen_counts, "generated")):
        sub = counts[np.ix_(types, types)]
        sub = sub / np.maximum(sub.sum(1, keepdims=True), 1)
        im = ax.imshow(sub, cmap="viridis", vmin=0, vmax=max(sub.max(), 1e-9))
        ax.set_title(f"{title} transitions (top {len(types)} types)")
        ax.set_xlabel("next behavior (rank)")
        ax.set_ylabel("previous behavior (rank)")
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig
