"""LightningDataModule for Neuroformer: spike recordings -> tokenized (previous, current) windows.

Trials, not windows, are split into train / val / test with a seeded permutation, so every
evaluated window comes from trials the model never saw. Within a trial, a window's current part
(``current_bins``) starts every ``stride_bins`` bins (``eval_stride_bins`` for val/test: there
windows tile the trial without overlap), from the first bin with a full previous window.

Per window (see behave/data/spike_tokens.py for the token layout):

    current_ids, current_offsets (Lc,) · previous_ids, previous_offsets (Lp,)
    stimulus (Ls, S)        the stimulus under the previous + current bins (when recorded)
    behavior_context (Lb,)  past behavior, z-scored with the train split's mean/std
    behavior_target ()      mean z-scored behavior over the current window's bins
    trial, start            where the window comes from

Batches are trimmed to their longest window (padding only as far as the batch needs it).
Token lengths are sized from the train split (the largest window, capped by ``max_current`` /
``max_previous``); windows longer than that keep their earliest spikes and are counted.
``few_shot_trials`` marks the first k train trials as the few-shot set (``loader("few_shot")``)
for fine-tuning the behavior head.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from behave.data.manifest import DataError, read_manifest
from behave.data.spike_tokens import TokenSpec, window_tokens
from behave.data.spikes import BinnedSpikes, load_binned
from behave.data.split_loaders import SplitLoaders
from behave.errors import ConfigError

__all__ = ["SpikeWindows", "SpikesDataModule", "tokenize_trials"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TOKEN_KEYS = ("current_ids", "current_offsets", "previous_ids", "previous_offsets")


def tokenize_trials(
    counts: np.ndarray, trials: np.ndarray, spec: TokenSpec, stride: int
) -> tuple[dict[str, torch.Tensor], int]:
    """Windows of the given trials: token tensors + (trial, start); and how many were truncated.

    counts: (trials, bins, N) of the whole recording; ``trials`` picks rows of it."""
    bins = counts.shape[1]
    starts = np.arange(spec.previous_bins, bins - spec.current_bins + 1, stride)
    out = {k: [] for k in TOKEN_KEYS}
    where, truncated = [], 0
    for t in trials:
        for s in starts:
            tok = window_tokens(counts[t], int(s), spec)
            truncated += bool(tok["truncated"])
            for k in TOKEN_KEYS:
                out[k].append(tok[k])
            where.append((t, s))
    tensors = {k: torch.from_numpy(np.stack(v)) if v else torch.zeros(0) for k, v in out.items()}
    where = np.asarray(where, dtype=np.int64).reshape(-1, 2)
    tensors["trial"] = torch.from_numpy(where[:, 0])
    tensors["start"] = torch.from_numpy(where[:, 1])
    return tensors, truncated


class SpikeWindows(Dataset):
    """Tokenized windows; stimulus and behavior are sliced per batch from the trial arrays."""

    def __init__(
        self,
        tokens: dict[str, torch.Tensor],
        spec: TokenSpec,
        stimulus: torch.Tensor | None,  # (trials, bins, S)
        behavior: torch.Tensor | None,  # (trials, bins), z-scored
    ):
        self.tokens = tokens
        self.spec = spec
        self.stimulus = stimulus
        self.behavior = behavior

    def __len__(self) -> int:
        return len(self.tokens["trial"])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices)
        batch = {k: v[index] for k, v in self.tokens.items()}
        # trim the padding every row of this batch has: attention cost is per token
        pad = self.spec.pad_id
        for prefix in ("current", "previous"):
            used = (batch[f"{prefix}_ids"] != pad).sum(-1).max().clamp_min(1).item()
            for key in (f"{prefix}_ids", f"{prefix}_offsets"):
                batch[key] = batch[key][:, :used]
        trial, start = batch["trial"], batch["start"]
        P, C = self.spec.previous_bins, self.spec.current_bins
        if self.stimulus is not None:
            span = start[:, None] - P + torch.arange(P + C)  # (B, Ls)
            batch["stimulus"] = self.stimulus[trial[:, None], span]  # (B, Ls, S)
        if self.behavior is not None:
            past = start[:, None] - P + torch.arange(P)  # (B, Lb)
            now = start[:, None] + torch.arange(C)  # (B, C)
            batch["behavior_context"] = self.behavior[trial[:, None], past]
            batch["behavior_target"] = self.behavior[trial[:, None], now].mean(-1)
        return batch


class SpikesDataModule(SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/spikes",
        current_bins: int = 5,
        previous_bins: int = 15,
        stride_bins: int = 2,
        eval_stride_bins: int | None = None,
        max_current: int = 96,
        max_previous: int = 256,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        few_shot_trials: int = 10,
        split_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: folder with spikes.parquet (+ covariates.parquet) and manifest.json
                (``behave data generate spikes`` or ``behave data import spikes``).
            current_bins, previous_bins: window lengths in bins (10 ms): 5 = 50 ms, 15 = 150 ms.
            stride_bins: bins between training windows; eval_stride_bins: for val/test
                (default: current_bins, windows tile each trial).
            max_current, max_previous: upper bounds of the token lengths (SOS/EOS included).
            few_shot_trials: train trials used to fine-tune the behavior head (few-shot).
        """
        super().__init__()
        if min(current_bins, previous_bins, stride_bins) < 1:
            raise ConfigError("data.current_bins, previous_bins and stride_bins must be >= 1")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        self.save_hyperparameters()
        self.windows: dict[str, SpikeWindows | None] = {}
        self._load()

    # ---- data facts --------------------------------------------------------------------------
    def _load(self) -> None:
        # verified against the manifest and checked (schema, finite values) before binning:
        # bad data is a one-line DataError here, not a crash or a silent run further on
        self.binned: BinnedSpikes = load_binned(Path(self.hparams.data_dir), verify=True)
        self.manifest = read_manifest(Path(self.hparams.data_dir))
        counts = self.binned.counts
        T, bins, N = counts.shape
        hp = self.hparams
        if bins < hp.previous_bins + hp.current_bins:
            raise DataError(
                f"{hp.data_dir}: trials have {bins} bins, fewer than one window "
                f"({hp.previous_bins} + {hp.current_bins}); lower data.previous_bins"
            )
        self.split = self._split_trials(T)
        train = self.split["train"]
        if len(train) == 0:
            raise DataError(f"{hp.data_dir}: no training trials ({T} trials in all)")
        # token lengths from the train split's busiest windows (+2: SOS and EOS)
        P, C = hp.previous_bins, hp.current_bins
        csum = np.concatenate(
            [np.zeros((len(train), 1)), counts[train].sum(-1).cumsum(-1)], axis=1
        )  # (trials, bins + 1)
        cur = (csum[:, C:] - csum[:, :-C]).max()
        prev = (csum[:, P:] - csum[:, :-P]).max()
        self.spec = TokenSpec(
            num_neurons=N,
            current_bins=C,
            previous_bins=P,
            max_current=int(min(cur + 2, hp.max_current)),
            max_previous=int(max(1, min(prev, hp.max_previous))),
        )
        b = self.binned.behavior
        if b is not None:
            mean, std = float(b[train].mean()), float(b[train].std() + 1e-8)
            self.behavior_stats = {"mean": mean, "std": std}
            self._behavior = torch.from_numpy(((b - mean) / std).astype(np.float32))
        else:
            self.behavior_stats = None
            self._behavior = None
        s = self.binned.stimulus
        self._stimulus = torch.from_numpy(s.astype(np.float32)) if s is not None else None

    @property
    def data_info(self) -> dict:
        s = self.binned.stimulus
        return {
            "tokens": self.spec.to_dict(),
            "bin_s": self.binned.bin_s,
            "stimulus_channels": 0 if s is None else int(s.shape[-1]),
            "behavior": self.manifest.get("behavior"),
            "behavior_stats": self.behavior_stats,
            "content_hash": self.manifest.get("content_hash", ""),
        }

    def _split_trials(self, trials: int) -> dict[str, np.ndarray]:
        hp = self.hparams
        order = np.random.default_rng(hp.split_seed).permutation(trials)
        n_val = max(1, int(round(trials * hp.val_fraction))) if hp.val_fraction > 0 else 0
        n_test = max(1, int(round(trials * hp.test_fraction))) if hp.test_fraction > 0 else 0
        if trials - n_val - n_test < 1:
            raise DataError(
                f"{hp.data_dir}: {trials} trials cannot be split into train/val/test "
                f"({hp.val_fraction}/{hp.test_fraction}); record more trials or lower the fractions"
            )
        train = np.sort(order[n_val + n_test :])
        return {
            "val": np.sort(order[:n_val]),
            "test": np.sort(order[n_val : n_val + n_test]),
            "train": train,
            "few_shot": train[: hp.few_shot_trials],
        }

    # ---- windows -----------------------------------------------------------------------------
    def make_windows(self, name: str) -> SpikeWindows | None:
        hp = self.hparams
        trials = self.split[name]
        if len(trials) == 0:
            return None
        stride = (
            hp.stride_bins
            if name in ("train", "few_shot")
            else (hp.eval_stride_bins or hp.current_bins)
        )
        tokens, truncated = tokenize_trials(self.binned.counts, trials, self.spec, stride)
        if truncated:
            log.warning("%s: %d of %d windows truncated", name, truncated, len(tokens["trial"]))
        return SpikeWindows(tokens, self.spec, self._stimulus, self._behavior)

    def setup(self, stage: str | None = None) -> None:
        names = (
            SPLITS + ("few_shot",)
            if stage in (None, "fit")
            else (("val",) if stage == "validate" else ("test",))
        )
        for name in names:
            if name not in self.windows:
                self.windows[name] = self.make_windows(name)
