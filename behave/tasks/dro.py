"""Group DRO over behavior-frequency buckets (online, exponentiated-gradient weights).

The exact objective (Sagawa et al. 2020, "Distributionally Robust Neural Networks", applied to
BehaveGPT's head/tail groups):

    groups   g = 1..G: behavior types sorted by training frequency, cut into G groups of equal
             *number of types* (group 1 = the most frequent types, group G = the rarest).
    loss     l_g = mean next-behavior cross-entropy over targets whose type is in group g.
    weights  q  on the simplex; after each batch, for each group present in it,
             q_g <- q_g * exp(eta * (l_g + C / sqrt(n_g / n_max)))   then q <- q / sum(q),
             where n_g = training targets in group g: the adjustment C/sqrt(.) widens the
             uncertainty set for rare groups (a larger worst-case margin where the estimate of
             their loss is noisier), so rarer behaviors get weight faster.
    train    L = (1 - mix) * mean_t CE_t  +  mix * sum_g q_g l_g

``mix = 1`` is pure group DRO (the worst-case mixture over groups); smaller values keep part
of the plain ERM average so frequent behaviors are not given up.
"""

from __future__ import annotations

import torch
from torch import nn

from behave.metrics import frequency_buckets

__all__ = ["GroupDRO"]


class GroupDRO(nn.Module):
    def __init__(
        self,
        behavior_counts: torch.Tensor,
        num_groups: int = 4,
        step_size: float = 0.01,
        adjustment: float = 0.0,
        mix: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"dro mix must be in [0, 1], got {mix}")
        counts = torch.as_tensor(behavior_counts, dtype=torch.float64)
        group = frequency_buckets(counts, num_groups)
        sizes = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group, counts)
        self.num_groups, self.step_size, self.mix = num_groups, step_size, mix
        self.register_buffer("group_of_type", group)  # (V,)
        self.register_buffer(
            "margin",
            (adjustment / torch.sqrt(sizes.clamp(min=1) / sizes.max())).float(),  # (G,)
        )
        self.register_buffer("weights", torch.full((num_groups,), 1.0 / num_groups))  # q

    def group_losses(
        self, losses: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss per group (G,) and a (G,) mask of groups present in the batch."""
        group = self.group_of_type[targets]  # (N,)
        sums = torch.zeros(self.num_groups, device=losses.device, dtype=losses.dtype)
        sums = sums.index_add(0, group, losses)
        counts = torch.bincount(group, minlength=self.num_groups).to(losses.dtype)
        present = counts > 0
        return sums / counts.clamp(min=1), present

    def forward(
        self, losses: torch.Tensor, targets: torch.Tensor, update: bool = True
    ) -> torch.Tensor:
        """Training loss from per-target losses (N,) and their target types (N,)."""
        group_loss, present = self.group_losses(losses, targets)
        if update and self.training:
            with torch.no_grad():
                step = self.step_size * (group_loss.detach() + self.margin)
                logw = self.weights.log() + torch.where(present, step, torch.zeros_like(step))
                self.weights.copy_(torch.softmax(logw, dim=0))
        robust = (self.weights * group_loss).sum()
        return (1 - self.mix) * losses.mean() + self.mix * robust
