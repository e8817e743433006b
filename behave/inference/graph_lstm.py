"""Graph-LSTM forecasts from a bundle: observed agent tracks -> future positions + behavior.

A scene is a list of agents, each ``{"agent_id": str, "track": [[x, y], ...]}``: positions in
metres at the model's frame rate, oldest first, the last one "now". Only the last ``To`` positions
(``observe_s`` seconds) are read. Several scenes are forecast in one padded batch (the service
batches scenes of concurrent requests). Coordinates are returned in the caller's frame: the
model works relative to each scene's centre, which is added back.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from behave.inference.behavegpt import InputError
from behave.models.graph_lstm import GraphLSTM, GraphLSTMConfig

__all__ = ["FAMILY", "Forecaster", "save_bundle", "load_forecaster", "InputError"]

FAMILY = "graph_lstm"


def save_bundle(model: GraphLSTM, out_dir: Path, extra: dict | None = None) -> Path:
    """``weights.safetensors`` + ``config.json`` (family, model config, behaviors, rule)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "weights.safetensors"))
    meta = {"family": FAMILY, "model": asdict(model.config), **(extra or {})}
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def load_forecaster(bundle_dir: Path, device: str | torch.device = "cpu") -> Forecaster:
    bundle_dir = Path(bundle_dir)
    meta = json.loads((bundle_dir / "config.json").read_text())
    model = GraphLSTM(GraphLSTMConfig(**meta["model"]))
    model.load_state_dict(load_file(str(bundle_dir / "weights.safetensors")))  # no pickle
    return Forecaster(model, meta, device=device)


class Forecaster:
    def __init__(self, model: GraphLSTM, meta: dict, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.config = model.config
        self.behaviors = list(meta.get("behaviors", []))

    @property
    def observe_steps(self) -> int:
        return self.config.observe_steps

    @property
    def observe_s(self) -> float:
        return self.config.observe_steps / self.config.hz

    def validate(self, scenes: list[list[dict]], prefix: str = "scenes") -> None:
        """Raise :class:`InputError` naming the first bad field (what the service checks too)."""
        need = self.observe_steps
        for s, agents in enumerate(scenes):
            if not agents:
                raise InputError(f"{prefix}[{s}].agents", "a scene needs at least one agent")
            seen: dict[str, int] = {}
            for a, agent in enumerate(agents):
                field = f"{prefix}[{s}].agents[{a}]"
                agent_id = str(agent["agent_id"])
                if agent_id in seen:
                    raise InputError(
                        f"{field}.agent_id",
                        f"duplicate agent_id {agent_id!r} (also agents[{seen[agent_id]}]); "
                        "give each agent of a scene its own id",
                    )
                seen[agent_id] = a
                track = np.asarray(agent["track"], dtype=np.float64)
                if track.ndim != 2 or track.shape[1] != 2:
                    raise InputError(f"{field}.track", "give positions as [[x, y], ...] in metres")
                if len(track) < need:
                    raise InputError(
                        f"{field}.track",
                        f"too short: {len(track)} positions; the model observes {need} "
                        f"({self.observe_s:g} s at {self.config.hz:g} Hz), send at least that many",
                    )
                if not np.isfinite(track[-need:]).all():
                    raise InputError(f"{field}.track", "positions must be finite numbers (no NaN)")

    @torch.inference_mode()
    def forecast(self, scenes: list[list[dict]]) -> list[list[dict]]:
        """Each scene's agents -> one forecast per agent, in request order."""
        self.validate(scenes)
        To, c = self.observe_steps, self.config
        N = max(len(agents) for agents in scenes)
        B = len(scenes)
        observed = np.zeros((B, N, To, 2), np.float64)
        present = np.zeros((B, N), bool)
        centres = np.zeros((B, 2), np.float64)
        for s, agents in enumerate(scenes):
            tracks = np.stack([np.asarray(a["track"], np.float64)[-To:] for a in agents])
            centres[s] = tracks[:, -1].mean(axis=0)
            observed[s, : len(agents)] = tracks - centres[s]
            present[s, : len(agents)] = True
        out = self.model(
            torch.as_tensor(observed, dtype=torch.float32, device=self.device),
            torch.as_tensor(present, device=self.device),
        )
        mean = out.mean.double().cpu().numpy() + centres[:, None, None, :]
        scale = out.scale.cpu().numpy()
        corr = out.correlation.cpu().numpy()
        probs = torch.softmax(out.behavior_logits.float(), -1).cpu().numpy()
        times = [round((t + 1) / c.hz, 4) for t in range(c.predict_steps)]
        results = []
        for s, agents in enumerate(scenes):
            scene_out = []
            for a, agent in enumerate(agents):
                p = probs[s, a]
                scene_out.append(
                    {
                        "agent_id": str(agent["agent_id"]),
                        "times_s": times,
                        "positions": np.round(mean[s, a], 3).tolist(),
                        "sigma": np.round(scale[s, a], 3).tolist(),
                        "correlation": np.round(corr[s, a], 3).tolist(),
                        "behavior": self.behaviors[int(p.argmax())] if self.behaviors else "",
                        "behavior_probabilities": {
                            name: round(float(v), 4)
                            for name, v in zip(self.behaviors, p, strict=True)
                        },
                    }
                )
            results.append(scene_out)
        return results

    # ---- MLflow pyfunc: one row per agent ----------------------------------------------------
    def predict_frame(self, frame):
        """Rows (``scene``, ``agent_id``, ``track``) -> rows (``scene``, ``agent_id``,
        ``positions``, ``behavior``)."""
        import pandas as pd

        order = list(dict.fromkeys(frame["scene"].tolist()))
        scenes = [
            [
                {"agent_id": str(r["agent_id"]), "track": [list(p) for p in r["track"]]}
                for _, r in frame[frame["scene"] == key].iterrows()
            ]
            for key in order
        ]
        rows = []
        for key, result in zip(order, self.forecast(scenes), strict=True):
            for agent in result:
                rows.append(
                    {
                        "scene": key,
                        "agent_id": agent["agent_id"],
                        "positions": agent["positions"],
                        "behavior": agent["behavior"],
                    }
                )
        return pd.DataFrame(rows)

    def example_io(self, windows):
        """A two-agent scene from ``windows`` (a TrafficWindows) as the signature's example."""
        import pandas as pd

        batch = windows.__getitems__([0])
        agents = torch.nonzero(batch["present"][0]).flatten()[:2].tolist()
        frame = pd.DataFrame(
            {
                "scene": [0] * len(agents),
                "agent_id": [f"car-{i}" for i in agents],
                "track": [
                    [[round(float(v), 3) for v in p] for p in batch["observed"][0, i]]
                    for i in agents
                ],
            }
        )
        return frame, self.predict_frame(frame)
