"""BehaveGPT: a decoder-only transformer over user-behavior event tokens.

Paper: "BehaveGPT: A Foundation Model for Large-scale User Behavior Modeling", arXiv 2505.17631.
Official implementation: none published.

Where we differ from the paper, and why:
- Each event token's input embedding is the *sum* of behavior, weekday, half-hour time slot,
  location, domain and learned position embeddings (the paper describes a multi-field event
  tokenizer; a sum keeps one token per event, so context length = number of events).
- Pre-LayerNorm GPT blocks with PyTorch SDPA causal attention (flash / memory-efficient kernels
  where the device has them), weight-tied output head: the smallest standard GPT that trains
  stably at the sizes we run on CPU.
- The DRO pretraining objective is not part of the model: it lives in the training task
  (``behave/tasks/behavegpt.py``), whose header states the exact objective.
- Long-horizon generation keeps the time, location and domain of the last observed event for
  generated events (the model predicts behaviors only, not timestamps).

Axis glossary: B batch, L sequence length (events), D d_model, H heads, V behavior vocabulary.
Token ids: behaviors 0 = padding, 1 = unknown; locations and domains 0 = unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PAD_ID",
    "UNKNOWN_ID",
    "exclude_special_tokens",
    "NUM_WEEKDAYS",
    "BehaveGPTConfig",
    "BehaveGPTOutput",
    "EventBatch",
    "BehaveGPT",
]

PAD_ID = 0
UNKNOWN_ID = 1
NUM_WEEKDAYS = 7


def exclude_special_tokens(scores: torch.Tensor) -> torch.Tensor:
    """<pad> and <unk> are never a valid prediction: set their scores (..., V) to -inf in place."""
    scores[..., [PAD_ID, UNKNOWN_ID]] = float("-inf")
    return scores


@dataclass
class BehaveGPTConfig:
    num_behaviors: int  # V: behavior vocabulary incl. <pad>, <unk>
    num_locations: int  # location vocabulary incl. <unk>
    num_domains: int  # domain vocabulary incl. <unk>
    num_time_slots: int = 48  # half-hour slots per day
    context_length: int = 64  # L_max: events the model attends to
    d_model: int = 128  # D
    num_layers: int = 2  # transformer blocks
    num_heads: int = 4  # H
    mlp_ratio: int = 4  # MLP width = mlp_ratio * D
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        for name in ("num_behaviors", "num_locations", "num_domains", "context_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class EventBatch:
    """Integer event features, each (B, L); right-padded with behavior = PAD_ID."""

    behavior: torch.Tensor
    weekday: torch.Tensor
    time_slot: torch.Tensor
    location: torch.Tensor
    domain: torch.Tensor

    def to(self, device: torch.device | str) -> EventBatch:
        return EventBatch(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass
class BehaveGPTOutput:
    logits: torch.Tensor  # (B, L, V) next-behavior logits at every position
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + each block, (B, L, D)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: BehaveGPTConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # (B, L, D) each
        q, k, v = (
            t.view(B, L, self.num_heads, D // self.num_heads).transpose(1, 2) for t in (q, k, v)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, D/H)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(self, config: BehaveGPTConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.mlp_ratio * config.d_model),  # fc_in
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.d_model, config.d_model),  # fc_out
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x)))
        return x + self.drop(self.mlp(self.ln_mlp(x)))


class BehaveGPT(nn.Module):
    def __init__(self, config: BehaveGPTConfig) -> None:
        super().__init__()
        self.config = config
        D = config.d_model
        self.behavior_embedding = nn.Embedding(config.num_behaviors, D, padding_idx=PAD_ID)
        self.weekday_embedding = nn.Embedding(NUM_WEEKDAYS, D)
        self.time_slot_embedding = nn.Embedding(config.num_time_slots, D)
        self.location_embedding = nn.Embedding(config.num_locations, D)
        self.domain_embedding = nn.Embedding(config.num_domains, D)
        self.position_embedding = nn.Embedding(config.context_length, D)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_final = nn.LayerNorm(D)
        self.head = nn.Linear(D, config.num_behaviors, bias=False)
        self.head.weight = self.behavior_embedding.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat.
        for name, p in self.named_parameters():
            if name.endswith("out.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def embed(self, events: EventBatch) -> torch.Tensor:
        L = events.behavior.shape[1]
        if L > self.config.context_length:
            raise ValueError(
                f"sequence length {L} exceeds context_length {self.config.context_length}; "
                "truncate the history to its most recent events"
            )
        positions = torch.arange(L, device=events.behavior.device)
        return (
            self.behavior_embedding(events.behavior)
            + self.weekday_embedding(events.weekday)
            + self.time_slot_embedding(events.time_slot)
            + self.location_embedding(events.location)
            + self.domain_embedding(events.domain)
            + self.position_embedding(positions)
        )  # (B, L, D)

    def forward(self, events: EventBatch, output_hidden_states: bool = False) -> BehaveGPTOutput:
        x = self.drop(self.embed(events))  # (B, L, D)
        hidden = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x)  # (B, L, D)
            if hidden is not None:
                hidden.append(x)
        logits = self.head(self.ln_final(x))  # (B, L, V)
        return BehaveGPTOutput(logits, tuple(hidden) if hidden is not None else None)

    def next_behavior_logits(self, events: EventBatch, lengths: torch.Tensor) -> torch.Tensor:
        """Logits for the event after each history's last real event, (B, V).

        Right padding plus causal attention means padded positions never influence the
        positions before them, so one padded batch serves histories of any length.
        """
        logits = self(events).logits  # (B, L, V)
        last = (lengths - 1).clamp(min=0)
        scores = logits[torch.arange(logits.shape[0], device=logits.device), last]  # (B, V)
        return exclude_special_tokens(scores)

    @torch.no_grad()
    def generate(
        self,
        events: EventBatch,
        length: int,
        num_steps: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = 50,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``num_steps`` future behaviors after one history (batch of 1), (num_steps,).

        The context slides: only the most recent ``context_length`` events are attended to.
        Generated events inherit the last observed event's time, location and domain.
        """
        if events.behavior.shape[0] != 1:
            raise ValueError("generate takes one history at a time (batch size 1)")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        context = {k: v[0, :length].tolist() for k, v in vars(events).items()}
        device = events.behavior.device
        out: list[int] = []
        for _ in range(num_steps):
            window = {k: v[-self.config.context_length :] for k, v in context.items()}
            batch = EventBatch(**{k: torch.tensor([v], device=device) for k, v in window.items()})
            scores = self.next_behavior_logits(
                batch, torch.tensor([len(window["behavior"])], device=device)
            )
            scores = scores[0] / temperature  # (V,)
            if top_k is not None and top_k < scores.numel():
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            nxt = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            out.append(nxt)
            for k in context:
                context[k].append(nxt if k == "behavior" else context[k][-1])
        return torch.tensor(out, dtype=torch.long)
