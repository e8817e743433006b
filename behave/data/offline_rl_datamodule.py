"""LightningDataModule for offline-RL datasets: episodes -> fixed-length (R̂, s, a) windows.

Episodes, not transitions, are split into train / val with a seeded permutation. Units the
models see (fitted on the training episodes, stored in every bundle by the task):
- states standardized per dimension (Decision Transformer's recipe),
- actions mapped from the environment's bounds to [-1, 1] (the models' tanh head),
- returns-to-go divided by ``return_scale`` (default: a quarter of the expert-minus-random
  reference gap, which puts LunarLander near 130 and Hopper near 800; DT used 1000 for Hopper).

A training window starts at any transition, uniformly (so longer episodes are sampled more, as
DT's length-weighted sampler does), and covers the next ``context_length`` steps of the same
episode; windows that run past the episode's end are right-padded and ``mask`` marks the real
steps (the models are causal, so right padding never changes a real step's prediction). An epoch
is ``windows_per_epoch`` windows drawn with replacement. Validation windows tile the held-out
episodes without overlap.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from behave.data.manifest import DataError
from behave.data.offline_rl import load_trajectories
from behave.errors import ConfigError

__all__ = ["TrajectoryWindows", "OfflineRLDataModule"]

SPLITS_OF_STAGE = {"fit": ("train", "val"), "validate": ("val",), "test": ("val",)}


class TrajectoryWindows(Dataset):
    """Windows over concatenated episodes; fetched a batch at a time (``__getitems__``)."""

    def __init__(self, arrays: dict[str, np.ndarray], starts: np.ndarray, context_length: int):
        self.arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
        self.starts = torch.from_numpy(starts)  # (W,) first row of each window
        self.episode_end = self.arrays.pop("episode_end")  # (N,) last row of each row's episode
        self.K = context_length

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        start = self.starts[torch.as_tensor(indices)]  # (B,)
        rows = start[:, None] + torch.arange(self.K)  # (B, K)
        mask = rows <= self.episode_end[start][:, None]  # (B, K)
        rows = torch.where(mask, rows, start[:, None])  # padded steps read a real row, masked
        batch = {k: v[rows] for k, v in self.arrays.items()}
        for k, v in batch.items():
            if k != "timesteps":
                v[~mask] = 0
        batch["returns_to_go"] = batch["returns_to_go"].unsqueeze(-1)  # (B, K, 1)
        batch["mask"] = mask
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def _collate(batch):  # __getitems__ already built the batch
    return batch


class OfflineRLDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/offline-rl/lunarlander-medium",
        context_length: int = 20,
        batch_size: int = 64,
        windows_per_epoch: int = 20_000,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        return_scale: float | None = None,
        max_val_windows: int = 2_000,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: an offline-rl dataset (``behave data generate offline-rl``).
            context_length: K, steps per window (linked to the model by the CLI).
            windows_per_epoch: training windows per epoch, drawn with replacement.
            val_fraction: share of episodes held out for validation (at least one).
            return_scale: divide returns-to-go by this; None = (R_expert - R_random) / 4.
        """
        super().__init__()
        if context_length < 1:
            raise ConfigError(f"data.context_length must be >= 1, got {context_length}")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        if return_scale is not None and return_scale <= 0:
            raise ConfigError(f"data.return_scale must be > 0 or null, got {return_scale}")
        self.save_hyperparameters()
        self.datasets: dict[str, TrajectoryWindows] = {}
        self._episodes: dict[str, list[dict[str, np.ndarray]]] | None = None
        self._info: dict | None = None

    # ---- what the model needs to know (linked to model.data_info by the CLI) -------------
    @property
    def data_info(self) -> dict:
        if self._info is None:
            self._load()
        return self._info

    def _load(self) -> None:
        from behave.data.manifest import read_manifest

        hp = self.hparams
        path = Path(hp.data_dir)
        if not (path / "manifest.json").is_file():
            raise DataError(
                f"data.data_dir={path} has no offline-rl dataset; create it with "
                f"`behave data generate offline-rl --out {path}`"
            )
        # the file must be the one its manifest describes, with the transitions schema and
        # finite values: a one-line DataError here, not a crash (or a silent run) further on
        episodes = load_trajectories(path, verify=True)
        self.manifest = read_manifest(path)
        if len(episodes) < 2:
            raise DataError(f"{path} has {len(episodes)} episode(s); need at least 2 to split")
        order = np.random.default_rng(hp.split_seed).permutation(len(episodes))
        n_val = max(1, int(round(hp.val_fraction * len(episodes))))
        self._episodes = {
            "val": [episodes[i] for i in sorted(order[:n_val])],
            "train": [episodes[i] for i in sorted(order[n_val:])],
        }
        train_obs = np.concatenate([e["observations"] for e in self._episodes["train"]])
        m = self.manifest
        ref = m["reference_returns"]
        scale = hp.return_scale or (ref["expert"] - ref["random"]) / 4
        max_step = max(int(e["timesteps"][-1]) for e in episodes)
        self._info = {
            "env": m["params"]["env"],
            "quality": m["params"]["quality"],
            "env_id": m["env_id"],
            "env_kwargs": m.get("env_kwargs", {}),
            "state_dim": int(m["observation_dim"]),
            "act_dim": int(m["action_dim"]),
            "max_timestep": max(1000, max_step + 1),
            "normalization": {
                "state_mean": train_obs.mean(0).astype(float).tolist(),
                "state_std": (train_obs.std(0) + 1e-6).astype(float).tolist(),
                "action_low": list(m["action_low"]),
                "action_high": list(m["action_high"]),
                "return_scale": float(scale),
            },
            "reference_returns": ref,
            "dataset_return_mean": m.get("dataset_return_mean"),
            "dataset_score": m.get("dataset_score"),
            "content_hash": m.get("content_hash", ""),
            "train_episodes": len(self._episodes["train"]),
            "val_episodes": n_val,
        }

    # ---- windows ---------------------------------------------------------------------------
    def _arrays(self, episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        norm = self._info["normalization"]
        obs = np.concatenate([e["observations"] for e in episodes])
        act = np.concatenate([e["actions"] for e in episodes])
        low, high = np.asarray(norm["action_low"]), np.asarray(norm["action_high"])
        lengths = np.array([len(e["rewards"]) for e in episodes])
        ends = np.cumsum(lengths) - 1
        return {
            "states": ((obs - norm["state_mean"]) / np.asarray(norm["state_std"])).astype(
                np.float32
            ),
            "actions": np.clip(2 * (act - low) / (high - low) - 1, -1, 1).astype(np.float32),
            "returns_to_go": (
                np.concatenate([e["returns_to_go"] for e in episodes]) / norm["return_scale"]
            ).astype(np.float32),
            "timesteps": np.minimum(
                np.concatenate([e["timesteps"] for e in episodes]),
                self._info["max_timestep"] - 1,
            ),
            "episode_end": np.repeat(ends, lengths),
        }

    def setup(self, stage: str | None = None) -> None:
        if self._episodes is None:
            self._load()
        K = self.hparams.context_length
        for split in SPLITS_OF_STAGE.get(stage or "fit", ("train", "val")):
            if split in self.datasets:
                continue
            arrays = self._arrays(self._episodes[split])
            if split == "train":
                starts = np.arange(len(arrays["timesteps"]))
            else:  # non-overlapping windows from each episode's first step
                starts = np.flatnonzero(arrays["timesteps"] % K == 0)
                if len(starts) > self.hparams.max_val_windows:
                    keep = np.random.default_rng(self.hparams.split_seed).choice(
                        len(starts), self.hparams.max_val_windows, replace=False
                    )
                    starts = starts[np.sort(keep)]
            self.datasets[split] = TrajectoryWindows(arrays, starts, K)

    def episodes(self, split: str) -> list[dict[str, np.ndarray]]:
        if self._episodes is None:
            self._load()
        return self._episodes[split]

    def train_dataloader(self) -> DataLoader:
        data = self.datasets["train"]
        sampler = RandomSampler(data, replacement=True, num_samples=self.hparams.windows_per_epoch)
        return DataLoader(
            data,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            collate_fn=_collate,
            num_workers=self.hparams.num_workers,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["val"],
            batch_size=4 * self.hparams.batch_size,
            collate_fn=_collate,
            num_workers=self.hparams.num_workers,
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
