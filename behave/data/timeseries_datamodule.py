"""LightningDataModule for time-series classification (the classifier and TimeX pipelines).

Reads a folder written by ``behave data generate timeseries-synth`` or ``behave data import
ucr`` (see :mod:`behave.data.timeseries`). Its splits are the folder's own (train / val / test,
as the generator or the archive made them). A batch is a dict::

    x (B, T, D) float32 · y (B,) int64 · truth (B, T, D) uint8 (only where the data has one)
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from behave.data.split_loaders import SplitLoaders
from behave.data.timeseries import TimeSeriesData, load_timeseries
from behave.errors import ConfigError

__all__ = ["SeriesSplit", "TimeSeriesDataModule"]


class SeriesSplit(Dataset):
    """One split's arrays as tensors; ``__getitems__`` slices a whole batch at once."""

    def __init__(self, x: np.ndarray, y: np.ndarray, truth: np.ndarray | None) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.truth = None if truth is None else torch.from_numpy(np.asarray(truth, np.uint8))

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices)
        batch = {"x": self.x[index], "y": self.y[index]}
        if self.truth is not None:
            batch["truth"] = self.truth[index]
        return batch


class TimeSeriesDataModule(SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/timeseries/freqshapes",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: folder with series.parquet and manifest.json
                (``behave data generate timeseries-synth --name NAME`` or
                ``behave data import ucr NAME``).
            batch_size: series per batch.
        """
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.data: TimeSeriesData = load_timeseries(Path(data_dir))
        self.manifest = self.data.manifest
        self.windows: dict[str, SeriesSplit | None] = {}

    @property
    def data_info(self) -> dict:
        d = self.data
        x_train = d.splits["train"][0]
        return {
            "dataset": d.name,
            "seq_len": d.seq_len,
            "channels": d.channels,
            "num_classes": d.num_classes,
            "class_names": list(d.class_names),
            "null_class": d.null_class,
            "has_ground_truth": d.has_ground_truth,
            # dropped multivariate cells take the train mean of their channel (TimeX baseline)
            "channel_means": x_train.reshape(-1, d.channels).mean(0).astype(float).tolist(),
            "channel_stds": x_train.reshape(-1, d.channels).std(0).astype(float).tolist(),
            "content_hash": self.manifest.get("content_hash", ""),
        }

    def split_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y, truth) of a split as numpy arrays."""
        return self.data.splits[name]

    def setup(self, stage: str | None = None) -> None:
        for name, (x, y, truth) in self.data.splits.items():
            if name not in self.windows:
                self.windows[name] = SeriesSplit(x, y, truth) if len(y) else None
