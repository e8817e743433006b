"""Count-based next-behavior baselines: most popular and first-order Markov (pure torch).

Both score every position of an event batch like BehaveGPT does, so one evaluation loop
(behave.evaluation.evaluate_scorer) ranks them on exactly the same targets.
"""

from __future__ import annotations

import torch

from behave.models.behavegpt import PAD_ID, EventBatch

__all__ = ["MostPopular", "FirstOrderMarkov"]


class MostPopular:
    """Scores each behavior by its training frequency, whatever the history."""

    def __init__(self, behavior_counts: torch.Tensor) -> None:
        self.log_counts = torch.log(
            torch.as_tensor(behavior_counts, dtype=torch.float32) + 1.0
        )  # (V,)

    def __call__(self, events: EventBatch) -> torch.Tensor:
        B, L = events.behavior.shape
        return self.log_counts.expand(B, L, -1)  # (B, L, V)


class FirstOrderMarkov:
    """P(next | current) from training bigram counts, add-alpha smoothed toward popularity."""

    def __init__(self, num_types: int, alpha: float = 0.1) -> None:
        self.counts = torch.zeros(num_types, num_types)  # (V, V) previous -> next
        self.alpha = alpha

    def fit(self, windows: torch.Tensor) -> FirstOrderMarkov:
        """windows: (W, L+1) behavior ids, padded with PAD_ID."""
        prev, nxt = windows[:, :-1].reshape(-1), windows[:, 1:].reshape(-1)
        real = (prev != PAD_ID) & (nxt != PAD_ID)
        flat = prev[real] * self.counts.shape[1] + nxt[real]
        self.counts = (
            torch.bincount(flat, minlength=self.counts.numel()).float().view_as(self.counts)
        )
        return self

    def __call__(self, events: EventBatch) -> torch.Tensor:
        popularity = self.counts.sum(0)
        prior = popularity / popularity.sum().clamp(min=1)  # (V,)
        rows = self.counts[events.behavior]  # (B, L, V)
        return torch.log(rows + self.alpha * prior * self.counts.shape[1] + 1e-12)
