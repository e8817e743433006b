"""Figures for offline-RL runs: return vs step, a rollout frame strip, score per epoch."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["return_vs_step", "frame_strip", "score_per_epoch"]


def return_vs_step(cumulative: list[np.ndarray], reference: dict[str, float], target: float):
    """Each evaluation episode's return so far against the step, with the reference returns."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, c in enumerate(cumulative):
        ax.plot(
            np.arange(1, len(c) + 1),
            c,
            color="tab:blue",
            alpha=0.5,
            lw=1,
            label="episodes" if i == 0 else None,
        )
    ax.axhline(reference["expert"], color="tab:green", ls="--", label="expert reference")
    ax.axhline(reference["random"], color="tab:red", ls="--", label="random reference")
    ax.axhline(target, color="k", ls=":", label=f"target return {target:.0f}")
    ax.set_xlabel("step")
    ax.set_ylabel("return so far")
    ax.set_title("Evaluation rollouts: return vs step")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def frame_strip(frames: list[np.ndarray], steps: list[int], title: str = "rollout"):
    """Frames of one rollout side by side, each labeled with its step."""
    n = max(1, len(frames))
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.0), squeeze=False)
    for ax, frame, step in zip(axes[0], frames, steps, strict=False):
        ax.imshow(frame)
        ax.set_title(f"t={step}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def score_per_epoch(history: list[tuple[int, float]]):
    """Normalized score of the rollouts after each epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history:
        x, y = zip(*history, strict=True)
        ax.plot(x, y, marker="o")
    ax.axhline(100, color="tab:green", ls="--", lw=1, label="expert = 100")
    ax.axhline(0, color="tab:red", ls="--", lw=1, label="random = 0")
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalized score")
    ax.set_title("Rollout score per epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
