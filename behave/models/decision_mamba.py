"""Decision Mamba: a multi-grained selective state space model for offline RL.

Paper: Lv et al., "Decision Mamba: A Multi-Grained State Space Model with Self-Evolution
Regularization for Offline RL", NeurIPS 2024, arXiv 2406.05427 (https://arxiv.org/abs/2406.05427).
Official implementation: https://github.com/aopolin-lv/DecisionMamba (a modified copy of
transformers' ``MambaBlock`` in ``transformers/src/transformers/models/mamba/modeling_mamba.py``
and the model in ``experiment-d4rl/decision_transformer/models/decision_transformer.py``).
Mamba block: Gu & Dao, arXiv 2312.00752; our selective scan is ``behave.ops.selective_scan``.

The trajectory is tokenized as in Decision Transformer, three tokens per timestep t:
(R̂_1, s_1, a_1, R̂_2, s_2, a_2, ...). Every layer runs a *coarse-grained* Mamba over those 3L
tokens and a *fine-grained* Mamba over the L per-step groups (R̂_t, s_t, a_t), each group fused
into one vector, and adds the fine-grained feature back onto the tokens. The action a_t is read
from the state token s_t; the next state s_{t+1} and next return R̂_{t+1} from the action token
a_t (the paper's auxiliary losses).

Where we differ from the paper / official code, and why:
- No action leak in the fine-grained branch. The official block fuses each step's three tokens
  (Conv1d, kernel 3, stride 3), runs the group Mamba and adds the result back with
  ``.repeat(1, 3, 1)``: a *tiling* of the L group features over the 3L tokens (token i gets group
  i mod L), so token s_t sees a_t and, for most i, groups of later steps. We add group features
  by step (``repeat_interleave``) and shift them one step: the feature added to step t's tokens
  summarizes groups < t (zero for t = 0). Nothing at step t's state token depends on a_t.
- The fusion is a linear map of the concatenated group (3D -> D), which is what a kernel-3,
  stride-3 Conv1d is; it reads the coarse block's pre-normed tokens, as the official code does.
- The fine-grained Mamba is a full pre-norm residual block (the official one is a bare mixer),
  followed by a LayerNorm as in the official code.
- The timestep embedding is added to each token before the embedding LayerNorm (Decision
  Transformer's order; the official code adds it after).
- Small model trained from scratch (the official code starts from a mamba-130m configuration:
  24 layers, D = 768); no attention mask: Mamba has none (the official code passes one that
  Mamba ignores). Pad windows on the *right*: the model is causal, so padding after the last
  real step never changes earlier predictions; mask padded steps in the loss.
- Recurrent inference (``step``) carries the state from the start of the episode at O(1) cost
  per action and equals ``forward`` on the same sequence. The official evaluation instead re-runs
  ``forward`` on the last ``context_length`` steps, left-padded, for every action.
- Self-evolving regularization (progressive self-distillation: the action target becomes
  (1 - α_k) a_t + α_k â_t, â_t the model's own earlier, detached prediction, α_k growing with
  training progress up to a bound) is part of the training objective, so it lives in the task:
  it needs only ``action_preds`` from ``forward`` (run under ``torch.no_grad()`` for â). Note the
  released official loss hard-codes α = 0, i.e. the regularization is switched off there.

Action scaling: with ``action_tanh`` the action head is ``action_scale * tanh(.)``, so continuous
actions must lie in [-action_scale, action_scale] (D4RL convention: [-1, 1]); rescale other
action bounds in the data module.

Axis glossary: B batch, L timesteps, T = 3L tokens, D d_model, E d_inner = expand * D,
N d_state, R dt_rank, K conv kernel, S state_dim, A act_dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from behave.ops.selective_scan import selective_scan, selective_scan_step

__all__ = [
    "TOKENS_PER_STEP",
    "DecisionMambaConfig",
    "DecisionMambaOutput",
    "MambaCache",
    "DecisionMambaCache",
    "MambaBlock",
    "MultiGrainedLayer",
    "DecisionMamba",
]

TOKENS_PER_STEP = 3  # (R̂_t, s_t, a_t)
RETURN, STATE, ACTION = range(TOKENS_PER_STEP)  # token index within a step
NORMS = ("layernorm", "rmsnorm")


@dataclass
class DecisionMambaConfig:
    state_dim: int  # S: |s|, observation size
    act_dim: int  # A: |a|, continuous action size
    context_length: int = 20  # K: timesteps per training window (the model has no length limit)
    max_timestep: int = 1000  # timestep embedding size: t in [0, max_timestep)
    d_model: int = 128  # D: token width
    num_layers: int = 3  # multi-grained layers (coarse + fine-grained Mamba each)
    d_state: int = 16  # N: SSM state size per channel
    expand: int = 2  # E = expand * D: Mamba inner width
    d_conv: int = 4  # K: depthwise causal convolution kernel
    dt_rank: int | None = None  # R: rank of Δ's projection; None = ceil(D / 16)
    dt_min: float = 1e-3  # Δ at init is log-uniform in [dt_min, dt_max]
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    norm: str = "rmsnorm"  # pre-norm of every Mamba block: "rmsnorm" (official) or "layernorm"
    norm_eps: float = 1e-5
    dropout: float = 0.1  # on the token embeddings and every layer's residual update
    action_tanh: bool = True  # a_t = action_scale * tanh(.): actions in [-scale, scale]
    action_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "state_dim",
            "act_dim",
            "context_length",
            "max_timestep",
            "d_model",
            "num_layers",
            "d_state",
            "expand",
            "d_conv",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dt_rank is None:
            self.dt_rank = math.ceil(self.d_model / 16)
        if self.dt_rank < 1:
            raise ValueError(f"dt_rank must be >= 1 or None, got {self.dt_rank}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.action_scale <= 0:
            raise ValueError(f"action_scale must be > 0, got {self.action_scale}")

    @property
    def d_inner(self) -> int:  # E
        return self.expand * self.d_model


@dataclass
class DecisionMambaOutput:
    action_preds: Tensor  # (B, L, A): a_t, read from the state token s_t
    state_preds: Tensor  # (B, L, S): s_{t+1}, read from the action token a_t
    return_preds: Tensor  # (B, L, 1): R̂_{t+1}, read from the action token a_t
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + each layer, (B, 3L, D)


@dataclass
class MambaCache:
    """Recurrent state of one Mamba block."""

    conv: Tensor  # (B, E, K-1): the last K-1 inputs of the causal convolution
    ssm: Tensor  # (B, E, N): the SSM state, float32


@dataclass
class _LayerCache:
    coarse: MambaCache
    fine: MambaCache
    fine_feature: Tensor  # (B, D): fine-grained feature added to the current step's tokens
    group: list[Tensor] = field(default_factory=list)  # current step's pre-normed tokens, (B, D)


@dataclass
class DecisionMambaCache:
    """One batch of episodes' recurrent state; ``DecisionMamba.step`` updates it in place."""

    layers: list[_LayerCache]
    num_steps: int = 0  # timesteps consumed so far (R̂_t and s_t fed)
    last_timestep: Tensor | None = None  # (B,): timestep of the step awaiting its action


def _make_norm(config: DecisionMambaConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba-1 block: x + out_proj(SSM(conv(in_proj(norm(x)))) * silu(z))."""

    def __init__(self, config: DecisionMambaConfig) -> None:
        super().__init__()
        D, E, N, R = config.d_model, config.d_inner, config.d_state, config.dt_rank
        self.d_state, self.dt_rank = N, R
        self.norm = _make_norm(config)
        self.in_proj = nn.Linear(D, 2 * E, bias=False)  # -> (u, z)
        self.conv1d = nn.Conv1d(E, E, config.d_conv, groups=E, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)  # -> (Δ low rank, B, C)
        self.dt_proj = nn.Linear(R, E)  # bias = softplus^-1(Δ at init)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1.0)).repeat(E, 1))  # (E, N)
        self.D = nn.Parameter(torch.ones(E))  # skip connection
        self.out_proj = nn.Linear(E, D, bias=False)
        self.A_log._no_weight_decay = self.D._no_weight_decay = True  # mamba-ssm's marker
        # Mamba's Δ init: dt log-uniform in [dt_min, dt_max], stored through softplus's inverse.
        nn.init.uniform_(self.dt_proj.weight, -(R**-0.5), R**-0.5)
        log_dt = torch.rand(E) * (math.log(config.dt_max) - math.log(config.dt_min))
        dt = torch.exp(log_dt + math.log(config.dt_min)).clamp(min=config.dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(self.norm(x))  # (B, L, D)

    def mix(self, h: Tensor) -> Tensor:
        """The mixer on pre-normed input h (B, L, D) -> (B, L, D), no residual."""
        L = h.shape[1]
        u, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
        u = F.silu(self.conv1d(u)[..., :L])  # (B, E, L): causal depthwise conv
        dt, B, C = self.x_proj(u.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )  # (B, L, R), (B, L, N), (B, L, N)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, E, L); bias in the scan
        y = selective_scan(
            u,
            delta,
            -torch.exp(self.A_log.float()),  # (E, N)
            B.transpose(1, 2),  # (B, N, L)
            C.transpose(1, 2),  # (B, N, L)
            self.D.float(),
            z,
            self.dt_proj.bias.float(),
            delta_softplus=True,
        )  # (B, E, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, D)

    def allocate_cache(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> MambaCache:
        E, K = self.conv1d.weight.shape[0], self.conv1d.weight.shape[-1]
        device = device or self.A_log.device
        conv = torch.zeros(batch, E, K - 1, device=device, dtype=dtype or self.A_log.dtype)
        return MambaCache(conv, torch.zeros(batch, E, self.d_state, device=device))

    def step(self, x_t: Tensor, cache: MambaCache) -> tuple[Tensor, MambaCache]:
        """One token x_t (B, D) -> (y_t (B, D), new cache); the input cache is not modified."""
        y_t, cache = self.mix_step(self.norm(x_t), cache)
        return x_t + y_t, cache

    def mix_step(self, h_t: Tensor, cache: MambaCache) -> tuple[Tensor, MambaCache]:
        """``mix`` for one pre-normed token h_t (B, D), O(1) in the sequence length."""
        u, z = self.in_proj(h_t).chunk(2, dim=-1)  # (B, E) each
        window = torch.cat([cache.conv, u.unsqueeze(-1)], dim=-1)  # (B, E, K)
        u = (window * self.conv1d.weight.squeeze(1)).sum(-1)  # (B, E)
        u = F.silu(u + self.conv1d.bias)  # (B, E)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        y, ssm = selective_scan_step(
            cache.ssm,
            u,
            F.linear(dt, self.dt_proj.weight),  # (B, E)
            -torch.exp(self.A_log.float()),
            B,  # (B, N)
            C,  # (B, N)
            self.D.float(),
            z,
            self.dt_proj.bias.float(),
            delta_softplus=True,
        )  # (B, E), (B, E, N)
        return self.out_proj(y), MambaCache(window[..., 1:], ssm)


class MultiGrainedLayer(nn.Module):
    """Coarse Mamba over the 3L tokens + fine-grained Mamba over the L fused (R̂, s, a) groups."""

    def __init__(self, config: DecisionMambaConfig) -> None:
        super().__init__()
        D = config.d_model
        self.coarse = MambaBlock(config)
        self.fuse = nn.Linear(TOKENS_PER_STEP * D, D)  # = Conv1d(D, D, kernel 3, stride 3)
        self.fine = MambaBlock(config)
        self.fine_norm = nn.LayerNorm(D)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        h = self.coarse.norm(x)  # (B, T, D)
        coarse = self.coarse.mix(h)  # (B, T, D)
        groups = self.fuse(h.reshape(B, T // TOKENS_PER_STEP, TOKENS_PER_STEP * D))  # (B, L, D)
        fine = self.fine_norm(self.fine(groups))  # (B, L, D): fine[t] summarizes groups <= t
        fine = F.pad(fine[:, :-1], (0, 0, 1, 0))  # (B, L, D): step t gets groups < t (no a_t)
        fine = fine.repeat_interleave(TOKENS_PER_STEP, dim=1)  # (B, T, D)
        return x + self.drop(coarse + fine)

    def allocate_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> _LayerCache:
        D = self.fuse.out_features
        return _LayerCache(
            coarse=self.coarse.allocate_cache(batch, device, dtype),
            fine=self.fine.allocate_cache(batch, device, dtype),
            fine_feature=torch.zeros(batch, D, device=device, dtype=dtype),
        )

    def step(self, x_t: Tensor, cache: _LayerCache) -> Tensor:
        """One token x_t (B, D) -> (B, D); updates ``cache`` in place (a step ends at a_t)."""
        h_t = self.coarse.norm(x_t)  # (B, D)
        coarse, cache.coarse = self.coarse.mix_step(h_t, cache.coarse)  # (B, D)
        out = x_t + self.drop(coarse + cache.fine_feature)  # (B, D)
        cache.group.append(h_t)
        if len(cache.group) == TOKENS_PER_STEP:  # step complete: its group feeds the next step
            group = self.fuse(torch.cat(cache.group, dim=-1))  # (B, D)
            fine, cache.fine = self.fine.step(group, cache.fine)  # (B, D)
            cache.fine_feature, cache.group = self.fine_norm(fine), []
        return out


class DecisionMamba(nn.Module):
    def __init__(self, config: DecisionMambaConfig) -> None:
        super().__init__()
        self.config = config
        D = config.d_model
        self.embed_return = nn.Linear(1, D)
        self.embed_state = nn.Linear(config.state_dim, D)
        self.embed_action = nn.Linear(config.act_dim, D)
        self.embed_timestep = nn.Embedding(config.max_timestep, D)
        self.embed_ln = nn.LayerNorm(D)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(MultiGrainedLayer(config) for _ in range(config.num_layers))
        self.norm_f = _make_norm(config)
        self.predict_action = nn.Linear(D, config.act_dim)
        self.predict_state = nn.Linear(D, config.state_dim)
        self.predict_return = nn.Linear(D, 1)
        nn.init.normal_(self.embed_timestep.weight, std=0.02)
        # GPT-2 / mamba-ssm scaled init of residual projections: two per layer here.
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight"):
                with torch.no_grad():
                    p /= math.sqrt(2 * config.num_layers)

    def embed(self, x: Tensor, kind: int, timesteps: Tensor) -> Tensor:
        """Token embeddings of one kind (RETURN, STATE or ACTION): (B, [L,] F) -> (B, [L,] D)."""
        embed = (self.embed_return, self.embed_state, self.embed_action)[kind]
        return self.drop(self.embed_ln(embed(x) + self.embed_timestep(timesteps)))

    def act(self, h: Tensor) -> Tensor:
        """Action head on final state-token features (..., D) -> (..., A)."""
        a = self.predict_action(h)
        return self.config.action_scale * torch.tanh(a) if self.config.action_tanh else a

    def forward(
        self,
        returns_to_go: Tensor,
        states: Tensor,
        actions: Tensor,
        timesteps: Tensor,
        output_hidden_states: bool = False,
    ) -> DecisionMambaOutput:
        """returns_to_go (B, L, 1), states (B, L, S), actions (B, L, A), timesteps (B, L) int."""
        self._check_inputs(returns_to_go, states, actions, timesteps)
        B, L = timesteps.shape
        tokens = torch.stack(
            [
                self.embed(returns_to_go, RETURN, timesteps),
                self.embed(states, STATE, timesteps),
                self.embed(actions, ACTION, timesteps),
            ],
            dim=2,
        )  # (B, L, 3, D)
        x = tokens.reshape(B, TOKENS_PER_STEP * L, -1)  # (B, T, D): R̂_1, s_1, a_1, R̂_2, ...
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x)  # (B, T, D)
            if hidden is not None:
                hidden.append(x)
        x = self.norm_f(x).reshape(B, L, TOKENS_PER_STEP, -1)  # (B, L, 3, D)
        return DecisionMambaOutput(
            action_preds=self.act(x[:, :, STATE]),  # (B, L, A)
            state_preds=self.predict_state(x[:, :, ACTION]),  # (B, L, S)
            return_preds=self.predict_return(x[:, :, ACTION]),  # (B, L, 1)
            hidden_states=tuple(hidden) if hidden is not None else None,
        )

    def allocate_cache(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> DecisionMambaCache:
        """An empty cache for ``batch`` new episodes."""
        device = device or self.embed_ln.weight.device
        dtype = dtype or self.embed_ln.weight.dtype
        return DecisionMambaCache(
            [layer.allocate_cache(batch, device, dtype) for layer in self.layers]
        )

    def _feed(self, token: Tensor, cache: DecisionMambaCache) -> Tensor:
        """One embedded token (B, D) through every layer -> final features (B, D)."""
        for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
            token = layer.step(token, layer_cache)
        return self.norm_f(token)

    def step(
        self,
        return_to_go_t: Tensor,
        state_t: Tensor,
        timestep_t: Tensor,
        cache: DecisionMambaCache,
        previous_action: Tensor | None = None,
    ) -> Tensor:
        """The action for the newest state, O(1) in the episode length: (B, A).

        return_to_go_t (B, 1), state_t (B, S), timestep_t (B,) int; ``previous_action`` (B, A)
        is the action actually taken at the previous step (required from the second call on,
        omitted on the first). Feeds a_{t-1}, R̂_t, s_t into ``cache`` (updated in place).
        Equal to ``forward(...).action_preds[:, t]`` on the same trajectory.
        """
        if (previous_action is None) != (cache.num_steps == 0):
            raise ValueError(
                "previous_action is required after the first step and must be omitted on it "
                f"(this cache has consumed {cache.num_steps} steps)"
            )
        if previous_action is not None:
            self._feed(self.embed(previous_action, ACTION, cache.last_timestep), cache)
        self._feed(self.embed(return_to_go_t, RETURN, timestep_t), cache)
        h = self._feed(self.embed(state_t, STATE, timestep_t), cache)  # (B, D)
        cache.num_steps += 1
        cache.last_timestep = timestep_t
        return self.act(h)

    def _check_inputs(
        self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor
    ) -> None:
        if timesteps.dim() != 2:
            raise ValueError(f"timesteps must be (B, L), got {tuple(timesteps.shape)}")
        B, L = timesteps.shape
        c = self.config
        expected = {
            "returns_to_go": (returns_to_go, (B, L, 1)),
            "states": (states, (B, L, c.state_dim)),
            "actions": (actions, (B, L, c.act_dim)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must be {shape} (B, L, ...), got {tuple(tensor.shape)}")
