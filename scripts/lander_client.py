"""Fly LunarLander episodes with the served policy, one HTTP call per action (``POST /act``).

    python scripts/lander_client.py --url http://127.0.0.1:3000 --episodes 3

Each episode is a session: the first call sends the start observation (and the target return),
later calls send the newest observation and the reward the previous action earned; the server
keeps the episode's recurrent state. Prints each episode's return and D4RL normalized score
(against the reference returns the service reports at ``GET /policy``) and ends the session
with ``DELETE /act/{episode_id}``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import gymnasium

from behave.client import BehaveAPIError, BehaveClient


def fly(client: BehaveClient, env, seed: int, target: float | None) -> tuple[float, int, float]:
    obs, _ = env.reset(seed=seed)
    started = time.perf_counter()
    answer = client.start_episode(obs, target)  # target None: the model's default
    episode, total, steps = answer.episode_id, 0.0, 0
    try:
        while True:
            obs, reward, terminated, truncated, _ = env.step(answer.action)
            total, steps = total + float(reward), steps + 1
            if terminated or truncated:
                break
            answer = client.step_episode(episode, obs, float(reward))
    finally:
        with contextlib.suppress(BehaveAPIError):  # e.g. already expired
            client.end_episode(episode)
    return total, steps, (time.perf_counter() - started) / max(steps, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--target-return", type=float, default=None, help="default: the model's")
    p.add_argument("--seed", type=int, default=12_345)
    args = p.parse_args()
    with BehaveClient(args.url, timeout=30) as client:
        policy = client.policy()
        env = gymnasium.make(policy.env_id, **(policy.env_kwargs or {}))
        ref = policy.reference_returns
        for i in range(args.episodes):
            ret, steps, latency = fly(client, env, args.seed + i, args.target_return)
            score = 100 * (ret - ref["random"]) / (ref["expert"] - ref["random"])
            print(
                f"episode {i}: return {ret:7.1f} (normalized score {score:5.1f}) in {steps} steps, "
                f"{1000 * latency:.1f} ms per action over HTTP"
            )
        env.close()


if __name__ == "__main__":
    main()
