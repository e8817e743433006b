"""Behavior cloning baseline: an MLP from the current state to the action, per step.

The simplest offline-RL baseline in the DT and DM papers' tables: no return conditioning, no
history. It takes the same arguments as the sequence models (and ignores returns, past actions
and timesteps) so the training task and rollouts need no special case.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from behave.models.decision_mamba import DecisionMambaOutput

__all__ = ["BehaviorCloningConfig", "BehaviorCloning"]


@dataclass
class BehaviorCloningConfig:
    state_dim: int
    act_dim: int
    hidden: int = 256
    num_layers: int = 2  # hidden layers
    dropout: float = 0.1
    context_length: int = 1  # what the policy looks at: the current state only

    def __post_init__(self) -> None:
        for name in ("state_dim", "act_dim", "hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class BehaviorCloning(nn.Module):
    def __init__(self, config: BehaviorCloningConfig) -> None:
        super().__init__()
        self.config = config
        layers, width = [], config.state_dim
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, config.act_dim), nn.Tanh())

    def forward(
        self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor
    ) -> DecisionMambaOutput:
        """Same signature as DecisionMamba; only ``states`` (B, L, S) is read."""
        a = self.net(states)  # (B, L, A) in [-1, 1]
        empty = torch.zeros(*states.shape[:2], 0, device=states.device)
        return DecisionMambaOutput(action_preds=a, state_preds=empty, return_preds=empty)
