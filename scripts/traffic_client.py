"""Forecast real scenes with the served Graph-LSTM (``POST /trajectory/forecast``) and compare
each agent's forecast with what it actually did.

    python scripts/traffic_client.py --url http://127.0.0.1:3000 --data-dir data/traffic --scenes 2

Takes held-out scenes of a traffic data folder (``behave data generate traffic``): the test
split the training pipeline set aside (default split settings), so the model never saw them.
Sends each
agent's first ``observe`` positions (the length ``GET /trajectory/model`` asks for) as one
request, and prints per agent: the predicted behavior (with its probability), the error of the
predicted position 3 s and 5 s ahead, and the constant-velocity extrapolation's error.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from behave.client import BehaveClient
from behave.data.traffic_datamodule import TrafficDataModule


def scene_tracks(tracks: pl.DataFrame, scene: int, frames: int) -> dict[str, np.ndarray]:
    """agent id -> positions (frames, 2) of agents present in the scene's first ``frames``."""
    rows = tracks.filter((pl.col("scene") == scene) & (pl.col("frame") < frames))
    out = {}
    for (agent,), g in rows.group_by(["agent"], maintain_order=True):
        if g.height == frames:
            out[f"car-{agent}"] = g.sort("frame").select("x", "y").to_numpy()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--data-dir", default="data/traffic")
    p.add_argument("--scenes", type=int, default=2)
    args = p.parse_args()
    client = BehaveClient(args.url, timeout=30)
    info = client.trajectory_model()
    observe, predict, hz = info.observe_steps, info.predict_steps, info.hz
    tracks = pl.read_parquet(f"{args.data_dir}/tracks.parquet")
    held_out = TrafficDataModule(args.data_dir)._split_scenes(np.sort(tracks["scene"].unique()))
    for scene in sorted(held_out["test"].tolist())[: args.scenes]:
        full = scene_tracks(tracks, scene, observe + predict)
        # one scene: agent_id -> its first `observe` positions
        answer = client.forecast({agent: xy[:observe].round(3) for agent, xy in full.items()})
        print(f"scene {scene}: {len(full)} agents, model version {answer.model_version}")
        print(f"  {'agent':<8}{'behavior':<24}{'err 3 s':>9}{'err 5 s':>9}{'const-vel 5 s':>15}")
        errors, cv_errors = [], []
        for agent in answer.agents:
            xy = full[agent.agent_id]
            pred = np.asarray(agent.positions)
            truth = xy[observe:]
            e3 = np.linalg.norm(pred[int(3 * hz) - 1] - truth[int(3 * hz) - 1])
            e5 = np.linalg.norm(pred[-1] - truth[-1])
            velocity = (xy[observe - 1] - xy[observe - 2]) * hz
            cv5 = np.linalg.norm(xy[observe - 1] + velocity * predict / hz - truth[-1])
            errors.append(e5)
            cv_errors.append(cv5)
            prob = agent.behavior_probabilities[agent.behavior]
            label = f"{agent.behavior} ({prob:.2f})"
            print(f"  {agent.agent_id:<8}{label:<24}{e3:>8.2f}m{e5:>8.2f}m{cv5:>14.2f}m")
        print(
            f"  mean error 5 s ahead: model {np.mean(errors):.2f} m, "
            f"constant velocity {np.mean(cv_errors):.2f} m\n"
        )


if __name__ == "__main__":
    main()
