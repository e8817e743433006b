"""LightningDataModule for road-agent forecasting: scenes -> (observe 2 s, predict 5 s) windows.

Scenes, not windows, are split into train / val / test with a seeded permutation, so no scene
(and no agent) is seen in training and scored in evaluation. In each scene, windows of
``observe_s + predict_s`` seconds start every ``stride_s`` seconds. A window keeps the agents
present in every observed frame (at most ``max_agents``, nearest to the window's centre first);
their future may end early (an imported track that leaves), which ``future_present`` marks.

Per window (N = ``max_agents``, padded; To observed frames, Tp predicted frames, all at the
data's ``hz``), coordinates in metres relative to the window's centre (the mean last observed
position of its agents), so models never see absolute road positions:

    observed (N, To, 2) · present (N,)         (velocities: the model differences positions)
    future (N, Tp, 2) · future_present (N, Tp)
    behavior (N,)             label of the agent's future (-1: none), see traffic_behavior.py
    future_projection (S, N, N)  U U^T of the true graph's spectral embedding at each whole
                              second of the horizon (S = predict_s), the stream-2 target
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from behave.data.checks import check_table
from behave.data.manifest import DataError, verify_manifest
from behave.data.split_loaders import SplitLoaders
from behave.data.traffic import TRACK_SCHEMA, TRACKS_FILE
from behave.data.traffic_behavior import BEHAVIORS, BehaviorRule, label_behaviors
from behave.errors import ConfigError
from behave.ops.graphs import geometric_adjacency, projection, spectral_embedding

__all__ = ["TrafficWindows", "TrafficDataModule", "GraphSettings", "cut_windows"]

SPLITS = ("train", "val", "test")
# fit needs test too: the end-of-fit report scores the best weights on the held-out scenes
SPLITS_OF_STAGE = {"fit": SPLITS, "validate": ("val",), "test": ("test",), "predict": ("test",)}


class GraphSettings(dict):
    """The DGG of the model and of the stream-2 targets: radius_m, scale_m, k_neighbours,
    eigenvectors. (A dict, so it goes into data_info and bundles as JSON.)"""

    DEFAULTS = {"radius_m": 30.0, "scale_m": 10.0, "k_neighbours": 4, "eigenvectors": 4}

    def __init__(self, **values) -> None:
        unknown = sorted(set(values) - set(self.DEFAULTS))
        if unknown:
            raise ConfigError(f"data.graph: unknown keys {unknown}; use {list(self.DEFAULTS)}")
        super().__init__({**self.DEFAULTS, **values})


def _dense_scene(scene: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one scene -> positions (F, A, 2), present (F, A)."""
    frames = scene["frame"].to_numpy()
    agents = scene["agent"].to_numpy()
    first = frames.min()
    F, A = frames.max() - first + 1, agents.max() + 1
    pos = np.zeros((F, A, 2), np.float32)
    present = np.zeros((F, A), bool)
    f, a = frames - first, agents
    pos[f, a] = scene.select("x", "y").to_numpy()
    present[f, a] = True
    return pos, present


def cut_windows(
    pos: np.ndarray,
    present: np.ndarray,
    *,
    observe: int,
    predict: int,
    stride: int,
    max_agents: int,
) -> list[dict[str, np.ndarray]]:
    """Windows of one dense scene (see the module docstring); arrays before padding."""
    out = []
    F = pos.shape[0]
    for start in range(0, F - observe - predict + 1, stride):
        last = start + observe - 1
        keep = present[start : last + 1].all(axis=0)  # (A,) seen in every observed frame
        if keep.sum() < 1:
            continue
        idx = np.flatnonzero(keep)
        centre = pos[last, idx].mean(axis=0)
        if len(idx) > max_agents:  # nearest to the centre first
            d = np.linalg.norm(pos[last, idx] - centre, axis=-1)
            idx = idx[np.argsort(d, kind="stable")[:max_agents]]
        span = slice(start, start + observe + predict)
        out.append(
            {
                "positions": pos[span, idx] - centre,  # (To + Tp, n, 2)
                "present": present[span, idx],
            }
        )
    return out


class TrafficWindows(Dataset):
    """Padded windows as stacked tensors; a batch is a slice (``__getitems__``)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["present"])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices)
        return {k: v[index] for k, v in self.tensors.items()}


class TrafficDataModule(SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/traffic",
        observe_s: float = 2.0,
        predict_s: int = 5,
        stride_s: float = 2.0,
        max_agents: int = 32,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        graph: dict | None = None,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: folder with tracks.parquet + manifest.json (``behave data generate
                traffic`` or ``behave data import traffic``).
            observe_s, predict_s: seconds observed and predicted (the paper: 2 s and 3-5 s).
            stride_s: seconds between the starts of two windows of one scene.
            max_agents: agents per window (padding size); the nearest to the centre are kept.
            graph: DGG settings (radius_m, scale_m, k_neighbours, eigenvectors), see GraphSettings.
        """
        super().__init__()
        if predict_s < 1 or observe_s <= 0 or stride_s <= 0:
            raise ConfigError("data.predict_s must be >= 1 and observe_s, stride_s > 0 (seconds)")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        self.save_hyperparameters()
        self.graph = GraphSettings(**(graph or {}))
        self.windows: dict[str, TrafficWindows] = {}
        self._load()

    # ---- data facts --------------------------------------------------------------------------
    def _load(self) -> None:
        path = Path(self.hparams.data_dir)
        make = (
            f"`behave data generate traffic --out {path}` or import tracks with "
            f"`behave data import traffic TRACKS.csv --out {path}`"
        )
        if not (path / TRACKS_FILE).is_file():
            raise DataError(f"no {TRACKS_FILE} in {path}: generate traffic with {make}")
        # the file must be the one its manifest describes, with the track schema and finite
        # values: a one-line DataError here, not a crash (or a silent run) further on
        fix = f"regenerate with {make}"
        self.manifest = verify_manifest(path, fix=fix)
        check_table(
            path / TRACKS_FILE,
            TRACK_SCHEMA,
            table="a tracks table",
            fix=fix,
            nullable=("lane", "style"),  # unknown in imported tracks
        )
        self.hz = float(self.manifest.get("hz", 10.0))
        self.rule = BehaviorRule.from_dict(self.manifest.get("behavior_rule"))
        self.observe = int(round(self.hparams.observe_s * self.hz))
        self.predict = int(round(self.hparams.predict_s * self.hz))
        self.stride = max(1, int(round(self.hparams.stride_s * self.hz)))
        if self.observe < 2:
            raise ConfigError(f"data.observe_s: need at least 2 observed frames at {self.hz} Hz")

    @property
    def data_info(self) -> dict:
        return {
            "hz": self.hz,
            "observe_steps": self.observe,
            "predict_steps": self.predict,
            "max_agents": self.hparams.max_agents,
            "behaviors": list(BEHAVIORS),
            "behavior_rule": self.rule.to_dict(),
            "graph": dict(self.graph),
            "content_hash": self.manifest.get("content_hash", ""),
        }

    def _split_scenes(self, scenes: np.ndarray) -> dict[str, np.ndarray]:
        order = np.random.default_rng(self.hparams.split_seed).permutation(scenes)
        n = len(order)
        n_val = int(round(n * self.hparams.val_fraction)) if n > 2 else 0
        n_test = int(round(n * self.hparams.test_fraction)) if n > 2 else 0
        if self.hparams.val_fraction > 0 and n > 2:
            n_val = max(n_val, 1)
        if self.hparams.test_fraction > 0 and n > 2:
            n_test = max(n_test, 1)
        return {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :] if n > 2 else order,
        }

    # ---- windows -------------------------------------------------------------------------------
    def _tensors(self, windows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        N, To, Tp = self.hparams.max_agents, self.observe, self.predict
        W = len(windows)
        positions = torch.zeros(W, To + Tp, N, 2)
        present = torch.zeros(W, To + Tp, N, dtype=torch.bool)
        for w, win in enumerate(windows):
            n = win["present"].shape[1]
            positions[w, :, :n] = torch.from_numpy(win["positions"])
            present[w, :, :n] = torch.from_numpy(win["present"])
        agent = present[:, :To].all(dim=1)  # (W, N)
        # behavior: the agent's last observed frame to the end of the horizon
        behavior = label_behaviors(
            positions[:, To - 1 :], present[:, To - 1 :] & agent[:, None], self.rule, self.hz
        )
        behavior[~agent] = -1
        # stream-2 targets: the true graph at each whole second of the horizon
        seconds = [To - 1 + int(round(s * self.hz)) for s in range(1, self.hparams.predict_s + 1)]
        g = self.graph
        key_pos, key_present = positions[:, seconds], present[:, seconds] & agent[:, None]
        adjacency = geometric_adjacency(
            key_pos, key_present, radius=g["radius_m"], scale=g["scale_m"], k=g["k_neighbours"]
        )
        vectors, _ = spectral_embedding(adjacency, key_present, g["eigenvectors"])
        return {
            "observed": positions[:, :To].transpose(1, 2).contiguous(),  # (W, N, To, 2)
            "present": agent,  # (W, N)
            "future": positions[:, To:].transpose(1, 2).contiguous(),  # (W, N, Tp, 2)
            "future_present": (present[:, To:] & agent[:, None]).transpose(1, 2).contiguous(),
            "behavior": behavior,  # (W, N)
            "future_projection": projection(vectors),  # (W, S, N, N)
        }

    def setup(self, stage: str | None = None) -> None:
        """Cut the windows of the splits ``stage`` reads (all for ``fit`` or None)."""
        wanted = [n for n in SPLITS_OF_STAGE.get(stage, SPLITS) if n not in self.windows]
        if not wanted:
            return
        tracks = pl.read_parquet(Path(self.hparams.data_dir) / TRACKS_FILE)
        scenes = np.sort(tracks["scene"].unique().to_numpy())
        split = self._split_scenes(scenes)
        by_scene = {s: g for (s,), g in tracks.group_by(["scene"], maintain_order=True)}
        for name in wanted:
            windows = []
            for s in np.sort(split[name]):
                windows += cut_windows(
                    *_dense_scene(by_scene[s]),
                    observe=self.observe,
                    predict=self.predict,
                    stride=self.stride,
                    max_agents=self.hparams.max_agents,
                )
            if name == "train" and not windows:
                raise DataError(
                    f"{self.hparams.data_dir}: no training window of {self.hparams.observe_s} + "
                    f"{self.hparams.predict_s} s; scenes must be at least that long "
                    f"(generate longer scenes or lower data.predict_s)"
                )
            self.windows[name] = TrafficWindows(self._tensors(windows)) if windows else None

    def class_counts(self, name: str = "train") -> list[int]:
        labels = self.windows[name].tensors["behavior"]
        return [int((labels == c).sum()) for c in range(len(BEHAVIORS))]
