"""One evaluation loop for every next-behavior scorer (BehaveGPT, baselines) on a data split."""

from __future__ import annotations

from collections.abc import Callable

import torch

from behave.metrics import RankingAccumulator, tail_mask_from_counts
from behave.models.behavegpt import PAD_ID, EventBatch, exclude_special_tokens

__all__ = ["evaluate_scorer", "split_batch"]


def split_batch(batch: dict[str, torch.Tensor]) -> tuple[EventBatch, torch.Tensor]:
    """Windows of L+1 events -> inputs (first L events) and next-behavior targets (last L)."""
    inputs = EventBatch(**{k: v[:, :-1] for k, v in batch.items()})
    return inputs, batch["behavior"][:, 1:]


@torch.inference_mode()
def evaluate_scorer(
    scorer: Callable[[EventBatch], torch.Tensor],
    loader,
    behavior_counts: list[int],
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Ranking metrics (behave.metrics) of ``scorer(inputs) -> (B, L, V)`` over every real
    target in ``loader``; head/tail are defined by the training ``behavior_counts``."""
    counts = torch.as_tensor(behavior_counts)
    acc = RankingAccumulator(len(counts), tail_mask=tail_mask_from_counts(counts))
    for batch in loader:
        inputs, targets = split_batch({k: v.to(device) for k, v in batch.items()})
        real = targets != PAD_ID
        scores = exclude_special_tokens(scorer(inputs)[real].float())  # (N, V)
        acc.update(scores, targets[real])
    return acc.compute()
