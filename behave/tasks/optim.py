"""The optimizer every behave task uses: AdamW, linear warm-up then cosine decay to 10%."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["adamw_warmup_cosine"]


def adamw_warmup_cosine(
    module: nn.Module,
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    lr_scales: dict[str, float] | None = None,
) -> dict:
    """Lightning's ``configure_optimizers`` answer; matrices decay, biases and norms do not.

    ``lr_scales``: learning-rate factors by parameter-name prefix (e.g. ``{"explainer.": 0.1}``);
    parameters that do not require gradients are left out."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    scales = lr_scales or {}

    def scale(name: str) -> float:  # the longest matching name prefix decides
        hits = [prefix for prefix in scales if name.startswith(prefix)]
        return scales[max(hits, key=len)] if hits else 1.0

    groups = []
    for factor in sorted({scale(n) for n, _ in params}):
        for decay in (True, False):
            chosen = [p for n, p in params if scale(n) == factor and (p.dim() >= 2) == decay]
            if chosen:
                groups.append(
                    {
                        "params": chosen,
                        "weight_decay": weight_decay if decay else 0.0,
                        "lr": learning_rate * factor,
                    }
                )
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    total = max(1, int(total_steps))
    warmup = min(warmup_steps, total // 2)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
