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
) -> dict:
    """Lightning's ``configure_optimizers`` answer; matrices decay, biases and norms do not."""
    params = list(module.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for _, p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=learning_rate,
    )
    total = max(1, int(total_steps))
    warmup = min(warmup_steps, total // 2)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
