"""A small transformer time-series classifier: the black box that TimeX and Captum explain.

After the encoder the TimeX authors explain (Queen et al., "Encoding Time-Series Explanations
through Self-Supervised Model Behavior Consistency", NeurIPS 2023, arXiv 2306.02109; official
code https://github.com/mims-harvard/TimeX, ``TransformerMVTS``): a sinusoidal positional
encoding concatenated to each time step's values, a linear projection, 1-2 transformer encoder
layers, mean pooling over time, an MLP head.

Where we differ, and why:
- Pre-LayerNorm encoder layers (``norm_first``): stable without a learning-rate warm-up at the
  small sizes we train on CPU.
- ``forward`` takes an optional ``keep`` mask (B, T) of time steps: dropped steps are removed
  from attention (as keys) and from the mean pool. This is how TimeX's explanation encoder
  reads a masked input; ``keep`` may carry a straight-through gradient (see
  :class:`KeepToAttentionBias`).

Axis glossary: B batch, T time steps, D input channels, E d_model, C classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TSClassifierConfig",
    "TSClassifierOutput",
    "TSClassifier",
    "KeepToAttentionBias",
    "sinusoidal_positions",
]

NEG_LARGE = -1e9  # "not attended": finite, so fully masked rows give uniform weights, not NaN


@dataclass
class TSClassifierConfig:
    seq_len: int  # T
    channels: int  # D
    num_classes: int  # C
    d_model: int = 64  # E
    num_heads: int = 2
    num_layers: int = 1
    dim_feedforward: int = 128
    positional_dim: int = 16  # d_pe: sinusoidal features concatenated to each step's values
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        for name in ("seq_len", "channels", "num_classes", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.positional_dim % 2:
            raise ValueError(f"positional_dim must be even, got {self.positional_dim}")


@dataclass
class TSClassifierOutput:
    logits: torch.Tensor  # (B, C)
    embedding: torch.Tensor  # (B, E) pooled sequence embedding
    sequence: torch.Tensor  # (B, T, E) per-step embeddings after the encoder


def sinusoidal_positions(seq_len: int, dim: int) -> torch.Tensor:
    """(T, dim) sine/cosine features of the time index (Vaswani et al.)."""
    position = torch.arange(seq_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(seq_len, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class KeepToAttentionBias(torch.autograd.Function):
    """keep (B, T) in {0, 1} -> additive attention bias: 0 where kept, NEG_LARGE where dropped.

    The backward pass is the identity (TimeX's ``STENegInf``): a mask generator upstream gets
    the gradient the bias receives, as if the bias were the mask itself.
    """

    @staticmethod
    def forward(ctx, keep: torch.Tensor) -> torch.Tensor:
        return torch.where(keep > 0.5, 0.0, NEG_LARGE).to(keep.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + MLP; an additive key bias (B, T) removes dropped steps."""

    def __init__(self, config: TSClassifierConfig) -> None:
        super().__init__()
        E = config.d_model
        self.num_heads = config.num_heads
        self.ln_attn = nn.LayerNorm(E)
        self.qkv = nn.Linear(E, 3 * E)
        self.out = nn.Linear(E, E)
        self.ln_mlp = nn.LayerNorm(E)
        self.mlp = nn.Sequential(
            nn.Linear(E, config.dim_feedforward),
            nn.GELU(),
            nn.Linear(config.dim_feedforward, E),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        B, T, E = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(E, dim=-1)  # (B, T, E) each
        q, k, v = (
            t.view(B, T, self.num_heads, E // self.num_heads).transpose(1, 2) for t in (q, k, v)
        )
        bias = None if key_bias is None else key_bias[:, None, None, :]  # (B, 1, 1, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, E/H)
        x = x + self.dropout(self.out(y.transpose(1, 2).reshape(B, T, E)))
        return x + self.dropout(self.mlp(self.ln_mlp(x)))


class TSClassifier(nn.Module):
    def __init__(self, config: TSClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer(
            "positions", sinusoidal_positions(c.seq_len, c.positional_dim), persistent=False
        )
        self.input_proj = nn.Linear(c.channels + c.positional_dim, c.d_model)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_layers))
        self.ln_final = nn.LayerNorm(c.d_model)
        self.head = nn.Sequential(
            nn.Linear(c.d_model, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.num_classes)
        )

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> TSClassifierOutput:
        """x (B, T, D); keep (B, T) in {0, 1} (None: every step) -> logits and embeddings."""
        B, T, _ = x.shape
        if T != self.config.seq_len:
            raise ValueError(f"inputs have {T} time steps; this model reads {self.config.seq_len}")
        pe = self.positions[:T].expand(B, T, -1)  # (B, T, d_pe)
        h = self.input_proj(torch.cat([x, pe], dim=-1))  # (B, T, E)
        key_bias = None if keep is None else KeepToAttentionBias.apply(keep)  # (B, T)
        for layer in self.layers:
            h = layer(h, key_bias)
        h = self.ln_final(h)  # (B, T, E)
        if keep is None:
            pooled = h.mean(dim=1)  # (B, E)
        else:  # mean over kept steps; keep's straight-through gradient flows through the weights
            weights = keep / keep.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, T)
            pooled = torch.einsum("bt,bte->be", weights, h)
        return TSClassifierOutput(logits=self.head(pooled), embedding=pooled, sequence=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> logits (B, C): the signature Captum's attribution methods call."""
        return self.encode(x).logits
