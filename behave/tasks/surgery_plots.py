"""Figures for a model-surgery run: probe quality per layer, the alpha x k sweep, before/after."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["probe_layer_plot", "sweep_plot", "before_after_plot"]


def probe_layer_plot(probes: dict, behavior: str):
    """Held-out AUROC and balanced accuracy of each layer's probe."""
    layers = sorted(probes)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for key, marker in (("auroc", "o"), ("balanced_accuracy", "s")):
        ax.plot(layers, [probes[i].metrics[key] for i in layers], marker=marker, label=key)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(f"probe: next event is {behavior}.* (held-out)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_plot(sweep: list[dict], target: str, capability: str, max_drop: float):
    """Target cut vs capability change for every (alpha, top_k), one line per top_k."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in sorted({p["top_k"] for p in sweep}):
        pts = sorted((p for p in sweep if p["top_k"] == k), key=lambda p: p["alpha"])
        x = [100 * p["capability_change"] for p in pts]
        y = [100 * p["target_reduction"] for p in pts]
        ax.plot(x, y, marker="o", label=f"top-k {k}")
        for p, a, b in zip(pts, x, y, strict=True):
            ax.annotate(
                f"α={p['alpha']:g}", (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.axvline(-100 * max_drop, color="red", lw=0.8, ls="--", label=f"-{max_drop:.0%} {capability}")
    ax.axhline(50, color="green", lw=0.8, ls="--", label="50% cut")
    ax.set_xlabel(f"{capability} change (%)")
    ax.set_ylabel(f"{target} cut (%)")
    ax.set_title("surgery sweep (validation users)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def before_after_plot(before: dict, after: dict, behavior: str):
    keys = [k for k in before if k != "positions" and k in after]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [before[k] for k in keys], width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [after[k] for k in keys], width=0.4, label="after")
    ax.set_xticks(list(xs), keys, rotation=25, ha="right", fontsize=8)
    ax.set_title(f"surgery on '{behavior}' (test users)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
