"""D4RL-style offline RL datasets recorded from a real simulator (for the Decision Mamba family).

D4RL: Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement Learning",
https://arxiv.org/abs/2004.07219 (official: https://github.com/Farama-Foundation/D4RL).
No D4RL / Minari download is reachable offline, so we roll out behavior policies in gymnasium
ourselves and write what D4RL ships: one row per transition (observation, action, reward,
next_observation, ``terminal`` vs ``timeout``) plus the reference returns that turn a return R
into a normalized score ``100 * (R - R_random) / (R_expert - R_random)``.

Qualities, as D4RL defines them:

- ``random``: uniform random actions.
- ``expert``: the expert controller with small N(0, 0.05) action noise, clipped to the bounds.
- ``medium``: a policy scoring roughly 1/3 - 1/2 of the way from random to expert (normalized
  score 33 - 50); here the expert degraded by epsilon-random actions plus heavy Gaussian noise.
- ``medium-replay``: what a learning agent's replay buffer holds on its way to ``medium``. For
  MuJoCo, the real buffer of the TD3 run up to the medium checkpoint; for LunarLander (no
  training run), a schedule of noise levels that moves linearly (over the transitions
  collected) from random to medium.
- ``medium-expert``: the first half of the transitions from ``medium``, the second from ``expert``
  (D4RL concatenates the two datasets the same way).

Environments live in a registry (:data:`ENVS`): an :class:`EnvSpec` names the gymnasium id, the
pip requirement, its controllers (``env -> (obs -> action)`` factories) and the behaviors each
quality uses. Continuous LunarLander's expert is gymnasium's shipped heuristic lander (~280
return). Hopper-v5, HalfCheetah-v5 and Walker2d-v5 use trained TD3 policies, as D4RL did with
SAC (:mod:`behave.data.behavior_policies`: trained on first use and cached, ~15-25 min each on 2
cores; ``$BEHAVE_BEHAVIOR_STEPS`` sets the step budget): ``expert`` = the checkpoint with the
best deterministic return, ``medium`` = an earlier one scoring closest to 33, both with N(0, 0.1)
action noise.

Where we differ from D4RL:

- LunarLander: ``medium`` is a noisy expert, not an early-stopped SAC checkpoint, and
  ``medium-replay`` is a noise schedule, not a real training buffer: it has a free scripted
  expert and no training run. MuJoCo entries use real checkpoints and the real buffer (TD3,
  smaller budgets than D4RL's; see :mod:`behave.data.behavior_policies`).
- A buffer-backed ``medium-replay`` holds the first ``min(num_transitions, buffer rows)``
  transitions of the buffer: its size is the run's (steps up to the medium checkpoint), as in
  D4RL, so asking for more gives fewer rows than asked (a warning says so; the manifest too).
  Its rows do not depend on ``seed``.
- Reference returns are measured here (fixed reset seeds, independent of the dataset seed, so
  every dataset of one env and generator version carries the same references) and cached in
  the manifest, instead of being constants in a table. The expert reference is the noiseless
  controller.
- The dataset holds exactly ``num_transitions`` rows: the episode running when a part's budget
  is reached is cut there and its last row flagged ``timeout`` (a truncation, as a time limit
  is). Cut episodes are listed in the manifest and left out of the return statistics.

Rollouts step one environment in Python (~7-8k LunarLander steps/s on a busy 2-core machine;
the Box2D step is most of it, so ``SyncVectorEnv``, which loops over its envs the same way,
would not be faster). Each episode draws its reset seed and action noise from
``SeedSequence([seed, part, episode])``, so the same arguments give the same file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from behave.data.checks import check_table
from behave.data.manifest import DataError, read_manifest, verify_manifest, write_manifest

__all__ = [
    "generate_offline_rl",
    "load_trajectories",
    "reference_returns",
    "normalized_score",
    "EnvSpec",
    "Behavior",
    "ENVS",
    "QUALITIES",
    "TRANSITIONS_FILE",
]

GENERATOR = "behave.data.offline_rl"
GENERATOR_VERSION = "1"
KIND = "offline-rl"
TRANSITIONS_FILE = "transitions.parquet"
QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert")
_DRAW_BLOCK = 256  # random numbers drawn ahead per policy call block
REFERENCE_SEED = 1_000_000  # reference episode i resets with seed REFERENCE_SEED + i

Controller = Callable[[np.ndarray], np.ndarray]  # observation (obs_dim,) -> action (act_dim,)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Behavior:
    """A controller plus exploration noise, as one rollout policy.

    Each step: with probability ``epsilon`` a uniform random action, otherwise the controller's
    action plus N(0, ``noise_std`` * half the action range), clipped to the action bounds.
    ``controller=None`` means no controller (``epsilon`` must then be 1: the random policy).
    """

    controller: str | None  # key into EnvSpec.controllers
    epsilon: float = 0.0
    noise_std: float = 0.0


RANDOM = Behavior(controller=None, epsilon=1.0)


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment and the behavior policies its datasets are recorded with."""

    gym_id: str
    requirement: str  # what to pip install when the simulator is missing
    controllers: dict[str, Callable[[Any], Controller]]  # name -> (env -> controller)
    expert: Behavior  # the ``expert`` quality (and, without its noise, the expert reference)
    medium: Behavior  # the ``medium`` quality
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    reference_episodes: int = 100  # episodes per reference return (D4RL-style normalization)
    # A recorded ``medium-replay`` (a training run's replay buffer up to the medium policy, as
    # behavior_policies.BehaviorPolicies.replay_buffer returns it) instead of the noise schedule.
    replay_buffer: Callable[[], dict[str, np.ndarray]] | None = None
    # Provenance of trained behavior policies for the manifest (which checkpoint made what).
    policy_info: Callable[[], dict[str, Any]] | None = None

    def replay(self, progress: float) -> Behavior:
        """``medium-replay`` behavior after ``progress`` (0..1) of the buffer: random -> medium."""
        p = float(np.clip(progress, 0.0, 1.0))
        return Behavior(
            controller=self.medium.controller,
            epsilon=(1.0 - p) + p * self.medium.epsilon,  # exact at both ends
            noise_std=p * self.medium.noise_std,
        )


def _lunar_lander_heuristic(env: Any) -> Controller:
    from gymnasium.envs.box2d.lunar_lander import heuristic  # reads env.unwrapped.continuous

    return lambda obs: heuristic(env, obs)


def _trained(gym_id: str, progress: bool = True):
    from behave.data.behavior_policies import cached_behavior_policies

    # trains on first use, then read from the cache (and kept for the rest of the process)
    return cached_behavior_policies(gym_id, progress=progress)


def _mujoco(gym_id: str) -> EnvSpec:
    """A MuJoCo env whose behavior policies are checkpoints of one TD3 run (D4RL's recipe)."""
    return EnvSpec(
        gym_id=gym_id,
        requirement="gymnasium[mujoco]",
        controllers={
            "expert": lambda env: _trained(gym_id).actor("expert"),
            "medium": lambda env: _trained(gym_id).actor("medium"),
        },
        # TD3's own exploration noise, N(0, 0.1) (the action range is [-1, 1]: unit = 1)
        expert=Behavior("expert", noise_std=0.1),
        medium=Behavior("medium", noise_std=0.1),
        reference_episodes=25,  # up to 1000 steps each
        replay_buffer=lambda: _trained(gym_id).replay_buffer(),
        policy_info=lambda: _trained(gym_id).describe(),
    )


ENVS: dict[str, EnvSpec] = {
    "lunarlander": EnvSpec(
        gym_id="LunarLander-v3",
        make_kwargs={"continuous": True},
        requirement="gymnasium[box2d]",
        controllers={"heuristic": _lunar_lander_heuristic},
        expert=Behavior("heuristic", noise_std=0.05),
        # Tuned for a normalized score in the middle of 33..50 (random ≈ -231, expert ≈ 283):
        # epsilon alone 0.3 -> score ≈ 67, 0.4 -> 48, 0.5 -> 41; noise 1.0 alone -> 49.
        # (0.4, 0.3) -> 48; (0.45, 0.3) -> return ≈ 0 ± 45, score ≈ 44 over 60k transitions.
        medium=Behavior("heuristic", epsilon=0.45, noise_std=0.3),
    ),
    "hopper": _mujoco("Hopper-v5"),
    "halfcheetah": _mujoco("HalfCheetah-v5"),
    "walker2d": _mujoco("Walker2d-v5"),
}


# ---------------------------------------------------------------------------------------------
# rollouts
# ---------------------------------------------------------------------------------------------
def _check_name(value: Any, choices, what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def _make_env(name: str, **make_kwargs):
    """Build the gymnasium env for ``ENVS[name]`` (``make_kwargs`` added to the spec's, e.g.
    ``render_mode``); say what to install when it is missing."""
    spec = ENVS[_check_name(name, ENVS, "env")]
    hint = f'pip install "{spec.requirement}"'
    try:
        import gymnasium
        from gymnasium.error import DependencyNotInstalled
    except ImportError as err:
        raise ImportError(f"offline-rl env {name!r} needs gymnasium: {hint}") from err
    try:
        return spec, gymnasium.make(spec.gym_id, **spec.make_kwargs, **make_kwargs)
    except (ImportError, DependencyNotInstalled) as err:
        raise ImportError(f"offline-rl env {name!r} ({spec.gym_id}) needs {hint} ({err})") from err


class _Policy:
    """A :class:`Behavior` bound to one env: ``policy.reset(rng)``, then ``policy(obs)``.

    Random numbers are drawn ahead in blocks (one generator call per block, not three per
    step): per-step numpy calls on 2-vectors cost as much as the Box2D step itself.
    """

    def __init__(self, spec: EnvSpec, env: Any, behavior: Behavior):
        space = env.action_space
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.scale = (self.high - self.low) / 2
        self.behavior = behavior
        if behavior.controller is None:
            assert behavior.epsilon >= 1.0, "a behavior without a controller must be random"
            self.controller = None
        else:
            self.controller = spec.controllers[behavior.controller](env)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._draw()

    def _draw(self) -> None:
        b, rng, shape = self.behavior, self.rng, (_DRAW_BLOCK, *self.low.shape)
        self.k = 0
        self.explore = rng.random(_DRAW_BLOCK) < b.epsilon
        self.uniform = rng.uniform(self.low, self.high, shape).astype(np.float32)
        if b.noise_std > 0:
            self.noise = (rng.normal(0.0, b.noise_std, shape) * self.scale).astype(np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.k == _DRAW_BLOCK:
            self._draw()
        k, self.k = self.k, self.k + 1
        if self.controller is None or self.explore[k]:
            return self.uniform[k]
        action = np.asarray(self.controller(obs), dtype=np.float32)
        if self.behavior.noise_std > 0:
            action = action + self.noise[k]
        return np.minimum(np.maximum(action, self.low), self.high)


def _episode_rng(seed: int, part: int, episode: int) -> tuple[int, np.random.Generator]:
    """Reset seed and action-noise generator of one episode, independent of every other one."""
    seq = np.random.SeedSequence([seed, part, episode])
    reset_seed = int(seq.generate_state(1)[0])
    return reset_seed, np.random.default_rng(seq)


def _returns(env: Any, policy: _Policy, reset_seeds, rngs) -> np.ndarray:
    """Undiscounted return of one full episode per reset seed."""
    out = []
    for reset_seed, rng in zip(reset_seeds, rngs, strict=True):
        obs, _ = env.reset(seed=reset_seed)
        policy.reset(rng)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    return np.asarray(out)


@cache
def _reference(name: str) -> dict[str, dict[str, float]]:
    spec, env = _make_env(name)
    n = spec.reference_episodes
    seeds = [REFERENCE_SEED + i for i in range(n)]
    rngs = [np.random.default_rng([REFERENCE_SEED, i]) for i in range(n)]
    expert = Behavior(spec.expert.controller)  # the controller itself, no exploration noise
    out = {}
    for key, behavior in (("random", RANDOM), ("expert", expert)):
        r = _returns(env, _Policy(spec, env, behavior), seeds, rngs)
        out[key] = {"mean": float(r.mean()), "std": float(r.std()), "episodes": n}
    env.close()
    return out


def reference_returns(env: str = "lunarlander") -> dict[str, float]:
    """``{"random": R_random, "expert": R_expert}``: mean returns over fixed-seed episodes.

    Measured once per process (a few seconds) and identical for every dataset of ``env``.
    """
    return {k: v["mean"] for k, v in _reference(env).items()}


def normalized_score(ret, reference: dict[str, float]):
    """D4RL normalized score ``100 * (R - R_random) / (R_expert - R_random)``."""
    return 100.0 * (ret - reference["random"]) / (reference["expert"] - reference["random"])


class _Buffer:
    """Preallocated columns for exactly ``n`` transitions."""

    def __init__(self, n: int, obs_dim: int, act_dim: int):
        self.size = 0
        self.episode = np.zeros(n, np.int32)
        self.step = np.zeros(n, np.int32)
        self.observation = np.zeros((n, obs_dim), np.float32)
        self.action = np.zeros((n, act_dim), np.float32)
        self.reward = np.zeros(n, np.float32)
        self.terminal = np.zeros(n, bool)
        self.timeout = np.zeros(n, bool)
        self.next_observation = np.zeros((n, obs_dim), np.float32)


def _collect(env, spec, buf, *, seed, part, budget, behavior_at, first_episode, bar):
    """Roll out episodes into ``buf`` until ``budget`` more rows; return per-episode records."""
    start, end = buf.size, buf.size + budget
    episodes = []
    episode = first_episode
    while buf.size < end:
        behavior = behavior_at((buf.size - start) / budget)
        policy = _Policy(spec, env, behavior)
        reset_seed, rng = _episode_rng(seed, part, episode - first_episode)
        obs, _ = env.reset(seed=reset_seed)
        policy.reset(rng)
        total, t, done = 0.0, 0, False
        while not done and buf.size < end:
            action = policy(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            i = buf.size
            buf.episode[i], buf.step[i] = episode, t
            buf.observation[i], buf.action[i], buf.reward[i] = obs, action, reward
            buf.next_observation[i] = next_obs
            buf.terminal[i] = terminated
            # time limit, or the part's budget cutting the episode (a truncation all the same)
            buf.timeout[i] = not terminated and (truncated or i + 1 == end)
            done = terminated or truncated
            total += float(reward)
            obs, t, buf.size = next_obs, t + 1, i + 1
            if t % 256 == 0:
                bar.update(256)
        bar.update(t % 256)
        episodes.append({"return": total, "length": t, "complete": done})
        episode += 1
    return episodes


def _copy_recorded(recorded, buf, *, budget, first_episode, bar):
    """Fill ``budget`` rows of ``buf`` from a recorded buffer (its first rows, in order).

    Episodes are split at the recorded ``terminals | timeouts``; the episode the budget cuts
    ends with ``timeout``, as in :func:`_collect`. Returns per-episode records.
    """
    start, n = buf.size, budget
    end = start + n
    terminal = recorded["terminals"][:n].astype(bool)
    timeout = recorded["timeouts"][:n].astype(bool)
    done = terminal | timeout
    timeout[-1] |= not done[-1]  # the cut
    ends = np.flatnonzero(terminal | timeout)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts + 1
    buf.episode[start:end] = first_episode + np.repeat(np.arange(len(starts)), lengths)
    buf.step[start:end] = np.arange(n) - np.repeat(starts, lengths)
    buf.observation[start:end] = recorded["observations"][:n]
    buf.action[start:end] = recorded["actions"][:n]
    buf.reward[start:end] = recorded["rewards"][:n]
    buf.next_observation[start:end] = recorded["next_observations"][:n]
    buf.terminal[start:end] = terminal
    buf.timeout[start:end] = timeout
    buf.size = end
    bar.update(n)
    rewards = recorded["rewards"][:n].astype(np.float64)
    return [
        {"return": float(rewards[a : b + 1].sum()), "length": int(b - a + 1), "complete": bool(d)}
        for a, b, d in zip(starts, ends, done[ends], strict=True)
    ]


def _validate(env, quality, num_transitions, seed) -> None:
    _check_name(env, ENVS, "env")
    _check_name(quality, QUALITIES, "quality")

    def is_int(x):
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(num_transitions) or num_transitions < 2:
        raise ValueError(f"num_transitions must be an integer >= 2, got {num_transitions!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _plan(spec: EnvSpec, quality: str, n: int) -> list[tuple[str, int, Callable]]:
    """Parts of a dataset: (behavior name, transitions, progress -> Behavior)."""
    const = {"random": RANDOM, "medium": spec.medium, "expert": spec.expert}
    if quality in const:
        return [(quality, n, lambda p, b=const[quality]: b)]
    if quality == "medium-replay":
        return [("medium-replay", n, spec.replay)]
    half = n // 2  # medium-expert: D4RL concatenates medium and expert
    return [("medium", half, lambda p: spec.medium), ("expert", n - half, lambda p: spec.expert)]


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def generate_offline_rl(
    out_dir: Path,
    *,
    env: str = "lunarlander",
    quality: str = "medium",
    num_transitions: int = 100_000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write ``out_dir/transitions.parquet`` (+ ``manifest.json``) and return the manifest.

    Columns: episode (Int32), step (Int32), observation (Array Float32, obs_dim), action (Array
    Float32, act_dim), reward (Float32), terminal (Boolean), timeout (Boolean), next_observation
    (Array Float32, obs_dim); sorted by (episode, step). Same arguments -> identical file.
    ``num_transitions`` rows, except a buffer-backed ``medium-replay`` (MuJoCo), which holds at
    most the training run's buffer up to the medium checkpoint. MuJoCo envs train their behavior
    policies on first use (cached; see :mod:`behave.data.behavior_policies`).
    """
    _validate(env, quality, num_transitions, seed)
    spec, gym_env = _make_env(env)
    if spec.policy_info is not None:
        # trained behavior policies (MuJoCo): train or load them here, so that ``progress``
        # also decides whether TD3's training and checkpoint-evaluation bars show
        _trained(spec.gym_id, progress=progress)
    references = _reference(env)
    recorded = None
    rows = num_transitions
    if quality == "medium-replay" and spec.replay_buffer is not None:
        recorded = spec.replay_buffer()
        available = len(recorded["rewards"])
        rows = min(num_transitions, available)
        if rows < num_transitions:
            log.warning(
                "%s medium-replay: the replay buffer up to the medium checkpoint holds %d "
                "transitions; writing all of them (%d were asked for)",
                env,
                available,
                num_transitions,
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    obs_dim = int(np.prod(gym_env.observation_space.shape))
    act_dim = int(np.prod(gym_env.action_space.shape))
    action_low = gym_env.action_space.low.tolist()
    action_high = gym_env.action_space.high.tolist()
    buf = _Buffer(rows, obs_dim, act_dim)
    parts, episodes = [], []
    with tqdm(total=rows, unit="step", unit_scale=True, disable=not progress, desc=quality) as bar:
        for part, (name, budget, behavior_at) in enumerate(_plan(spec, quality, rows)):
            first = len(episodes)
            if recorded is not None:
                got = _copy_recorded(recorded, buf, budget=budget, first_episode=first, bar=bar)
                settings = {
                    "source": "replay buffer of the behavior policy's training run",
                    "buffer_rows": len(recorded["rewards"]),
                    "requested": num_transitions,
                }
            else:
                got = _collect(
                    gym_env,
                    spec,
                    buf,
                    seed=seed,
                    part=part,
                    budget=budget,
                    behavior_at=behavior_at,
                    first_episode=first,
                    bar=bar,
                )
                settings = (
                    asdict(behavior_at(0.0))
                    if name != "medium-replay"
                    else {"from": asdict(spec.replay(0.0)), "to": asdict(spec.replay(1.0))}
                )
            episodes += got
            parts.append(
                {
                    "behavior": name,
                    "transitions": budget,
                    "episodes": [first, len(episodes) - 1],
                    "settings": settings,
                }
            )
    gym_env.close()
    assert buf.size == rows

    frame = pl.DataFrame(
        {
            "episode": pl.Series(buf.episode, dtype=pl.Int32),
            "step": pl.Series(buf.step, dtype=pl.Int32),
            "observation": pl.Series(buf.observation),
            "action": pl.Series(buf.action),
            "reward": pl.Series(buf.reward, dtype=pl.Float32),
            "terminal": pl.Series(buf.terminal, dtype=pl.Boolean),
            "timeout": pl.Series(buf.timeout, dtype=pl.Boolean),
            "next_observation": pl.Series(buf.next_observation),
        }
    )
    target = out_dir / TRANSITIONS_FILE
    tmp = out_dir / f".{TRANSITIONS_FILE}.{os.getpid()}.tmp"
    try:
        frame.write_parquet(tmp, compression="zstd", row_group_size=131_072)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

    complete = np.array([e["return"] for e in episodes if e["complete"]])
    ref = {k: v["mean"] for k, v in references.items()}
    mean = float(complete.mean()) if complete.size else None
    std = float(complete.std()) if complete.size else None
    extra = {
        "env_id": spec.gym_id,
        "env_kwargs": spec.make_kwargs,
        "observation_dim": obs_dim,
        "action_dim": act_dim,
        "action_low": action_low,
        "action_high": action_high,
        "reference_returns": ref,
        "reference_details": {
            **references,
            "reset_seeds": [REFERENCE_SEED, REFERENCE_SEED + spec.reference_episodes - 1],
            "expert_policy": f"{spec.expert.controller} without exploration noise",
        },
        "dataset_return_mean": mean,
        "dataset_return_std": std,
        "dataset_score": None if mean is None else float(normalized_score(mean, ref)),
        "episodes": len(episodes),
        "complete_episodes": int(complete.size),
        "truncated_episodes": [i for i, e in enumerate(episodes) if not e["complete"]],
        "terminals": int(buf.terminal.sum()),
        "timeouts": int(buf.timeout.sum()),
        "noise": {
            "expert": asdict(spec.expert),
            "medium": asdict(spec.medium),
            "noise_std_unit": "half the action range",
            "parts": parts,
        },
    }
    if spec.policy_info is not None:  # trained behavior policies: which checkpoint made what
        extra["behavior_policies"] = spec.policy_info()
    return write_manifest(
        out_dir,
        kind=KIND,
        generator=GENERATOR,
        generator_version=GENERATOR_VERSION,
        seed=seed,
        params={"env": env, "quality": quality, "num_transitions": num_transitions},
        files=[TRANSITIONS_FILE],
        extra=extra,
    )


_SCALAR_COLUMNS = {
    "episode": pl.Int32,
    "step": pl.Int32,
    "reward": pl.Float32,
    "terminal": pl.Boolean,
    "timeout": pl.Boolean,
}
_VECTOR_COLUMNS = ("observation", "action", "next_observation")  # the last one optional
_VECTOR = (pl.Array, pl.List)  # of Float32, obs_dim or act_dim wide (checked by _vectors)


def _vectors(frame: pl.DataFrame, column: str, dim: int, path: Path) -> np.ndarray:
    """(N, dim) float32 from an Array or List column of Float32."""
    dtype = frame.schema[column]
    inner = getattr(dtype, "inner", None)
    if not isinstance(dtype, pl.Array | pl.List) or inner != pl.Float32:
        raise DataError(f"{path}: column {column!r} is {dtype}, expected Array(Float32, {dim})")
    series = frame[column]
    if isinstance(dtype, pl.List):
        lengths = series.list.len()
        if lengths.null_count() or (lengths != dim).any():
            raise DataError(f"{path}: column {column!r} has rows whose length is not {dim}")
        series = series.cast(pl.Array(pl.Float32, dim))
    elif dtype.size != dim:
        raise DataError(f"{path}: column {column!r} has width {dtype.size}, manifest says {dim}")
    return series.to_numpy().reshape(len(frame), dim)


def load_trajectories(data_dir: Path, verify: bool = False) -> list[dict[str, np.ndarray]]:
    """Episodes of an offline-rl data directory, as per-episode numpy arrays.

    Each dict holds ``observations`` (T, obs_dim) float32, ``actions`` (T, act_dim) float32,
    ``rewards`` (T,) float32, ``returns_to_go`` (T,) float32 (``rtg[t] = sum(rewards[t:])``,
    undiscounted, summed in float64), ``timesteps`` (T,) int64, ``terminals`` and ``timeouts``
    (T,) bool, and ``next_observations`` when the file has them. Arrays are views into one
    buffer per column. ``verify`` re-hashes the file against the manifest first. Raises
    :class:`DataError` for a missing manifest, a changed file (``verify``), an unreadable or
    empty file, a wrong schema, null, NaN or inf values, or rows that are not whole episodes
    sorted by (episode, step).
    """
    manifest = read_manifest(data_dir)
    data_dir = Path(data_dir)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    fix = f"regenerate with `behave data generate offline-rl --out {data_dir}`"
    if manifest.get("kind") != KIND:
        raise DataError(f"{data_dir} holds {manifest.get('kind')!r} data, not {KIND!r}; {fix}")
    path = data_dir / TRANSITIONS_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing; {fix}")
    if verify:
        verify_manifest(data_dir, fix=fix)
    check_table(
        path,
        {**_SCALAR_COLUMNS, **dict.fromkeys(_VECTOR_COLUMNS, _VECTOR)},
        table="an offline-rl transitions table",
        fix=fix,
        optional=("next_observation",),
    )
    try:
        frame = pl.read_parquet(path)
    except Exception as err:  # any reader failure means an unreadable file
        raise DataError(
            f"{path} is not a readable Parquet file ({type(err).__name__}); {fix}"
        ) from err

    obs_dim = int(manifest.get("observation_dim") or frame.schema["observation"].shape[0])
    act_dim = int(manifest.get("action_dim") or frame.schema["action"].shape[0])
    arrays = {
        "observations": _vectors(frame, "observation", obs_dim, path),
        "actions": _vectors(frame, "action", act_dim, path),
        "rewards": frame["reward"].to_numpy(),
    }
    if "next_observation" in frame.columns:
        arrays["next_observations"] = _vectors(frame, "next_observation", obs_dim, path)

    episode = frame["episode"].to_numpy()
    step = frame["step"].to_numpy().astype(np.int64)
    terminal = frame["terminal"].to_numpy()
    timeout = frame["timeout"].to_numpy()
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    ends = np.r_[starts[1:], len(frame)] - 1
    expected_step = np.arange(len(frame)) - np.repeat(starts, np.diff(np.r_[starts, len(frame)]))
    if np.any(np.diff(episode[starts]) <= 0) or np.any(step != expected_step):
        raise DataError(f"{path}: rows are not whole episodes sorted by (episode, step); {fix}")
    last = np.zeros(len(frame), bool)
    last[ends] = True
    if not np.all(terminal[ends] | timeout[ends]) or np.any((terminal | timeout) & ~last):
        raise DataError(
            f"{path}: every episode must end, and only end, with terminal or timeout; {fix}"
        )

    rewards = arrays["rewards"].astype(np.float64)
    tail = np.cumsum(rewards[::-1])[::-1]  # sum of rewards from row i to the end of the file
    after = np.r_[tail[1:], 0.0][np.repeat(ends, ends - starts + 1)]  # ... past its episode
    arrays["returns_to_go"] = (tail - after).astype(np.float32)
    arrays["timesteps"] = step
    arrays["terminals"] = terminal
    arrays["timeouts"] = timeout
    cuts = starts[1:]
    split = {key: np.split(values, cuts) for key, values in arrays.items()}
    return [{key: split[key][i] for key in arrays} for i in range(len(starts))]
