"""Figures for explainer runs: the landmark map of TimeX's explanation space.

(Attribution heatmaps over an input live in :func:`behave.explain.attributions.attribution_heatmap`,
which the service also uses for its PNGs.)"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["landmark_map"]


def landmark_map(
    embeddings: np.ndarray, labels: np.ndarray, landmarks: np.ndarray, class_names: list[str]
):
    """Explanation embeddings (N, E) and landmarks (K, E) on their first two principal axes
    (of the cosine-normalized embeddings, the geometry landmarks are matched in)."""
    z = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-9)
    lm = landmarks / np.linalg.norm(landmarks, axis=1, keepdims=True).clip(1e-9)
    centre = z.mean(0)
    _, _, vt = np.linalg.svd(z - centre, full_matrices=False)
    axes2 = vt[:2].T  # (E, 2)
    pz, pl = (z - centre) @ axes2, (lm - centre) @ axes2
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for c in np.unique(labels):
        sel = labels == c
        name = class_names[c] if c < len(class_names) else str(c)
        ax.scatter(pz[sel, 0], pz[sel, 1], s=8, alpha=0.6, label=f"class {name}")
    ax.scatter(pl[:, 0], pl[:, 1], marker="*", s=260, c="k", edgecolors="w", label="landmarks")
    for k, (a, b) in enumerate(pl):
        ax.annotate(str(k), (a, b), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title("TimeX explanation embeddings and landmarks")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
