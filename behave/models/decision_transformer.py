"""Decision Transformer baseline: ``transformers.DecisionTransformerModel`` behind our interface.

Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling",
https://arxiv.org/abs/2106.01345. The model is Hugging Face's implementation (GPT-2 over the same
(R̂_t, s_t, a_t) tokens, learned timestep embedding, no position embedding); this file only maps
it to :class:`~behave.models.decision_mamba.DecisionMamba`'s call signature and output, so the
training task, rollouts and benchmarks treat both models the same way.

Windows are right-padded (the data module masks padded steps in the loss): the model is causal,
so padding after the last real step never changes earlier predictions, and the attention mask
is all ones. At inference DT re-encodes its last ``context_length`` steps for every action; that
is the cost the recurrent ``DecisionMamba.step`` avoids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from behave.models.decision_mamba import DecisionMambaOutput

__all__ = ["DecisionTransformerConfig", "DecisionTransformer"]


@dataclass
class DecisionTransformerConfig:
    state_dim: int  # S
    act_dim: int  # A
    context_length: int = 20  # K: steps the model attends to (3K tokens)
    max_timestep: int = 1000  # timestep embedding size
    d_model: int = 128
    num_layers: int = 4  # 4 x 128 ~ 1.06 M parameters, close to DecisionMamba's 3 x 128 (0.98 M)
    num_heads: int = 1  # the DT paper's D4RL setting
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("state_dim", "act_dim", "context_length", "max_timestep", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} must divide by num_heads {self.num_heads}")


class DecisionTransformer(nn.Module):
    def __init__(self, config: DecisionTransformerConfig) -> None:
        super().__init__()
        from transformers import DecisionTransformerConfig as HFConfig
        from transformers import DecisionTransformerModel

        self.config = config
        hf = HFConfig(
            state_dim=config.state_dim,
            act_dim=config.act_dim,
            hidden_size=config.d_model,
            max_ep_len=config.max_timestep,
            n_positions=3 * max(config.context_length, 1024),
            n_layer=config.num_layers,
            n_head=config.num_heads,
            n_inner=4 * config.d_model,
            activation_function="relu",
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            action_tanh=True,  # actions are scaled to [-1, 1] by the data module
        )
        self.model = DecisionTransformerModel(hf)

    def forward(
        self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor
    ) -> DecisionMambaOutput:
        """returns_to_go (B, L, 1), states (B, L, S), actions (B, L, A), timesteps (B, L) int."""
        B, L = timesteps.shape
        out = self.model(
            states=states,
            actions=actions,
            rewards=None,  # unused by the HF model
            returns_to_go=returns_to_go,
            timesteps=timesteps,
            attention_mask=torch.ones(B, L, dtype=torch.long, device=states.device),
            return_dict=True,
        )
        return DecisionMambaOutput(
            action_preds=out.action_preds,
            state_preds=out.state_preds,
            return_preds=out.return_preds,
        )
