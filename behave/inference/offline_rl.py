"""Offline-RL policies at inference: bundles, normalization and batched episodes.

One :class:`Policy` drives any of the three sequence-policy models (Decision Mamba, the Decision
Transformer baseline, behavior cloning) over a batch of episodes in *environment* units: it
normalizes observations, scales returns-to-go, maps actions between the environment's bounds and
the model's [-1, 1], and keeps each episode's running return-to-go and timestep.

Two ways to condition on the past (``mode``):
- ``recurrent`` (Decision Mamba only): ``DecisionMamba.step`` carries the SSM state from the start
  of the episode; each action costs O(1) in the episode length.
- ``window``: re-encode the last ``context`` steps for every action, as Decision Transformer
  must (and as the official Decision Mamba evaluation does).

Used by the training task's rollouts, the benchmark, the MLflow pyfunc wrapper and the service;
imports no training code. Bundles hold ``weights.safetensors`` + ``config.json`` (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from behave.models.behavior_cloning import BehaviorCloning, BehaviorCloningConfig
from behave.models.decision_mamba import (
    DecisionMamba,
    DecisionMambaCache,
    DecisionMambaConfig,
    MambaCache,
    _LayerCache,
)
from behave.models.decision_transformer import DecisionTransformer, DecisionTransformerConfig

__all__ = [
    "ARCHITECTURES",
    "Normalization",
    "Episodes",
    "Policy",
    "build_model",
    "save_bundle",
    "load_policy",
    "stack_caches",
    "split_cache",
    "merge_episodes",
    "split_episodes",
]

FAMILY = "decision_mamba"
ARCHITECTURES = {
    "decision_mamba": (DecisionMamba, DecisionMambaConfig),
    "decision_transformer": (DecisionTransformer, DecisionTransformerConfig),
    "behavior_cloning": (BehaviorCloning, BehaviorCloningConfig),
}
MODES = ("recurrent", "window")


def build_model(architecture: str, config: dict) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}"
        )
    model_cls, config_cls = ARCHITECTURES[architecture]
    return model_cls(config_cls(**config))


@dataclass
class Normalization:
    """What maps environment units to model units, fitted on the training split."""

    state_mean: list[float]
    state_std: list[float]
    action_low: list[float]
    action_high: list[float]
    return_scale: float  # model sees R̂ / return_scale

    def __post_init__(self) -> None:
        self._mean = torch.tensor(self.state_mean, dtype=torch.float32)
        self._std = torch.tensor(self.state_std, dtype=torch.float32)
        self._low = torch.tensor(self.action_low, dtype=torch.float32)
        self._high = torch.tensor(self.action_high, dtype=torch.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    def states(self, obs: Tensor) -> Tensor:
        return (obs - self._mean.to(obs.device)) / self._std.to(obs.device)

    def actions_to_model(self, a: Tensor) -> Tensor:  # [low, high] -> [-1, 1]
        low, high = self._low.to(a.device), self._high.to(a.device)
        return 2 * (a - low) / (high - low) - 1

    def actions_to_env(self, a: Tensor) -> Tensor:  # [-1, 1] -> [low, high]
        low, high = self._low.to(a.device), self._high.to(a.device)
        return low + (a.clamp(-1, 1) + 1) * (high - low) / 2


@dataclass
class Episodes:
    """A batch of running episodes: what the policy remembers between actions (model units)."""

    return_to_go: Tensor  # (n,) env units: target return minus rewards received so far
    timestep: Tensor  # (n,) int64: the step whose action comes next
    cache: DecisionMambaCache | None = None  # recurrent mode
    # window mode: the steps so far, (n, t, ...) each, trimmed to the last ``context`` steps
    history: dict[str, Tensor] = field(default_factory=dict)
    last_action: Tensor | None = None  # (n, A) model units: the action returned last time

    @property
    def size(self) -> int:
        return int(self.timestep.shape[0])


class Policy:
    """A trained model + its normalization, acting on batches of episodes (no grad)."""

    def __init__(
        self,
        model: nn.Module,
        architecture: str,
        normalization: Normalization,
        *,
        mode: str | None = None,
        context: int | None = None,
        device: str | torch.device = "cpu",
        meta: dict | None = None,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}")
        mode = mode or ("recurrent" if architecture == "decision_mamba" else "window")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "recurrent" and architecture != "decision_mamba":
            raise ValueError("recurrent mode needs decision_mamba; use mode='window'")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.architecture, self.mode = architecture, mode
        self.norm = normalization
        self.context = int(context or model.config.context_length)
        self.state_dim = len(normalization.state_mean)
        self.act_dim = len(normalization.action_low)
        self.max_timestep = int(getattr(model.config, "max_timestep", 1 << 30))
        self.meta = meta or {}

    # ---- episodes ------------------------------------------------------------------------
    def start(self, n: int, target_return: float | Tensor) -> Episodes:
        """``n`` new episodes conditioned on ``target_return`` (scalar or (n,), env units)."""
        rtg = torch.as_tensor(target_return, dtype=torch.float32, device=self.device)
        rtg = rtg.expand(n).clone() if rtg.dim() == 0 else rtg.clone()
        episodes = Episodes(rtg, torch.zeros(n, dtype=torch.long, device=self.device))
        if self.mode == "recurrent":
            episodes.cache = self.model.allocate_cache(n, self.device)
        return episodes

    @torch.no_grad()
    def act(
        self,
        episodes: Episodes,
        observation: np.ndarray | Tensor,
        reward: np.ndarray | Tensor | None,
    ) -> np.ndarray:
        """The next action (n, A) in env units, given each episode's newest observation and the
        reward its previous action earned (``None`` on the first step)."""
        obs = torch.tensor(np.asarray(observation, np.float32), device=self.device)
        if reward is not None:
            episodes.return_to_go -= torch.as_tensor(
                np.asarray(reward, np.float32), device=self.device
            )
        if (reward is None) != (episodes.last_action is None):
            raise ValueError("reward is required after the first step and must be None on it")
        state = self.norm.states(obs)  # (n, S)
        rtg = (episodes.return_to_go / self.norm.return_scale).unsqueeze(-1)  # (n, 1)
        t = episodes.timestep.clamp(max=self.max_timestep - 1)  # (n,)
        if self.mode == "recurrent":
            a = self.model.step(rtg, state, t, episodes.cache, previous_action=episodes.last_action)
        else:
            a = self._act_window(episodes, rtg, state, t)
        episodes.last_action = a
        episodes.timestep = episodes.timestep + 1
        return self.norm.actions_to_env(a).cpu().numpy()

    def _act_window(self, episodes: Episodes, rtg: Tensor, state: Tensor, t: Tensor) -> Tensor:
        h = episodes.history
        if h and episodes.last_action is not None:  # the previous step's action is now known
            h["actions"][:, -1] = episodes.last_action
        step = {
            "returns_to_go": rtg.unsqueeze(1),
            "states": state.unsqueeze(1),
            "actions": torch.zeros(state.shape[0], 1, self.act_dim, device=self.device),
            "timesteps": t.unsqueeze(1),
        }
        for k, v in step.items():
            h[k] = torch.cat([h[k], v], dim=1)[:, -self.context :] if k in h else v
        out = self.model(h["returns_to_go"], h["states"], h["actions"], h["timesteps"])
        return out.action_preds[:, -1]  # (n, A)

    # ---- one-shot (stateless) ------------------------------------------------------------
    @torch.no_grad()
    def act_on_history(
        self,
        returns_to_go: np.ndarray,
        observations: np.ndarray,
        actions: np.ndarray,
    ) -> np.ndarray:
        """Stateless: the action after one history, env units.

        returns_to_go (T,), observations (T, S), actions (T-1, A): R̂_t, s_t for t = 0..T-1 and
        the actions taken before the last state. Reads the last ``context`` steps in window
        mode and the whole history in recurrent mode (same model, ``forward``).
        """
        T = len(observations)
        rtg = torch.tensor(np.asarray(returns_to_go, np.float32), device=self.device)
        obs = torch.tensor(np.asarray(observations, np.float32), device=self.device)
        act = torch.tensor(np.asarray(actions, np.float32), device=self.device).reshape(
            -1, self.act_dim
        )
        act = torch.cat([self.norm.actions_to_model(act), act.new_zeros(1, self.act_dim)])
        t = torch.arange(T, device=self.device).clamp(max=self.max_timestep - 1)
        if self.mode == "window":
            start = max(0, T - self.context)
            rtg, obs, act, t = rtg[start:], obs[start:], act[start:], t[start:]
        out = self.model(
            (rtg / self.norm.return_scale)[None, :, None],
            self.norm.states(obs)[None],
            act[None],
            t[None],
        )
        return self.norm.actions_to_env(out.action_preds[0, -1]).cpu().numpy()

    def predict_frame(self, frame):
        """MLflow pyfunc: one history per row (``returns_to_go``, ``observations``,
        ``actions`` list columns, as in :meth:`act_on_history`) -> an ``action`` column."""
        import pandas as pd

        actions = [
            self.act_on_history(
                np.asarray(row["returns_to_go"], np.float32),
                np.asarray([list(o) for o in row["observations"]], np.float32),
                np.asarray([list(a) for a in row["actions"]], np.float32),
            ).tolist()
            for _, row in frame.iterrows()
        ]
        return pd.DataFrame({"action": actions})


# ---- caches of many sessions (the service batches episodes of different clients) --------
def stack_caches(caches: list[DecisionMambaCache]) -> DecisionMambaCache:
    """Concatenate per-episode caches along the batch; all must have consumed >= 1 step."""
    if any(c.num_steps == 0 for c in caches):
        raise ValueError("stack only caches that have consumed a step (fresh ones are empty)")
    layers = []
    for per_layer in zip(*(c.layers for c in caches), strict=True):
        layers.append(
            _LayerCache(
                coarse=MambaCache(
                    torch.cat([lc.coarse.conv for lc in per_layer]),
                    torch.cat([lc.coarse.ssm for lc in per_layer]),
                ),
                fine=MambaCache(
                    torch.cat([lc.fine.conv for lc in per_layer]),
                    torch.cat([lc.fine.ssm for lc in per_layer]),
                ),
                fine_feature=torch.cat([lc.fine_feature for lc in per_layer]),
                group=[torch.cat(g) for g in zip(*(lc.group for lc in per_layer), strict=True)],
            )
        )
    return DecisionMambaCache(
        layers, num_steps=1, last_timestep=torch.cat([c.last_timestep for c in caches])
    )


def split_cache(cache: DecisionMambaCache, sizes: list[int]) -> list[DecisionMambaCache]:
    """Inverse of :func:`stack_caches`: one cache per group of ``sizes`` episodes."""
    out = [DecisionMambaCache([], cache.num_steps) for _ in sizes]

    def split(t: Tensor):  # copies: a stored session must not pin the whole merged batch
        return [part.clone() for part in t.split(sizes)]

    for lc in cache.layers:
        parts = {
            "cc": split(lc.coarse.conv),
            "cs": split(lc.coarse.ssm),
            "fc": split(lc.fine.conv),
            "fs": split(lc.fine.ssm),
            "ff": split(lc.fine_feature),
            "g": [split(g) for g in lc.group],
        }
        for i, c in enumerate(out):
            c.layers.append(
                _LayerCache(
                    MambaCache(parts["cc"][i], parts["cs"][i]),
                    MambaCache(parts["fc"][i], parts["fs"][i]),
                    parts["ff"][i],
                    [g[i] for g in parts["g"]],
                )
            )
    if cache.last_timestep is not None:
        for c, t in zip(out, split(cache.last_timestep), strict=True):
            c.last_timestep = t
    return out


def merge_episodes(parts: list[Episodes]) -> Episodes:
    """One batch from several running episodes (each past its first action), e.g. sessions
    of different clients. Start fresh ones together with ``Policy.start(n, target_returns)``.
    """
    if any(p.last_action is None for p in parts):
        raise ValueError("merge only running episodes; start fresh ones with Policy.start")
    merged = Episodes(
        torch.cat([p.return_to_go for p in parts]),
        torch.cat([p.timestep for p in parts]),
        last_action=torch.cat([p.last_action for p in parts]),
    )
    if parts[0].cache is not None:
        merged.cache = stack_caches([p.cache for p in parts])
    if parts[0].history:
        # window mode: histories are trimmed to the last ``context`` steps; shorter ones
        # (young episodes) cannot share a batch with longer ones
        lengths = {p.history["timesteps"].shape[1] for p in parts}
        if len(lengths) > 1:
            raise ValueError("window-mode episodes must have equal history lengths to merge")
        merged.history = {k: torch.cat([p.history[k] for p in parts]) for k in parts[0].history}
    return merged


def split_episodes(merged: Episodes, sizes: list[int]) -> list[Episodes]:
    """Inverse of :func:`merge_episodes` (after ``Policy.act`` updated the batch)."""
    rtg, ts = merged.return_to_go.split(sizes), merged.timestep.split(sizes)
    last = (
        merged.last_action.split(sizes) if merged.last_action is not None else [None] * len(sizes)
    )
    caches = split_cache(merged.cache, sizes) if merged.cache is not None else [None] * len(sizes)
    hist = {k: v.split(sizes) for k, v in merged.history.items()}
    return [
        Episodes(
            rtg[i].clone(),
            ts[i].clone(),
            cache=caches[i],
            history={k: v[i].clone() for k, v in hist.items()},
            last_action=None if last[i] is None else last[i].clone(),
        )
        for i in range(len(sizes))
    ]


# ---- bundles -------------------------------------------------------------------------------
def save_bundle(
    model: nn.Module,
    architecture: str,
    normalization: Normalization,
    out_dir: Path,
    extra: dict | None = None,
) -> Path:
    """``weights.safetensors`` + ``config.json`` (family, architecture, model config, units)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "weights.safetensors"))
    meta = {
        "family": FAMILY,
        "architecture": architecture,
        "model": asdict(model.config),
        "normalization": normalization.to_dict(),
        **(extra or {}),
    }
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def load_policy(
    bundle_dir: Path, device: str | torch.device = "cpu", mode: str | None = None
) -> Policy:
    bundle_dir = Path(bundle_dir)
    meta = json.loads((bundle_dir / "config.json").read_text())
    model = build_model(meta["architecture"], meta["model"])
    model.load_state_dict(load_file(str(bundle_dir / "weights.safetensors")))  # no pickle
    return Policy(
        model,
        meta["architecture"],
        Normalization(**meta["normalization"]),
        mode=mode,
        device=device,
        meta=meta,
    )
