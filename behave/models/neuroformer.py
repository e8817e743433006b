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
- Connectivity comes from a **coupling readout** (:class:`CouplingReadout`), not from the
  next-token blocks' attention: a next-token query does not know which neuron comes next, so
  its attention is not specific to a target (its maps score AUROC 0.59-0.79 on our circuit).
  The readout gives every target neuron its own query and every source neuron its own key and
  reads their score linearly, so the map it attends with is the (signed) coupling.
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

__all__ = ["NeuroformerConfig", "Neuroformer", "NeuroformerOutput", "Attention", "CouplingReadout"]


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
    readout_heads: int = 2  # coupling readout heads, each with its own lag kernel
    readout_dim: int = 64  # query/key size per readout head (rank of its coupling <= this)

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
    readout_logits: torch.Tensor | None  # (B, N, current_bins); None when not asked for
    attention: dict[str, torch.Tensor] | None  # layer name -> (B, H, Lq, Lk), on request


class Attention(nn.Module):
    """Multi-head attention; fused kernel unless the weights are asked for."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, Lq, D = x.shape
        H = self.num_heads
        q = self.q(x).view(B, Lq, H, D // H).transpose(1, 2)  # (B, H, Lq, Dh)
        k, v = self.kv(context).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)
        allowed = key_valid[:, None, None, :]  # (B, 1, 1, Lk)
        if causal:
            Lk = context.shape[1]
            tril = torch.ones(Lq, Lk, dtype=torch.bool, device=x.device).tril()
            allowed = allowed & tril  # (B, 1, Lq, Lk): no attention to later tokens
        weights = None
        if need_weights:
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


class CouplingReadout(nn.Module):
    """Per-neuron readout: does target neuron n spike in bin c of the current window?

        logit[b, n, c] = base[n] + stimulus[b, c] . U[:, n]
                       + sum_h sum_{spikes s, 1 <= c - t_s <= max_lag} A_h[n, j_s] * kernel_h[c - t_s]
        A_h[n, j] = q_h(n) . k_h(j) / sqrt(readout_dim)

    Each target neuron has one learned query per head, each source neuron one key; A_h is their
    attention score, read out **linearly** (no softmax, no sigmoid). Every spike before bin c —
    in the previous window and earlier in the current one, never bin c itself — counts with
    its source's score times the head's temporal kernel. So the map the targets attend with is
    the coupling: signed (inhibition is a negative score), identical in every window, and
    read off the parameters (:meth:`coupling`).

    Why this form (measured on the 100-neuron circuit, readout trained alone, 3,000 steps;
    AUROC against the true adjacency): one sigmoid/softmax attention over the previous window
    whose values carried only spike timing learned rates, not couplings (0.57-0.63); gating a
    signed kernel with sigmoid weights reached 0.86-0.89, missing most weak and inhibitory
    edges, because a saturating gate starves them of gradient; the linear score reached 0.96
    (0.94 after 1,000 steps). Seeing the current window's earlier spikes matters: with the
    previous window alone, bins 1-4 of the current window miss their 1-3 bin drivers.
    """

    def __init__(self, config: NeuroformerConfig):
        super().__init__()
        N, D, H, K = config.num_neurons, config.d_model, config.readout_heads, config.readout_dim
        self.heads, self.dim = H, K
        self.max_lag = config.previous_bins + config.current_bins - 1  # oldest spike to last bin
        self.targets = nn.Embedding(N, D)  # one query source per target neuron
        self.sources = nn.Embedding(N, D)  # one key source per source neuron
        self.q = nn.Linear(D, H * K)
        self.k = nn.Linear(D, H * K)
        # kernel[h, lag]: effect of one spike `lag` bins back (index 0 unused: never the same bin);
        # small and positive so every score gets gradient from the first step
        self.kernel = nn.Parameter(torch.full((H, self.max_lag + 1), 0.1))
        self.base = nn.Parameter(torch.full((N,), -2.5))  # ~8% per 10 ms bin before training
        self.stimulus = nn.Linear(max(config.stimulus_channels, 1), N)

    def scores(self) -> torch.Tensor:
        """(H, N target, N source) attention scores A_h[n, j]."""
        N, H, K = self.targets.num_embeddings, self.heads, self.dim
        q = self.q(self.targets.weight).view(N, H, K).transpose(0, 1)  # (H, N, K)
        k = self.k(self.sources.weight).view(N, H, K).transpose(0, 1)
        return q @ k.transpose(1, 2) / K**0.5

    def coupling(self) -> torch.Tensor:
        """(N source, N target) connection strength: sum_h |A_h[n, j]| * ||kernel_h||, how much
        one spike of j moves n's log-odds over the lags (attention weight x value norm,
        Kobayashi et al. 2020, "Attention is Not Only a Weight")."""
        norm = self.kernel[:, 1:].norm(dim=-1)  # (H,)
        return torch.einsum("hnj,h->jn", self.scores().abs(), norm)

    def forward(
        self,
        ids: torch.Tensor,  # (B, L) source neuron of each spike; >= N: not a spike
        times: torch.Tensor,  # (B, L) its bin relative to the current window's first bin
        stimulus: torch.Tensor | None,  # (B, C, S) the current window's stimulus, or None
        current_bins: int,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        N = self.targets.num_embeddings
        spike = ids < N  # (B, L)
        lag = torch.arange(current_bins, device=ids.device) - times[..., None]  # (B, L, C)
        counts = spike[..., None] & (lag >= 1) & (lag <= self.max_lag)  # causal: earlier bins
        kernel = self.kernel[:, lag.clamp(0, self.max_lag)] * counts  # (H, B, L, C)
        scores = self.scores()  # (H, N, N)
        weights = scores[:, :, ids.clamp(max=N - 1)] * spike[None, None]  # (H, N, B, L)
        logits = torch.einsum("hnbl,hblc->bnc", weights, kernel) + self.base[:, None]
        if stimulus is not None:
            logits = logits + self.stimulus(stimulus).transpose(1, 2)  # (B, N, C)
        return logits, weights.permute(2, 0, 1, 3) if need_weights else None  # (B, H, N, L)


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
        self.readout = CouplingReadout(config)
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

    def _readout(
        self, current_ids, current_offsets, previous_ids, previous_offsets, stimulus, need_weights
    ):
        """The coupling readout over every spike of the previous window and the current one
        (SOS, EOS and padding are not spikes; each bin sees only earlier bins)."""
        C, P = self.config.current_bins, self.config.previous_bins
        current_spike = (current_offsets < C) & (current_ids < self.pad_id)
        ids = torch.cat([previous_ids, torch.where(current_spike, current_ids, self.pad_id)], 1)
        times = torch.cat([previous_offsets - P, current_offsets], 1)  # (B, Lp + Lc)
        current_stimulus = None
        if stimulus is not None and self.config.stimulus_channels:
            current_stimulus = stimulus[:, P : P + C]  # (B, C, S)
        return self.readout(ids, times, current_stimulus, C, need_weights)

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
        with_readout: bool = True,
    ) -> NeuroformerOutput:
        """``with_readout=False`` skips the coupling readout (a second pass over every spike)
        where nothing reads it: behavior decoding, training without its loss."""
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
        readout_logits = None
        if with_readout:
            readout_logits, attention["readout"] = self._readout(
                current_ids, current_offsets, previous_ids, previous_offsets, stimulus, need_weights
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
