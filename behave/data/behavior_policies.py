"""Trained behavior policies for D4RL-style MuJoCo datasets: TD3 runs, checkpoints, replay buffer.

D4RL: Fu et al. 2020, https://arxiv.org/abs/2004.07219 (official:
https://github.com/Farama-Foundation/D4RL). Its MuJoCo datasets come from one online training
run per environment: ``expert`` is the fully trained policy, ``medium`` a checkpoint of the same
run that scores about 1/3 of the expert, ``medium-replay`` every transition in the replay buffer
up to that checkpoint. We make the same three things with stable-baselines3's TD3 (Fujimoto et
al. 2018, https://arxiv.org/abs/1802.09477), and :mod:`behave.data.offline_rl` records the
datasets with them.

Where we differ from D4RL, and why:

- TD3 with [64, 64] networks, batch 128 and one torch thread instead of SAC with [256, 256]:
  on 2 CPU cores that is ~4-5x more gradient steps per second (~130-180/s). Budgets are 1e5
  steps, not 1e6, so the "expert" is weaker than D4RL's (Hopper ~2800 vs ~3200 return).
  Walker2d is the exception: small networks never learned to walk there, so it trains with
  TD3's published settings ([256, 256], batch 256, lr 3e-4; ~110 steps/s) for 3e5 steps.
- ``expert`` is the checkpoint with the best deterministic return, not the last one: TD3 with
  small nets and short budgets collapses now and then (our Hopper run: 2841 at 100k steps,
  896 at 120k), where D4RL's 1M-step SAC had settled. ``TD3Config(expert="final")`` gives
  D4RL's choice.
- ``medium`` is chosen after training among the saved checkpoints (the one whose deterministic
  return is closest to 1/3 of the way from random to expert, i.e. normalized score 33), rather
  than by stopping the run when it first gets there; ``medium-replay`` is the buffer up to that
  checkpoint all the same.
- The replay buffer holds every transition of the run (its size is the step budget), the first
  ``learning_starts`` of them from uniform random actions, as SB3 (and D4RL's SAC) warm up.

Cache (``cache_root()``: ``$BEHAVE_CACHE/behavior-policies``, default
``~/.cache/behave/behavior-policies``), one folder per run::

    <gym id>/td3-<hash of the run's settings>/
        run.json                        settings, library versions, training segments (steps/s)
        actors/step_00005000.safetensors  actor weights at each checkpoint (numpy-loadable)
        evals.json                      deterministic return of each checkpoint and of random
        state/latest.json               -> state/step_N/: policy.safetensors (actor, critic,
                                        targets), optimizers.pt, buffer.npz, counters.json

``state/`` is rewritten at every checkpoint (complete folder first, then ``latest.json`` is
replaced: that is the commit), so an interrupted run resumes from its last checkpoint. A resumed
run is not bit-identical to an uninterrupted one: the episode running at the interruption is
recorded as truncated (``timeout``) and the random generators are reseeded with ``seed + steps``.
Runs are prefixes of one another: asking for more steps continues the cached run, asking for
fewer reuses its checkpoint at that step.

Loading trusts nothing it does not have to: weights come back through safetensors, optimizer
states through ``torch.load(weights_only=True)``, the buffer through ``np.load(allow_pickle=
False)``, counters through JSON. We never use SB3's ``save``/``load`` (its zip carries
cloudpickled objects in ``data.json``, so loading one runs code from the file) nor its pickled
replay buffers; loading our own files therefore implies no more trust than reading data does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "TD3Config",
    "DEFAULT_CONFIGS",
    "TrainResult",
    "Actor",
    "BehaviorPolicies",
    "cache_root",
    "run_dir",
    "config_for",
    "train_td3",
    "checkpoint_steps",
    "load_actor",
    "evaluate_returns",
    "checkpoint_returns",
    "behavior_policies",
    "cached_behavior_policies",
    "EVAL_SEED",
]

log = logging.getLogger(__name__)

EVAL_SEED = 1_000_000  # evaluation episode i resets with seed EVAL_SEED + i (as offline_rl's refs)
_INSTALL = (
    'pip install -e ".[mujoco]"  (or: pip install "gymnasium[mujoco]" "stable-baselines3>=2.3")'
)


@dataclass(frozen=True)
class TD3Config:
    """One TD3 training run (fields named as stable-baselines3's TD3 arguments) and its picks."""

    total_steps: int = 120_000  # environment steps of the run (its last checkpoint)
    checkpoint_every: int = 5_000  # actor checkpoint (and resumable state) every this many steps
    learning_starts: int = 10_000  # uniform random warm-up steps before the first update
    net_arch: tuple[int, ...] = (64, 64)  # hidden sizes of actor and both critics
    batch_size: int = 128
    learning_rate: float = 1e-3
    gamma: float = 0.99  # discount γ
    tau: float = 0.005  # target network update rate τ
    action_noise: float = 0.1  # exploration noise σ, in units of half the action range
    seed: int = 0
    eval_episodes: int = 10  # deterministic episodes per checkpoint evaluation
    expert: str = "best"  # "best": checkpoint with the highest return; "final": the last one
    medium_score: float = 100 / 3  # medium = checkpoint closest to this normalized score
    torch_threads: int = 1  # 1 keeps step times steady on 2 cores (STACK-NOTES)

    def run_settings(self) -> dict[str, Any]:
        """What decides the run's trajectory (total_steps only decides where it stops)."""
        keys = ("checkpoint_every", "learning_starts", "net_arch", "batch_size", "learning_rate")
        keys += ("gamma", "tau", "action_noise", "seed")
        out = {k: getattr(self, k) for k in keys}
        out["net_arch"] = list(self.net_arch)
        return out


# Step budgets that fit this 2-core machine (~130-180 TD3 steps/s): Hopper ~15 min.
DEFAULT_CONFIGS: dict[str, TD3Config] = {
    "Hopper-v5": TD3Config(total_steps=120_000),
    "HalfCheetah-v5": TD3Config(total_steps=150_000),
    # [64, 64] did not learn to walk: best return 579 in 400k steps (400-570 from 100k on).
    # Fujimoto et al.'s own TD3 settings ([256, 256], batch 256, lr 3e-4) reached 1624 at 135k
    # steps here, at ~110 steps/s: ~45 min for 300k on one core.
    "Walker2d-v5": TD3Config(
        total_steps=300_000, net_arch=(256, 256), batch_size=256, learning_rate=3e-4
    ),
}


def config_for(gym_id: str) -> TD3Config:
    """The default run for ``gym_id``; ``$BEHAVE_BEHAVIOR_STEPS`` overrides its step budget."""
    config = DEFAULT_CONFIGS.get(gym_id, TD3Config())
    steps = os.environ.get("BEHAVE_BEHAVIOR_STEPS")
    if steps:
        try:
            config = replace(config, total_steps=int(steps))
        except ValueError as err:
            raise ValueError(f"BEHAVE_BEHAVIOR_STEPS must be an integer, got {steps!r}") from err
    return config


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$BEHAVE_CACHE/behavior-policies`` (``~/.cache/behave/...``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("BEHAVE_CACHE") or Path.home() / ".cache" / "behave"
    return Path(base) / "behavior-policies"


def run_dir(gym_id: str, config: TD3Config, cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the run with ``config``'s settings (any step budget) under the cache."""
    key = json.dumps({"gym_id": gym_id, **config.run_settings()}, sort_keys=True)
    return cache_root(cache_dir) / gym_id / f"td3-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------
# small file helpers
# ---------------------------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _weights_sha256(path: Path) -> str:
    """sha256 over a safetensors file's tensors (names, dtypes, shapes, bytes), not its header:
    safetensors writes the metadata in no fixed order, so equal weights can differ in bytes."""
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for name, value in sorted(load_file(str(path)).items()):
        digest.update(f"{name}:{value.dtype}:{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _actor_path(run: Path, steps: int) -> Path:
    return run / "actors" / f"step_{steps:08d}.safetensors"


def checkpoint_steps(run: Path) -> list[int]:
    """Training steps of the actor checkpoints saved in ``run``, ascending."""
    files = (run / "actors").glob("step_*.safetensors")
    return sorted(int(p.stem.removeprefix("step_")) for p in files)


def _trained_steps(run: Path) -> int:
    latest = _read_json(run / "state" / "latest.json")
    return int(latest["steps"]) if latest else 0


# ---------------------------------------------------------------------------------------------
# the actor as a numpy function (fast per-step inference, no torch or SB3 needed to load)
# ---------------------------------------------------------------------------------------------
class Actor:
    """TD3's deterministic actor: MLP with ReLU, tanh output, scaled to the action bounds.

    Same numbers as SB3's ``model.predict(obs, deterministic=True)`` (float32), ~4x faster per
    single observation than a torch forward.
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], low, high, steps: int = -1):
        self.layers = [(w.T.copy(), b.copy()) for w, b in layers]  # (in, out), (out,)
        self.low = np.asarray(low, np.float32)
        self.high = np.asarray(high, np.float32)
        self.steps = steps

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32)  # (obs_dim,) or (B, obs_dim)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            x = np.tanh(x) if i == last else np.maximum(x, 0.0)
        action = self.low + 0.5 * (x + 1.0) * (self.high - self.low)  # [-1, 1] -> [low, high]
        return np.clip(action, self.low, self.high)


def load_actor(path: Path) -> Actor:
    """An :class:`Actor` from a checkpoint written by :func:`train_td3` (safetensors only)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata() or {}
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    index = sorted({int(k.split(".")[0]) for k in tensors})  # nn.Sequential positions: 0, 2, 4
    layers = [(tensors[f"{i}.weight"], tensors[f"{i}.bias"]) for i in index]
    return Actor(
        layers,
        json.loads(meta["action_low"]),
        json.loads(meta["action_high"]),
        steps=int(meta.get("steps", -1)),
    )


# ---------------------------------------------------------------------------------------------
# training (stable-baselines3 TD3), resumable from the last checkpoint
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int  # steps the run has now (>= the requested total_steps)
    steps_trained: int  # steps trained by this call (0 when the cache already had them)
    resumed_from: int | None  # checkpoint step this call continued from, None for a fresh start
    seconds: float


def _import_sb3():
    try:
        import gymnasium
        import stable_baselines3
        import torch
    except ImportError as err:
        raise ImportError(
            f"training behavior policies needs stable-baselines3: {_INSTALL}"
        ) from err
    return gymnasium, stable_baselines3, torch


def _make_env(gym_id: str):
    """gymnasium only: evaluating and using cached policies needs no SB3."""
    try:
        import gymnasium
        from gymnasium.error import DependencyNotInstalled
    except ImportError as err:
        raise ImportError(f"{gym_id} needs gymnasium: {_INSTALL}") from err
    try:
        return gymnasium.make(gym_id)
    except (ImportError, DependencyNotInstalled) as err:
        raise ImportError(f"{gym_id} needs MuJoCo: {_INSTALL} ({err})") from err


def _new_model(gym_id: str, config: TD3Config, buffer_size: int, seed: int):
    _, sb3, _ = _import_sb3()
    from stable_baselines3.common.noise import NormalActionNoise

    env = _make_env(gym_id)
    act_dim = env.action_space.shape[0]
    return sb3.TD3(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        buffer_size=buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=1,
        gradient_steps=1,
        action_noise=NormalActionNoise(np.zeros(act_dim), np.full(act_dim, config.action_noise)),
        policy_kwargs={"net_arch": list(config.net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )


_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _save_state(model, run: Path, steps: int) -> None:
    """Everything a resume needs, as one folder; ``latest.json`` points at it once complete."""
    import torch
    from safetensors.torch import save_file

    state = run / "state"
    final, tmp = state / f"step_{steps:08d}", state / f".step_{steps:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy = {k: v.detach().contiguous() for k, v in model.policy.state_dict().items()}
    save_file(policy, str(tmp / "policy.safetensors"))
    optimizers = {
        "actor": model.actor.optimizer.state_dict(),
        "critic": model.critic.optimizer.state_dict(),
    }
    torch.save(optimizers, tmp / "optimizers.pt")
    rb = model.replay_buffer
    np.savez(tmp / "buffer.npz", **{k: getattr(rb, k)[:steps, 0] for k in _BUFFER_FIELDS})
    counters = {"steps": steps, "n_updates": model._n_updates, "episodes": model._episode_num}
    _write_json(tmp / "counters.json", counters)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_json(state / "latest.json", {"steps": steps, "dir": final.name})  # the commit point
    for old in state.glob("step_*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _load_state(gym_id: str, config: TD3Config, run: Path, buffer_size: int):
    """Rebuild the model of ``run``'s last checkpoint (safe loaders only; see module doc)."""
    import torch
    from safetensors.torch import load_file

    latest = _read_json(run / "state" / "latest.json")
    folder, steps = run / "state" / latest["dir"], int(latest["steps"])
    model = _new_model(gym_id, config, buffer_size, seed=config.seed + steps)  # reseed on resume
    model.policy.load_state_dict(load_file(str(folder / "policy.safetensors")))
    optimizers = torch.load(folder / "optimizers.pt", weights_only=True)
    model.actor.optimizer.load_state_dict(optimizers["actor"])
    model.critic.optimizer.load_state_dict(optimizers["critic"])
    rb = model.replay_buffer
    with np.load(folder / "buffer.npz", allow_pickle=False) as saved:
        for key in _BUFFER_FIELDS:
            getattr(rb, key)[:steps, 0] = saved[key]
    if steps and not rb.dones[steps - 1, 0]:  # the episode the checkpoint cut: truncated there
        rb.dones[steps - 1, 0] = rb.timeouts[steps - 1, 0] = 1.0
    rb.pos, rb.full = steps % buffer_size, steps == buffer_size
    counters = _read_json(folder / "counters.json")
    model.num_timesteps = steps
    model._n_updates = int(counters["n_updates"])
    model._episode_num = int(counters["episodes"])
    return model, steps


def _save_actor(model, run: Path, steps: int) -> None:
    from safetensors.torch import save_file

    space = model.action_space
    meta = {
        "steps": str(steps),
        "action_low": json.dumps(space.low.tolist()),
        "action_high": json.dumps(space.high.tolist()),
    }
    path = _actor_path(run, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    weights = {k: v.detach().contiguous() for k, v in model.actor.mu.state_dict().items()}
    save_file(weights, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("stable-baselines3", "gymnasium", "mujoco", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def train_td3(
    gym_id: str,
    config: TD3Config | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or continue) the TD3 run of ``config`` until it has ``config.total_steps`` steps.

    Saves an actor checkpoint every ``checkpoint_every`` steps and at ``total_steps``, with the
    full training state (model, optimizers, replay buffer) to resume from. Returns at once when
    the cache already holds the steps.
    """
    config = config or config_for(gym_id)
    if config.total_steps <= config.learning_starts:
        raise ValueError(
            f"total_steps ({config.total_steps}) must exceed learning_starts ({config.learning_starts})"
        )
    run = run_dir(gym_id, config, cache_dir)
    done = _trained_steps(run)
    if done >= config.total_steps:
        if config.total_steps not in checkpoint_steps(run):
            raise ValueError(
                f"{run} was trained past {config.total_steps} steps without a checkpoint there; "
                f"use a multiple of checkpoint_every={config.checkpoint_every} or another cache"
            )
        return TrainResult(run, done, 0, None, 0.0)

    _, _, torch = _import_sb3()
    from stable_baselines3.common.callbacks import BaseCallback

    run.mkdir(parents=True, exist_ok=True)
    record = _read_json(run / "run.json") or {
        "gym_id": gym_id,
        "algorithm": "TD3",
        "settings": config.run_settings(),
        "segments": [],
    }
    record["versions"] = _versions()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    start_time = time.perf_counter()
    try:
        if done:
            log.info("resuming %s TD3 run %s from step %d", gym_id, run.name, done)
            model, done = _load_state(gym_id, config, run, config.total_steps)
        else:
            log.info(
                "training %s TD3 behavior policy for %d steps in %s",
                gym_id,
                config.total_steps,
                run,
            )
            model = _new_model(gym_id, config, config.total_steps, seed=config.seed)
        resumed_from = done or None
        segment = {"from": done, "to": done, "resumed": resumed_from is not None}
        record["segments"].append(segment)  # this call's share of the run, updated as it goes

        class _Bar(BaseCallback):
            def _on_step(self) -> bool:
                bar.update(1)
                return True

        with tqdm(
            total=config.total_steps,
            initial=done,
            unit="step",
            unit_scale=True,
            disable=not progress,
            desc=f"TD3 {gym_id}",
        ) as bar:
            steps = done
            while steps < config.total_steps:
                target = min(
                    (steps // config.checkpoint_every + 1) * config.checkpoint_every,
                    config.total_steps,
                )
                model.learn(target - steps, callback=_Bar(), reset_num_timesteps=False)
                steps = model.num_timesteps
                assert steps == target, (steps, target)
                _save_actor(model, run, steps)
                _save_state(model, run, steps)
                segment.update(to=steps, seconds=round(time.perf_counter() - start_time, 2))
                segment["steps_per_second"] = round((steps - done) / segment["seconds"], 1)
                _write_json(run / "run.json", record)
        elapsed = time.perf_counter() - start_time
    finally:
        torch.set_num_threads(threads)
    model.env.close()
    return TrainResult(run, steps, steps - done, resumed_from, elapsed)


# ---------------------------------------------------------------------------------------------
# evaluation and the choice of medium / expert
# ---------------------------------------------------------------------------------------------
def evaluate_returns(
    gym_id: str, policy: Callable[[np.ndarray], np.ndarray] | None, episodes: int
) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes, reset seeds ``EVAL_SEED + i``.

    ``policy=None`` is the uniform random policy (actions from ``default_rng([EVAL_SEED, i])``).
    """
    env = _make_env(gym_id)
    low, high = env.action_space.low, env.action_space.high
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        rng = np.random.default_rng([EVAL_SEED, i])
        total, done = 0.0, False
        while not done:
            action = rng.uniform(low, high) if policy is None else policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    env.close()
    return np.asarray(out)


def _stats(returns: np.ndarray) -> dict[str, float]:
    return {"mean": float(returns.mean()), "std": float(returns.std())}


def checkpoint_returns(
    gym_id: str,
    config: TD3Config | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Deterministic return of every checkpoint up to ``total_steps`` (and of random actions).

    ``{"episodes": n, "random": {"mean", "std"}, "checkpoints": {steps: {"mean", "std"}}}``;
    evaluations are cached in the run's ``evals.json``, so only new checkpoints cost time.
    """
    config = config or config_for(gym_id)
    run = run_dir(gym_id, config, cache_dir)
    path = run / "evals.json"
    evals = _read_json(path, {})
    if evals.get("episodes") != config.eval_episodes or evals.get("seed") != EVAL_SEED:
        evals = {"episodes": config.eval_episodes, "seed": EVAL_SEED, "checkpoints": {}}
    n = config.eval_episodes
    if "random" not in evals:
        evals["random"] = _stats(evaluate_returns(gym_id, None, n))
        _write_json(path, evals)
    todo = [s for s in checkpoint_steps(run) if s <= config.total_steps]
    todo = [s for s in todo if str(s) not in evals["checkpoints"]]
    for steps in tqdm(
        todo, desc=f"evaluating {gym_id} checkpoints", disable=not (progress and todo)
    ):
        actor = load_actor(_actor_path(run, steps))
        evals["checkpoints"][str(steps)] = _stats(evaluate_returns(gym_id, actor, n))
        _write_json(path, evals)  # after each one: an interrupted evaluation keeps its work
    return {
        "episodes": n,
        "random": evals["random"],
        "checkpoints": {
            int(s): v for s, v in evals["checkpoints"].items() if int(s) <= config.total_steps
        },
    }


@dataclass(frozen=True)
class BehaviorPolicies:
    """The expert and medium checkpoints of one run, and the replay buffer up to medium."""

    gym_id: str
    config: TD3Config
    run_dir: Path
    expert_steps: int  # the best (or, with config.expert="final", the last) checkpoint
    medium_steps: int  # the checkpoint closest to config.medium_score
    evaluation: dict[str, Any] = field(repr=False)  # checkpoint_returns(...)

    def score(self, ret: float) -> float | None:
        """Normalized score of a return against this run's random and expert evaluations."""
        lo = self.evaluation["random"]["mean"]
        hi = self.evaluation["checkpoints"][self.expert_steps]["mean"]
        return 100.0 * (ret - lo) / (hi - lo) if hi != lo else None

    @cached_property
    def expert(self) -> Actor:
        return load_actor(_actor_path(self.run_dir, self.expert_steps))

    @cached_property
    def medium(self) -> Actor:
        return load_actor(_actor_path(self.run_dir, self.medium_steps))

    def actor(self, which: str) -> Actor:
        """``"expert"`` or ``"medium"``."""
        if which not in ("expert", "medium"):
            raise ValueError(f"unknown behavior policy {which!r}; choose expert or medium")
        return getattr(self, which)

    def replay_buffer(self) -> dict[str, np.ndarray]:
        """The run's replay buffer up to the medium checkpoint, in the order it was filled.

        ``observations``/``next_observations`` (N, obs_dim) float32, ``actions`` (N, act_dim)
        float32 in the env's bounds, ``rewards`` (N,) float32, ``terminals``/``timeouts`` (N,)
        bool, with N = ``medium_steps``. ``next_observations`` at an episode's end is its true
        final observation (SB3 keeps it), not the next episode's first one.
        """
        latest = _read_json(self.run_dir / "state" / "latest.json")
        n = self.medium_steps
        with np.load(self.run_dir / "state" / latest["dir"] / "buffer.npz") as saved:
            data = {k: saved[k][:n] for k in _BUFFER_FIELDS}
        low, high = self.expert.low, self.expert.high
        dones, timeouts = data["dones"] > 0.5, data["timeouts"] > 0.5
        return {
            "observations": data["observations"].astype(np.float32),
            "next_observations": data["next_observations"].astype(np.float32),
            # SB3 stores actions scaled to [-1, 1]; back to the env's bounds
            "actions": (low + 0.5 * (data["actions"] + 1.0) * (high - low)).astype(np.float32),
            "rewards": data["rewards"].astype(np.float32),
            "terminals": dones & ~timeouts,
            "timeouts": timeouts,
        }

    def describe(self) -> dict[str, Any]:
        """Provenance for a dataset manifest: which checkpoint made which quality, and how well."""
        record = _read_json(self.run_dir / "run.json", {})
        checkpoints = self.evaluation["checkpoints"]

        def policy(steps: int) -> dict[str, Any]:
            stats = checkpoints[steps]
            return {
                "steps": steps,
                "return_mean": stats["mean"],
                "return_std": stats["std"],
                "score": self.score(stats["mean"]),
                "weights_sha256": _weights_sha256(_actor_path(self.run_dir, steps)),
            }

        return {
            "algorithm": "TD3 (stable-baselines3), deterministic actor",
            "gym_id": self.gym_id,
            "run": f"{self.gym_id}/{self.run_dir.name}",
            "config": {**asdict(self.config), "net_arch": list(self.config.net_arch)},
            "versions": record.get("versions", {}),
            "training_segments": record.get("segments", []),
            "evaluation": {
                "episodes": self.evaluation["episodes"],
                "reset_seeds": [EVAL_SEED, EVAL_SEED + self.evaluation["episodes"] - 1],
                "random": self.evaluation["random"],
            },
            "expert": policy(self.expert_steps),
            "medium": {**policy(self.medium_steps), "target_score": self.config.medium_score},
            "medium_replay": {
                "source": "replay buffer of the run up to the medium checkpoint",
                "rows": self.medium_steps,
                "random_warmup_rows": self.config.learning_starts,
            },
            "checkpoint_returns": {str(s): v["mean"] for s, v in sorted(checkpoints.items())},
        }


def behavior_policies(
    gym_id: str,
    config: TD3Config | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> BehaviorPolicies:
    """Train (if not cached), evaluate the checkpoints, and pick ``expert`` and ``medium``.

    ``expert`` is the checkpoint after the random warm-up with the highest deterministic mean
    return (earliest on ties), or the one at ``total_steps`` with ``config.expert="final"``;
    ``medium`` the checkpoint after the warm-up and before the expert whose deterministic return
    has a normalized score closest to ``config.medium_score`` (earliest on ties).
    """
    config = config or config_for(gym_id)
    if config.expert not in ("best", "final"):
        raise ValueError(f"TD3Config.expert must be 'best' or 'final', got {config.expert!r}")
    result = train_td3(gym_id, config, cache_dir=cache_dir, progress=progress)
    evaluation = checkpoint_returns(gym_id, config, cache_dir=cache_dir, progress=progress)
    checkpoints = evaluation["checkpoints"]
    learned = [s for s in sorted(checkpoints) if s > config.learning_starts]
    if config.expert == "final":
        expert = config.total_steps
    else:
        expert = max(learned, key=lambda s: (checkpoints[s]["mean"], -s))
    lo, hi = evaluation["random"]["mean"], checkpoints[expert]["mean"]
    if hi <= lo:
        log.warning("%s: the expert (%.1f) does not beat random (%.1f)", gym_id, hi, lo)
    target = lo + config.medium_score / 100.0 * (hi - lo)
    candidates = [s for s in learned if s < expert]
    if not candidates:
        raise ValueError(
            f"no checkpoint between learning_starts={config.learning_starts} and the expert "
            f"(step {expert}) to be the medium policy; lower checkpoint_every"
        )
    medium = min(candidates, key=lambda s: (abs(checkpoints[s]["mean"] - target), s))
    return BehaviorPolicies(gym_id, config, result.run_dir, expert, medium, evaluation)


_LOADED: dict[tuple[str, TD3Config, str], BehaviorPolicies] = {}


def cached_behavior_policies(gym_id: str, *, progress: bool = True) -> BehaviorPolicies:
    """:func:`behavior_policies` with :func:`config_for` and :func:`cache_root`, once per process.

    ``progress=False`` hides the training and evaluation bars (``--no-progress`` on the CLI).
    """
    config, root = config_for(gym_id), str(cache_root())
    key = (gym_id, config, root)
    if key not in _LOADED:
        _LOADED[key] = behavior_policies(gym_id, config, cache_dir=root, progress=progress)
    return _LOADED[key]
