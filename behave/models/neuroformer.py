"""Neuroformer: a multimodal GPT over spike tokens, with stimulus and behavior.

Paper: Antoniades, Yu, Canzano, Wang, Smith, "Neuroformer: Multimodal and Multitask Generative
Pretraining for Brain Data", ICLR 2024, https://arxiv.org/abs/2311.00136. Official code:
https://github.com/a-antoniades/Neuroformer

Tokens are (neuron id, time offset in the window) pairs (see behave/data/spike_tokens.py). The
current window's tokens are embedded (id + learned offset embedding + position) and pass

1. causal self-attention over the current window (``self_layers``),
2. cross-attention blocks (``cross_layers``), each attending to the encoded **previous** window,
   the **stimulus** and the past **behavior**,
3. causal self-attention again (``final_layers``),

then two heads predict the next token's neuron id and offset. A contrastive head aligns pooled
neural and stimulus embeddings, and a behavior head decodes the current window's behavior.

Where we differ and why:
- Every cross-attention context starts with a learned "null" token, so a window with no previous
  spikes, no stimulus or no behavior (the decode route takes spikes alone) still has a key to
  attend to, and dropping a modality in training (``behavior_dropout`` in the task) is a mask,
  not a different graph.
- Stimulus is a few feature channels per bin (drifting-grating filter responses), embedded by a
  linear layer instead of the paper's video patch encoder: our simulated circuits see a grating,
  not a movie.
- The behavior head decodes the current window's behavior from the neural stream only (pooled
  current tokens + encoded previous window); past behavior reaches the token stream through
  cross-attention but is masked whenever the behavior target is scored, so decoding is never
  copying the past of the signal it predicts.
- Attention is our own small module (scaled dot product, weights on request) rather than a
  ``transformers`` layer: connectivity inference reads the attention weights of specific layers,
  and the fused path stays the default when they are not requested.

Axis letters: B windows, Lc current tokens, Lp previous tokens, Ls stimulus bins, Lb behavior
bins, S stimulus channels, D d_model, H heads, V id vocabulary, O offset vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NeuroformerConfig", "Neuroformer", "NeuroformerOutput", "Attention"]


@dataclass
class NeuroformerConfig:
    num_neurons: int = 100  # neuron ids 0..N-1; pad/SOS/EOS follow
    current_bins: int = 5  # current window (50 ms at 10 ms bins)
    previous_bins: int = 15  # previous window (150 ms)
    max_current: int = 64  # Lc, SOS and EOS included
    max_previous: int = 160  # Lp
    stimulus_channels: int = 8  # S (0: no stimulus)
    behavior_bins: int = 15  # Lb: past behavior bins given as context
    d_model: int = 128  # D
    num_heads: int = 4  # H
    self_layers: int = 1  # causal self-attention before the cross-attention blocks
    cross_layers: int = 2  # blocks attending to previous window, stimulus, behavior
    final_layers: int = 1  # causal self-attention after them
    previous_layers: int = 1  # self-attention encoder of the previous window
    dropout: float = 0.1
    contrastive_dim: int = 64  # shared space of the neural-stimulus contrastive term
    readout_heads: int = 2  # heads of the per-neuron readout (room for excitation + inhibition)

    @property
    def id_vocab(self) -> int:  # V: neurons + pad + SOS + EOS
        return self.num_neurons + 3

    @property
    def current_offsets(self) -> int:  # O: bins + EOS + pad
        return self.current_bins + 2

    @property
    def stimulus_bins(self) -> int:  # Ls: the stimulus under the previous and current windows
        return self.previous_bins + self.current_bins

    def validate(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        for name in ("num_neurons", "current_bins", "previous_bins", "max_current", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class NeuroformerOutput:
    id_logits: torch.Tensor  # (B, Lc, V) next token's neuron id
    offset_logits: torch.Tensor  # (B, Lc, O) next token's offset
    behavior: torch.Tensor  # (B,) decoded behavior of the current window
    neural_embedding: torch.Tensor  # (B, C) unit norm
    stimulus_embedding: torch.Tensor | None  # (B, C) unit norm; None without stimulus
    readout_logits: torch.Tensor  # (B, N, current_bins) does neuron n spike in bin c
    attention: dict[str, torch.Tensor] | None  # layer name -> (B, H, Lq, Lk), on request


class Attention(nn.Module):
    """Multi-head attention; fused kernel unless the weights are asked for.

    ``sigmoid=True``: each key's weight is its own sigmoid (no softmax competition between
    keys; Ramapuram et al. 2024, "Theory, Analysis, and Best Practices for Sigmoid
    Self-Attention"), summed, not averaged, so a weight reads as "how much this key counts"."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, sigmoid: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.sigmoid = sigmoid
        # sigmoid weights start small (~0.02): a window's ~100 keys then sum to about 2
        self.sigmoid_bias = nn.Parameter(torch.full((num_heads, 1, 1), -4.0)) if sigmoid else None
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,  # (B, Lq, D)
        context: torch.Tensor,  # (B, Lk, D)
        key_valid: torch.Tensor,  # (B, Lk) bool
        causal: bool,
        need_weights: bool = False,
        value_context: torch.Tensor | None = None,  # (B, Lk, D): values from these instead
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, Lq, D = x.shape
        H = self.num_heads
        q = self.q(x).view(B, Lq, H, D // H).transpose(1, 2)  # (B, H, Lq, Dh)
        k, v = self.kv(context).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)
        if value_context is not None:
            v = self.kv(value_context).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)[1]
        allowed = key_valid[:, None, None, :]  # (B, 1, 1, Lk)
        if causal:
            Lk = context.shape[1]
            tril = torch.ones(Lq, Lk, dtype=torch.bool, device=x.device).tril()
            allowed = allowed & tril  # (B, 1, Lq, Lk): no attention to later tokens
        weights = None
        if self.sigmoid:
            scores = (q @ k.transpose(-1, -2)) / (D // H) ** 0.5 + self.sigmoid_bias
            weights = torch.sigmoid(scores) * allowed  # (B, H, Lq, Lk), 0 where not allowed
            y = weights @ v
            weights = weights if need_weights else None
        elif need_weights:
            scores = (q @ k.transpose(-1, -2)) / (D // H) ** 0.5
            weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)  # (B, H, Lq, Lk)
            y = weights @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        # dropout on the output, not on the (B, H, Lq, Lk) weights: on CPU, sampling that
        # mask took a fifth of a training step
        return self.dropout(self.out(y.transpose(1, 2).reshape(B, Lq, D))), weights


class _MLP(nn.Sequential):
    def __init__(self, d_model: int, dropout: float):
        super().__init__(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )


class SelfBlock(nn.Module):
    """Pre-norm self-attention + MLP."""

    def __init__(self, config: NeuroformerConfig, causal: bool):
        super().__init__()
        self.causal = causal
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = Attention(config.d_model, config.num_heads, config.dropout)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = _MLP(config.d_model, config.dropout)

    def forward(self, x, valid, need_weights=False):
        h = self.norm1(x)
        a, w = self.attn(h, h, valid, self.causal, need_weights)
        x = x + a
        return x + self.mlp(self.norm2(x)), w


class CrossBlock(nn.Module):
    """Cross-attention to each context in turn (previous window, stimulus, behavior) + MLP."""

    CONTEXTS = ("previous", "stimulus", "behavior")

    def __init__(self, config: NeuroformerConfig):
        super().__init__()
        D = config.d_model
        self.norms = nn.ModuleDict({c: nn.LayerNorm(D) for c in self.CONTEXTS})
        self.attns = nn.ModuleDict(
            {c: Attention(D, config.num_heads, config.dropout) for c in self.CONTEXTS}
        )
        self.norm_mlp = nn.LayerNorm(D)
        self.mlp = _MLP(D, config.dropout)

    def forward(self, x, contexts: dict, need_weights=False):
        weights = {}
        for name in self.CONTEXTS:
            ctx, valid = contexts[name]
            a, weights[name] = self.attns[name](
                self.norms[name](x), ctx, valid, False, need_weights
            )
            x = x + a
        return x + self.mlp(self.norm_mlp(x)), weights


class Neuroformer(nn.Module):
    def __init__(self, config: NeuroformerConfig):
        super().__init__()
        config.validate()
        self.config = config
        D = config.d_model
        self.id_embedding = nn.Embedding(config.id_vocab, D)
        self.current_offset_embedding = nn.Embedding(config.current_offsets, D)
        self.previous_offset_embedding = nn.Embedding(config.previous_bins + 1, D)
        self.current_position = nn.Embedding(config.max_current, D)
        self.previous_position = nn.Embedding(config.max_previous, D)
        self.previous_encoder = nn.ModuleList(
            SelfBlock(config, causal=False) for _ in range(config.previous_layers)
        )
        self.stimulus_in = nn.Linear(max(config.stimulus_channels, 1), D)
        self.stimulus_position = nn.Embedding(config.stimulus_bins, D)
        self.behavior_in = nn.Linear(1, D)
        self.behavior_position = nn.Embedding(config.behavior_bins, D)
        self.null_tokens = nn.Parameter(torch.randn(3, D) * 0.02)  # previous, stimulus, behavior
        self.self_blocks = nn.ModuleList(
            SelfBlock(config, causal=True) for _ in range(config.self_layers)
        )
        self.cross_blocks = nn.ModuleList(CrossBlock(config) for _ in range(config.cross_layers))
        self.final_blocks = nn.ModuleList(
            SelfBlock(config, causal=True) for _ in range(config.final_layers)
        )
        self.norm = nn.LayerNorm(D)
        self.id_head = nn.Linear(D, config.id_vocab)
        self.offset_head = nn.Linear(D, config.current_offsets)
        self.neural_projection = nn.Linear(D, config.contrastive_dim)
        self.stimulus_projection = nn.Linear(D, config.contrastive_dim)
        self.behavior_head = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, 1))
        # per-neuron readout: one learned query per target neuron reads the previous window
        self.neuron_queries = nn.Embedding(config.num_neurons, D)
        self.readout_norm = nn.LayerNorm(D)
        self.readout = Attention(D, config.readout_heads, config.dropout, sigmoid=True)
        self.readout_context = nn.Linear(D, D)
        self.readout_head = nn.Sequential(
            nn.LayerNorm(D), nn.Linear(D, D), nn.GELU(), nn.Linear(D, config.current_bins)
        )
        self.drop = nn.Dropout(config.dropout)

    @property
    def pad_id(self) -> int:
        return self.config.num_neurons

    def _with_null(self, tokens: torch.Tensor, valid: torch.Tensor, which: int):
        """Prepend the context's null token: (B, L, D), (B, L) -> (B, 1 + L, D), (B, 1 + L)."""
        B = tokens.shape[0]
        null = self.null_tokens[which].expand(B, 1, -1)
        ones = torch.ones(B, 1, dtype=torch.bool, device=valid.device)
        return torch.cat([null, tokens], 1), torch.cat([ones, valid], 1)

    def encode_previous(self, ids, offsets, need_weights=False):
        """Previous-window tokens -> (B, 1 + Lp, D) context, its validity, encoder weights."""
        valid = ids != self.pad_id  # (B, Lp)
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(
            self.id_embedding(ids)
            + self.previous_offset_embedding(offsets)
            + self.previous_position(pos)
        )
        x, valid = self._with_null(x, valid, 0)
        for block in self.previous_encoder:
            x, _ = block(x, valid)
        return x, valid

    def _contexts(self, previous_ids, previous_offsets, stimulus, behavior, behavior_valid):
        B, device = previous_ids.shape[0], previous_ids.device
        contexts = {"previous": self.encode_previous(previous_ids, previous_offsets)}
        # the readout's keys say who spiked and when, nothing else (no position in the list);
        # its values say only when: which neuron spiked reaches a target through the
        # target's attention weight alone, so that weight has to be the coupling
        when = self.previous_offset_embedding(previous_offsets)
        keys, valid = self._with_null(
            self.id_embedding(previous_ids) + when, previous_ids != self.pad_id, 0
        )
        values, _ = self._with_null(when, valid[:, 1:], 0)
        contexts["readout"] = (keys, valid, values)
        if stimulus is None or self.config.stimulus_channels == 0:
            stim_x = torch.zeros(B, 0, self.config.d_model, device=device)
            stim_valid = torch.zeros(B, 0, dtype=torch.bool, device=device)
        else:
            pos = torch.arange(stimulus.shape[1], device=device)
            stim_x = self.stimulus_in(stimulus) + self.stimulus_position(pos)  # (B, Ls, D)
            stim_valid = torch.ones(stim_x.shape[:2], dtype=torch.bool, device=device)
        contexts["stimulus"] = self._with_null(stim_x, stim_valid, 1)
        if behavior is None:
            beh_x = torch.zeros(B, 0, self.config.d_model, device=device)
            beh_valid = torch.zeros(B, 0, dtype=torch.bool, device=device)
        else:
            pos = torch.arange(behavior.shape[1], device=device)
            beh_x = self.behavior_in(behavior[..., None]) + self.behavior_position(pos)
            present = torch.ones(B, dtype=torch.bool, device=device)
            if behavior_valid is not None:
                present = behavior_valid.bool()
            beh_valid = present[:, None].expand(B, behavior.shape[1])  # (B, Lb)
        contexts["behavior"] = self._with_null(beh_x, beh_valid, 2)
        return contexts, stim_x, stim_valid

    def _readout(self, contexts, stim_x, stim_valid, need_weights):
        """Spike logits of every neuron in each current bin, each from its own query over the
        previous window's spikes: the query does not depend on the window, so its attention
        weights say which earlier spikes that neuron reads (connectivity), not which spikes are
        salient in general. Sigmoid attention, so a driver's weight does not shrink when other
        neurons are busy; values carry only the spike's time, so the identity of a driver can
        reach its target through the attention weight alone (were the values to carry it, the
        head could learn the coupling from a bag of spikes and leave the attention flat, as it
        did). The stimulus enters after the attention, as a shared rate drive."""
        keys, valid, values = contexts["readout"]  # (B, 1 + Lp, D): null + spikes
        B = keys.shape[0]
        queries = self.neuron_queries.weight.expand(B, -1, -1)  # (B, N, D)
        read, weights = self.readout(
            self.readout_norm(queries), keys, valid, False, need_weights, value_context=values
        )
        drive = self.readout_context(_masked_mean(stim_x, stim_valid))[:, None]  # (B, 1, D)
        return self.readout_head(queries + read + drive), weights  # (B, N, current_bins)

    def encode_context(
        self,
        previous_ids: torch.Tensor,  # (B, Lp)
        previous_offsets: torch.Tensor,  # (B, Lp)
        stimulus: torch.Tensor | None = None,  # (B, Ls, S)
        behavior: torch.Tensor | None = None,  # (B, Lb)
        behavior_valid: torch.Tensor | None = None,  # (B,)
    ) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Everything the current tokens attend to; computed once per window (generation
        reuses it at every step)."""
        return self._contexts(previous_ids, previous_offsets, stimulus, behavior, behavior_valid)

    def decode_tokens(
        self,
        current_ids: torch.Tensor,  # (B, Lc)
        current_offsets: torch.Tensor,  # (B, Lc)
        contexts: dict,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Current tokens through the blocks: normed hidden states (B, Lc, D), validity,
        attention maps (when asked for)."""
        valid = current_ids != self.pad_id  # (B, Lc)
        pos = torch.arange(current_ids.shape[1], device=current_ids.device)
        x = self.drop(
            self.id_embedding(current_ids)
            + self.current_offset_embedding(current_offsets)
            + self.current_position(pos)
        )  # (B, Lc, D)
        attention = {}
        for i, block in enumerate(self.self_blocks):
            x, attention[f"self.{i}"] = block(x, valid, need_weights)
        for i, block in enumerate(self.cross_blocks):
            x, w = block(x, contexts, need_weights)
            attention.update({f"cross.{i}.{k}": v for k, v in w.items()})
        for i, block in enumerate(self.final_blocks):
            x, attention[f"final.{i}"] = block(x, valid, need_weights)
        return self.norm(x), valid, attention

    def forward(
        self,
        current_ids: torch.Tensor,  # (B, Lc)
        current_offsets: torch.Tensor,  # (B, Lc)
        previous_ids: torch.Tensor,  # (B, Lp)
        previous_offsets: torch.Tensor,  # (B, Lp)
        stimulus: torch.Tensor | None = None,  # (B, Ls, S)
        behavior: torch.Tensor | None = None,  # (B, Lb) past behavior (context)
        behavior_valid: torch.Tensor | None = None,  # (B,) False: mask this window's behavior
        need_weights: bool = False,
    ) -> NeuroformerOutput:
        contexts, stim_x, stim_valid = self.encode_context(
            previous_ids, previous_offsets, stimulus, behavior, behavior_valid
        )
        x, valid, attention = self.decode_tokens(
            current_ids, current_offsets, contexts, need_weights
        )
        neural = _masked_mean(x, valid)  # (B, D)
        prev_x, prev_valid = contexts["previous"]
        behavior_pred = self.behavior_head(
            torch.cat([neural, _masked_mean(prev_x, prev_valid)], -1)
        ).squeeze(-1)  # (B,)
        readout_logits, attention["readout"] = self._readout(
            contexts, stim_x, stim_valid, need_weights
        )
        stimulus_embedding = None
        if stim_x.shape[1]:
            stimulus_embedding = F.normalize(
                self.stimulus_projection(_masked_mean(stim_x, stim_valid)), dim=-1
            )
        return NeuroformerOutput(
            id_logits=self.id_head(x),
            offset_logits=self.offset_head(x),
            behavior=behavior_pred,
            neural_embedding=F.normalize(self.neural_projection(neural), dim=-1),
            stimulus_embedding=stimulus_embedding,
            readout_logits=readout_logits,
            attention=attention if need_weights else None,
        )


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: (B, L, D), (B, L) -> (B, D)."""
    w = valid.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
