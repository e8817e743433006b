"""Ground-truth behavior labels of road agents: overspeeding, neutral, underspeeding.

The rule of Chandra et al. (RA-L 2020; official code ``data_processing/behaviors.py``): build
the weighted geometric graph of each frame (:mod:`behave.ops.graphs`), take each agent's
weighted-degree centrality θ_t = Σ_j A_t[i, j], and look at how it changes over the window:

    θ' = mean_t (θ_t - θ_{t-1}) · hz          (per second, so the threshold does not depend on
                                               the frame rate; = (θ_end - θ_start) / seconds)
    overspeeding   if θ' >=  threshold        (closing in on others: more, nearer neighbours)
    underspeeding  if θ' <= -threshold        (falling away from others)
    neutral        otherwise

Labels describe an agent's *future*: the window runs from its last observed frame to the end of
the prediction horizon, and the agent must be present in all of it (otherwise it gets no label,
-1, and the behavior loss and metrics skip it).

Parameters (stored in every traffic manifest, so the rule that made a model's labels travels
with its data): the official code uses radius 10 m, weights exp(-d) and threshold 0.01 per frame
(its plot legend says 0.0025) on Argoverse. Our highway scenes have 30 m gaps and 4 m lanes, so
we use a 20 m radius and exp(-d / 5 m), and a threshold chosen so that the three classes are all
well represented in generated traffic (see ``threshold`` below; measured with
``behave data generate traffic`` defaults).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from behave.ops.graphs import geometric_adjacency, weighted_degree

__all__ = ["BEHAVIORS", "BehaviorRule", "label_behaviors", "centrality_slope"]

BEHAVIORS = ("overspeeding", "neutral", "underspeeding")
IGNORE = -1


@dataclass(frozen=True)
class BehaviorRule:
    radius_m: float = 20.0  # edges join agents closer than this
    scale_m: float = 5.0  # edge weight exp(-d / scale_m)
    threshold: float = 0.02  # |θ'| (per second) above which an agent over- / underspeeds

    def __post_init__(self) -> None:
        if self.radius_m <= 0 or self.scale_m <= 0 or self.threshold <= 0:
            raise ValueError("behavior_rule: radius_m, scale_m and threshold must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> BehaviorRule:
        return cls(**(values or {}))


def centrality_slope(
    positions: torch.Tensor, present: torch.Tensor, rule: BehaviorRule, hz: float
) -> torch.Tensor:
    """θ' per agent over a window of frames: positions (..., F, N, 2), present (..., F, N)
    -> (..., N) per second."""
    adjacency = geometric_adjacency(positions, present, radius=rule.radius_m, scale=rule.scale_m)
    theta = weighted_degree(adjacency)  # (..., F, N)
    return (theta[..., -1, :] - theta[..., 0, :]) * hz / max(theta.shape[-2] - 1, 1)


def label_behaviors(
    positions: torch.Tensor, present: torch.Tensor, rule: BehaviorRule, hz: float
) -> torch.Tensor:
    """Behavior index per agent (0 overspeeding, 1 neutral, 2 underspeeding, -1 no label):
    positions (..., F, N, 2) and present (..., F, N) over the labelled window."""
    slope = centrality_slope(positions, present, rule, hz)
    labels = torch.ones_like(slope, dtype=torch.long)
    labels[slope >= rule.threshold] = 0
    labels[slope <= -rule.threshold] = 2
    labels[~present.all(dim=-2)] = IGNORE
    return labels
