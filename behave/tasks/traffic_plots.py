"""Figures for Graph-LSTM runs: scenes with observed / true / predicted tracks, uncertainty
ellipses and the last observed graph; the behavior confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Ellipse

from behave.ops.graphs import geometric_adjacency

__all__ = ["scene_forecasts", "behavior_confusion"]


def _ellipse(centre, sx, sy, rho, **kw) -> Ellipse:
    """The 2-σ ellipse of a bivariate normal (σx, σy, ρ)."""
    cov = np.array([[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]])
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    width, height = 2 * 2 * np.sqrt(np.maximum(values[::-1], 0))
    return Ellipse(centre, width, height, angle=angle, **kw)


def scene_forecasts(batch: dict[str, torch.Tensor], out, config, max_agents: int = 6):
    """One panel per window: observed (grey), true future (green), predicted mean (blue) with
    2-σ ellipses at each whole second, and the last observed DGG's edges (dotted), for the
    ``max_agents`` agents nearest the window's centre. Highways are long and narrow, so y is
    stretched (the axes are not to scale)."""
    W = batch["present"].shape[0]
    fig, axes = plt.subplots(W, 1, figsize=(11, 3.2 * W), squeeze=False)
    hz = config.hz
    seconds = [int(round(s * hz)) - 1 for s in range(1, int(config.predict_steps / hz) + 1)]
    for w in range(W):
        ax = axes[w, 0]
        agents = torch.nonzero(batch["present"][w]).flatten().tolist()
        # the agents nearest the window's centre: a whole highway scene is unreadable
        last_pos = batch["observed"][w, agents, -1].norm(dim=-1)
        agents = [agents[i] for i in last_pos.argsort()[:max_agents].tolist()]
        obs = batch["observed"][w].cpu().numpy()
        fut = batch["future"][w].cpu().numpy()
        fut_ok = batch["future_present"][w].cpu().numpy()
        mean = out.mean[w].cpu().numpy()
        scale = out.scale[w].cpu().numpy()
        corr = out.correlation[w].cpu().numpy()
        last = batch["observed"][w, :, -1]
        adj = (
            geometric_adjacency(
                last,
                batch["present"][w],
                radius=config.radius_m,
                scale=config.scale_m,
                k=config.k_neighbours,
            )
            .cpu()
            .numpy()
        )
        for i in agents:
            for j in agents:
                if j > i and adj[i, j] > 0:
                    ax.plot(
                        *zip(obs[i, -1], obs[j, -1], strict=True), ":", color="tab:orange", lw=0.8
                    )
        for n, i in enumerate(agents):
            ax.plot(
                obs[i, :, 0],
                obs[i, :, 1],
                color="0.5",
                lw=1.5,
                label="observed" if n == 0 else None,
            )
            ok = fut_ok[i]
            ax.plot(
                fut[i, ok, 0],
                fut[i, ok, 1],
                color="tab:green",
                lw=1.2,
                label="true future" if n == 0 else None,
            )
            ax.plot(
                mean[i, :, 0],
                mean[i, :, 1],
                "--",
                color="tab:blue",
                lw=1.2,
                label="predicted" if n == 0 else None,
            )
            for t in seconds:
                ax.add_patch(
                    _ellipse(
                        mean[i, t],
                        scale[i, t, 0],
                        scale[i, t, 1],
                        corr[i, t],
                        fill=False,
                        color="tab:blue",
                        alpha=0.4,
                        lw=0.8,
                    )
                )
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m, stretched)")
        ax.grid(alpha=0.3)
        if w == 0:
            ax.set_title(
                f"Forecasts of the {max_agents} agents nearest the centre: 2-σ ellipses at "
                "1..5 s; dotted = last observed graph"
            )
            ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def behavior_confusion(confusion: torch.Tensor, names: list[str]):
    """Row-normalized confusion matrix (rows: true behavior) with counts in each cell."""
    counts = confusion.cpu().numpy().astype(float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Behavior confusion (test scenes)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
