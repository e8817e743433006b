"""LightningDataModule for user-event logs: Parquet (polars) -> fixed-length event windows.

Users, not events, are split into train / val / test with a seeded permutation, so the
evaluation split is fixed for a given data directory and ``split_seed`` and no user's future
leaks into training. Each user's time-ordered events are cut into windows of
``context_length + 1`` events (stride ``context_length``); the model sees the first
``context_length`` and predicts each next one. Short tails are right-padded with <pad>.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset

from behave.data.checks import check_table
from behave.data.manifest import DataError, verify_manifest
from behave.data.schema import EVENT_SCHEMA, EVENTS_FILE, REQUIRED_COLUMNS, time_features
from behave.data.vocab import Vocabulary

__all__ = ["EventWindows", "UserEventsDataModule", "build_windows"]

FEATURES = ("behavior", "weekday", "time_slot", "location", "domain")
# predict reads the test split (the held-out users), like test
SPLITS_OF_STAGE = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


class EventWindows(Dataset):
    """Windows of integer event features; item = dict of (context_length + 1,) tensors."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}

    def __len__(self) -> int:
        return len(self.tensors["behavior"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def build_windows(frame: pl.DataFrame, context_length: int) -> dict[str, np.ndarray]:
    """Cut each user's events (frame sorted by user, time) into padded windows, vectorized."""
    width = context_length + 1
    if frame.height == 0:
        return {k: np.zeros((0, width), dtype=np.int64) for k in FEATURES}
    user_codes = frame["user_id"].rle_id().to_numpy()
    starts_of_user = np.flatnonzero(np.r_[True, user_codes[1:] != user_codes[:-1]])
    lengths = np.diff(np.r_[starts_of_user, len(user_codes)])
    # windows per user: starts at 0, L, 2L, ... while at least one target follows the start
    per_user = np.maximum((lengths - 2) // context_length + 1, 0)
    per_user[lengths < 2] = 0
    user_of_window = np.repeat(np.arange(len(lengths)), per_user)
    k = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    begin = starts_of_user[user_of_window] + k * context_length  # (W,)
    end = starts_of_user[user_of_window] + lengths[user_of_window]  # (W,) exclusive
    index = begin[:, None] + np.arange(width)[None, :]  # (W, L+1)
    valid = index < end[:, None]
    index = np.where(valid, index, 0)
    columns = {
        "behavior": "behavior_id",
        "weekday": "weekday",
        "time_slot": "time_slot",
        "location": "location_id",
        "domain": "domain_id",
    }
    out = {}
    for name, column in columns.items():
        values = frame[column].to_numpy().astype(np.int64)[index]
        out[name] = np.where(valid, values, 0)  # behavior 0 = <pad>
    return out


def _scan_events(path: Path) -> pl.LazyFrame:
    """The event table, after checking it is readable Parquet with the event schema, no missing
    required values and at least one event."""
    return check_table(
        path,
        {c: dtype.base_type() for c, dtype in EVENT_SCHEMA.items()},  # any Datetime unit
        table="an event table",
        fix=(
            f"re-import the log with `behave data import LOG --out {path.parent}` (it quarantines "
            f"bad rows) or regenerate with `behave data generate user-events --out {path.parent}`"
        ),
        nullable=[c for c in EVENT_SCHEMA if c not in REQUIRED_COLUMNS],
    )


class UserEventsDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/user-events",
        context_length: int = 64,
        batch_size: int = 128,
        domains: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        train_user_fraction: float = 1.0,
        split_seed: int = 0,
        vocab_from: str | None = None,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: folder with ``events.parquet`` + ``manifest.json`` (``behave data ...``).
            context_length: events per training window (must not exceed the model's context).
            domains: keep only these domains (all when None), e.g. to pretrain on some domains
                and adapt to another.
            val_fraction, test_fraction: shares of *users* held out; fixed by ``split_seed``.
            train_user_fraction: use only this share of the training users (few-shot
                adaptation); validation and test users are unaffected.
            vocab_from: a registered model (``models:/behave.behavegpt@champion``) or a local
                model folder whose vocabulary to reuse, so fine-tuning encodes events the same
                way; when None the vocabulary is built from this data.
        """
        super().__init__()
        self.save_hyperparameters()
        if not 0 < train_user_fraction <= 1:
            raise DataError(
                f"data.train_user_fraction must be in (0, 1], got {train_user_fraction}"
            )
        if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
            raise DataError("data.val_fraction and test_fraction must be >= 0 and sum to < 1")
        self.data_dir = Path(data_dir)
        # every file must be the one its manifest describes: a truncated, edited or replaced
        # file is a one-line DataError here, not a crash (or a silent retrain) further on
        self.manifest = verify_manifest(self.data_dir)
        events = _scan_events(self.data_dir / EVENTS_FILE)
        if domains:
            present = set(events.select(pl.col("domain").unique()).collect()["domain"].to_list())
            missing = sorted(set(domains) - present)
            if missing:
                raise DataError(
                    f"data.domains: {missing} not in {self.data_dir} (it has {sorted(present)})"
                )
            events = events.filter(pl.col("domain").is_in(domains))
        if vocab_from:
            from behave.tracking import resolve_model_dir  # only when reusing a registered model

            self.vocab = Vocabulary.from_json(resolve_model_dir(vocab_from) / "vocab.json")
        else:
            self.vocab = Vocabulary.from_events(events)
        self.frame = (
            self.vocab.encode(events)
            .with_columns(time_features(pl.col("timestamp")))
            .select("user_id", "behavior_id", "weekday", "time_slot", "location_id", "domain_id")
            .collect()
        )
        if self.frame.height == 0:
            raise DataError(f"no events in {self.data_dir} for domains={domains}")
        self.splits = self._split_users()
        train_ids = self.splits["train"]["behavior_id"].to_numpy()
        self.behavior_counts = np.bincount(train_ids, minlength=len(self.vocab.behaviors)).tolist()

    # ---- facts the task needs (linked by the CLI) ---------------------------------------
    @property
    def data_info(self) -> dict:
        return {
            "num_behaviors": len(self.vocab.behaviors),
            "num_locations": len(self.vocab.locations),
            "num_domains": len(self.vocab.domains),
            "behavior_counts": self.behavior_counts,
            "content_hash": self.manifest.get("content_hash", ""),
        }

    def _split_users(self) -> dict[str, pl.DataFrame]:
        users = self.frame["user_id"].unique().sort().to_numpy()
        order = np.random.default_rng(self.hparams.split_seed).permutation(len(users))
        n_test = int(round(self.hparams.test_fraction * len(users)))
        n_val = int(round(self.hparams.val_fraction * len(users)))
        test, val = users[order[:n_test]], users[order[n_test : n_test + n_val]]
        train = users[order[n_test + n_val :]]
        train = train[: max(1, int(round(self.hparams.train_user_fraction * len(train))))]
        return {
            name: self.frame.filter(pl.col("user_id").is_in(pl.Series(ids).implode()))
            for name, ids in (("train", train), ("val", val), ("test", test))
        }

    def setup(self, stage: str | None = None) -> None:
        """Builds the windows of the splits ``stage`` reads (all when None), once each."""
        self.datasets = getattr(self, "datasets", {})
        for name in SPLITS_OF_STAGE.get(stage, ("train", "val", "test")):
            if name not in self.datasets:
                windows = build_windows(self.splits[name], self.hparams.context_length)
                self.datasets[name] = EventWindows(windows)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
