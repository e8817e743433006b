"""Evaluate an offline-RL policy the way D4RL papers do: roll it out in the simulator.

``evaluate_policy`` runs ``episodes`` episodes of the dataset's gymnasium environment side by
side (one env object each, one batched model call per step), conditioned on a target return,
and reports returns, D4RL normalized scores, episode lengths, each episode's cumulative return
per step (for the return-vs-step plot) and, optionally, frames of the first episode.

Reset seeds ``EVAL_SEED + 1000 * seed + i`` are disjoint from the dataset's and the reference
returns' seeds, so a policy is never scored on the start states it was trained on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from behave.data.offline_rl import _make_env, normalized_score
from behave.inference.offline_rl import Policy

__all__ = ["RolloutResult", "evaluate_policy", "make_env"]

EVAL_SEED = 2_000_000
log = logging.getLogger(__name__)
# MuJoCo picks its OpenGL backend when it is first imported; headless machines (servers, CI)
# have no X display, and EGL renders without one. Frames are skipped if it is missing too.
os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass
class RolloutResult:
    returns: np.ndarray  # (n,) undiscounted episode returns
    scores: np.ndarray  # (n,) D4RL normalized scores
    lengths: np.ndarray  # (n,) steps
    cumulative: list[np.ndarray]  # per episode: return after each step, (length,)
    frames: list[np.ndarray] = field(default_factory=list)  # first episode, (H, W, 3) each
    frame_steps: list[int] = field(default_factory=list)

    def summary(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}return_mean": float(self.returns.mean()),
            f"{prefix}return_std": float(self.returns.std()),
            f"{prefix}normalized_score": float(self.scores.mean()),
            f"{prefix}normalized_score_std": float(self.scores.std()),
            f"{prefix}episode_length": float(self.lengths.mean()),
        }


def make_env(env: str, render: bool = False):
    """The gymnasium env of a registered offline-rl env name (``lunarlander``, ...)."""
    return _make_env(env, **({"render_mode": "rgb_array"} if render else {}))[1]


def evaluate_policy(
    policy: Policy,
    env: str,
    reference_returns: dict[str, float],
    *,
    target_return: float,
    episodes: int = 10,
    seed: int = 0,
    num_frames: int = 0,
    max_steps: int | None = None,
) -> RolloutResult:
    """Roll out ``episodes`` episodes at once; ``num_frames`` > 0 renders the first one."""
    envs = [make_env(env, render=num_frames > 0 and i == 0) for i in range(episodes)]
    try:
        obs = np.stack(
            [e.reset(seed=EVAL_SEED + 1000 * seed + i)[0] for i, e in enumerate(envs)]
        ).astype(np.float32)
        if num_frames:
            try:
                envs[0].render()
            except Exception as err:  # e.g. MuJoCo without an OpenGL backend on a headless box
                log.warning(
                    "no rollout frames: %s cannot render here (%s: %s); for MuJoCo set "
                    "MUJOCO_GL=egl or osmesa",
                    env,
                    type(err).__name__,
                    str(err).splitlines()[0][:120],
                )
                envs[0].close()
                envs[0] = make_env(env)
                envs[0].reset(seed=EVAL_SEED + 1000 * seed)
                num_frames = 0
        running = policy.start(episodes, target_return)
        done = np.zeros(episodes, bool)
        rewards: list[list[float]] = [[] for _ in range(episodes)]
        last_reward = None
        frames, frame_steps = [], []
        limit = max_steps or envs[0].spec.max_episode_steps or 1000
        for t in range(limit):
            if num_frames and not done[0] and t % 5 == 0:
                frames.append(envs[0].render())
                frame_steps.append(t)
            actions = policy.act(running, obs, last_reward)
            step_reward = np.zeros(episodes, np.float32)
            for i, e in enumerate(envs):
                if done[i]:
                    continue  # finished episodes ride along; their actions are ignored
                o, r, terminated, truncated, _ = e.step(actions[i])
                obs[i], step_reward[i] = o, r
                rewards[i].append(float(r))
                done[i] = terminated or truncated
            last_reward = step_reward
            if done.all():
                break
    finally:
        for e in envs:
            e.close()
    returns = np.array([sum(r) for r in rewards])
    if num_frames and frames:  # evenly spaced frames of the first episode
        pick = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
        frames, frame_steps = [frames[i] for i in pick], [frame_steps[i] for i in pick]
    return RolloutResult(
        returns=returns,
        scores=np.asarray(normalized_score(returns, reference_returns)),
        lengths=np.array([len(r) for r in rewards]),
        cumulative=[np.cumsum(r) for r in rewards],
        frames=frames,
        frame_steps=frame_steps,
    )
