"""The four synthetic time-series classification benchmarks of the TimeX paper, with the cells
that decide each label (ground-truth explanations).

Queen et al., "Encoding Time-Series Explanations through Self-Supervised Model Behavior
Consistency", NeurIPS 2023, https://arxiv.org/abs/2306.02109; official code
https://github.com/mims-harvard/TimeX (``txai/synth_data/``: ``seq_comb_better.py`` is
SeqComb-UV, ``seq_comb_mv.py`` SeqComb-MV, ``freq_shapes.py`` FreqShapes, ``lowvardetect.py``
LowVarDetect). Written from the paper and that code, vectorized over samples.

Background signal (SeqComb, LowVarDetect): NARMA of order 2 as the timesynth package the
official code uses computes it. Its cross term ``0.05 * y[t-1] * sum(y[i-n:n])`` slices an empty
range for every step after the first two (and zeros before), so it is always 0 and what remains
is, per channel, from ``y[-1] = 0``::

    y[t] = 0.3 * y[t-1] + 1.5 * u[t-2] * u[t] + 0.1,    u ~ U(0, 0.5) i.i.d. (2 draws before t=0)

plus Gaussian noise (std 0.01 for SeqComb, 1 for LowVarDetect).

- ``seqcomb-uv`` (T=200, D=1): class 0 is background only (no ground truth). Classes 1-3 get two
  segments, lengths L ~ U{10..19}: the first starts in [0, T/2), the second in [end of the
  first, T - L) (never overlapping; they may touch). Segment values replace the background:
  ``slope * x + sin(a * x)``, ``x = -(L//2), ..., L - L//2 - 1`` (integer steps, centred on
  0), ``a ~ Poisson(10)``, ``slope = ±5 * (|min| + |max|) / L`` with min/max of this sample's
  background. Class 1: both decreasing; 2: both increasing; 3: increasing, then decreasing.
- ``seqcomb-mv`` (T=200, D=4): the same on two distinct random channels (in time the second
  still starts after the first ends), L ~ U{15..29}, ``a ~ Poisson(5)``.
- ``freqshapes`` (T=50, D=1): class -> (shape, period) = 0:(down,10) 1:(up,10) 2:(down,17)
  3:(up,17). Spike centres every ``period`` steps from a start ~ U{0..T-period-1}; a spike is 3
  points ``∓(2 - 0.25 * o**2)``, o = -1, 0, 1 (down: -1.75, -2, -1.75), kept only if all 3 fit
  in the series. Then N(0, 0.25²) noise everywhere. Ground truth: the spike points.
- ``lowvardetect`` (T=200, D=2): NARMA + N(0, 1) per channel; one segment, L ~ U{10..19},
  starting in [20, T - 40), replaced by N(±1.5, 0.1²): channel 0 for classes 0/1, channel 1 for
  2/3; mean -1.5 for classes 0/2, +1.5 for 1/3. Every class has ground truth.

Where we differ from the official code, and why:

- Seeded: one ``np.random.Generator`` per call (theirs reseeds timesynth from OS entropy), so a
  seed names a dataset and its manifest hash.
- Labels are balanced (counts differ by at most 1) and shuffled; theirs are sorted by class with
  the remainder on the last class.
- Ground truth ships for every split (theirs for the test split only).

Axis letters: N samples, T time steps, D channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SynthInfo", "SYNTH_DATASETS", "make_synth", "synth_splits"]


@dataclass(frozen=True)
class SynthInfo:
    seq_len: int  # T
    channels: int  # D
    num_classes: int
    null_class: int | None  # class whose samples carry no ground truth (SeqComb's class 0)
    description: str
    class_names: tuple[str, ...] = ()


SYNTH_DATASETS: dict[str, SynthInfo] = {
    "seqcomb-uv": SynthInfo(
        seq_len=200,
        channels=1,
        num_classes=4,
        null_class=0,
        description="two sin+trend segments on NARMA(2); class = their trend directions",
        class_names=("none", "down-down", "up-up", "up-down"),
    ),
    "seqcomb-mv": SynthInfo(
        seq_len=200,
        channels=4,
        num_classes=4,
        null_class=0,
        description="SeqComb on 4 channels: the two segments on two distinct channels",
        class_names=("none", "down-down", "up-up", "up-down"),
    ),
    "freqshapes": SynthInfo(
        seq_len=50,
        channels=1,
        num_classes=4,
        null_class=None,
        description="3-point spikes in noise; class = spike direction x period (10 or 17)",
        class_names=("down/10", "up/10", "down/17", "up/17"),
    ),
    "lowvardetect": SynthInfo(
        seq_len=200,
        channels=2,
        num_classes=4,
        null_class=None,
        description="one low-variance segment N(±1.5, 0.1²) in noisy NARMA; class = channel x sign",
        class_names=("ch0:-1.5", "ch0:+1.5", "ch1:-1.5", "ch1:+1.5"),
    ),
}

_SEQCOMB = {  # name -> (segment length range [low, high), Poisson rate of the sine's a)
    "seqcomb-uv": ((10, 20), 10.0),
    "seqcomb-mv": ((15, 30), 5.0),
}
_SEQCOMB_DIRECTIONS = np.array(
    [[0, 0], [-1, -1], [1, 1], [1, -1]]
)  # class -> segment slopes' signs
_FREQSHAPES = {0: (-1, 10), 1: (1, 10), 2: (-1, 17), 3: (1, 17)}  # class -> (sign, period)


def _info(name: str) -> SynthInfo:
    if name not in SYNTH_DATASETS:
        raise ValueError(
            f"unknown synthetic time-series set {name!r}; choose one of {', '.join(SYNTH_DATASETS)}"
        )
    return SYNTH_DATASETS[name]


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n, dtype=np.int64) % num_classes)  # (N,)


def _narma2(n: int, seq_len: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(N, T, D) NARMA(2) as timesynth computes it (see the module docstring)."""
    u = rng.uniform(0.0, 0.5, size=(n, seq_len + 2, channels))  # 2 draws before t = 0
    y = np.zeros((n, seq_len, channels))
    prev = np.zeros((n, channels))
    for t in range(seq_len):
        prev = 0.3 * prev + 1.5 * u[:, t] * u[:, t + 2] + 0.1  # (N, D)
        y[:, t] = prev
    return y


def _seqcomb(name: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    info = SYNTH_DATASETS[name]
    (low, high), rate = _SEQCOMB[name]
    seq_len, channels = info.seq_len, info.channels
    y = _balanced_labels(n, info.num_classes, rng)
    background = _narma2(n, seq_len, channels, rng) + rng.normal(0.0, 0.01, (n, seq_len, channels))
    rise = 5.0 * (np.abs(background.min(axis=(1, 2))) + np.abs(background.max(axis=(1, 2))))  # (N,)

    length = rng.integers(low, high, size=(n, 2))  # (N, 2)
    first = rng.integers(0, seq_len // 2, size=n)
    second = rng.integers(first + length[:, 0], seq_len - length[:, 1])  # after the first ends
    start = np.stack([first, second], axis=1)  # (N, 2)
    freq = rng.poisson(rate, size=(n, 2))  # (N, 2): the sine's a
    if channels > 1:  # two distinct channels, uniform over ordered pairs
        channel_1 = rng.integers(0, channels, size=n)
        channel_2 = (channel_1 + rng.integers(1, channels, size=n)) % channels
        channel = np.stack([channel_1, channel_2], axis=1)  # (N, 2)
    else:
        channel = np.zeros((n, 2), dtype=np.int64)
    slope = _SEQCOMB_DIRECTIONS[y] * rise[:, None] / length  # (N, 2)

    x = background.copy()
    truth = np.zeros((n, seq_len, channels), dtype=np.uint8)
    rows = np.arange(n)[:, None]  # (N, 1)
    steps = np.arange(seq_len)[None, :]  # (1, T)
    planted = (y != 0)[:, None]  # (N, 1): class 0 is background only
    for k in range(2):
        offset = steps - start[:, k : k + 1]  # (N, T): position within segment k
        inside = planted & (offset >= 0) & (offset < length[:, k : k + 1])  # (N, T)
        pos = offset - length[:, k : k + 1] // 2  # (N, T): x, centred on 0
        value = slope[:, k : k + 1] * pos + np.sin(freq[:, k : k + 1] * pos)  # (N, T)
        cells = (rows, steps, channel[:, k : k + 1])
        x[cells] = np.where(inside, value, x[cells])
        truth[cells] |= inside.astype(np.uint8)
    segments = np.stack([start, length, channel], axis=2)  # (N, 2, 3)
    segments[y == 0] = -1
    return {
        "x": x,
        "y": y,
        "truth": truth,
        "background": background,
        "segments": segments,
        "freq": freq,
    }


def _freqshapes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    info = SYNTH_DATASETS["freqshapes"]
    seq_len = info.seq_len
    y = _balanced_labels(n, info.num_classes, rng)
    sign = np.array([_FREQSHAPES[c][0] for c in range(4)])[y][:, None]  # (N, 1)
    period = np.array([_FREQSHAPES[c][1] for c in range(4)])[y][:, None]  # (N, 1)
    start = rng.integers(0, seq_len - period[:, 0])[:, None]  # (N, 1): first spike centre
    steps = np.arange(seq_len)[None, :]  # (1, T)
    shifted = steps - start + 1  # (N, T): 0 at the first spike's left point
    offset = shifted % period - 1  # (N, T): -1, 0, 1 within a spike
    centre = steps - offset
    spike = (shifted >= 0) & (offset <= 1) & (centre - 1 >= 0) & (centre + 1 <= seq_len - 1)
    signal = np.where(spike, sign * (2.0 - 0.25 * offset**2), 0.0)  # (N, T)
    noise = rng.normal(0.0, 0.25, size=(n, seq_len))
    return {
        "x": (signal + noise)[:, :, None],
        "y": y,
        "truth": spike.astype(np.uint8)[:, :, None],
        "background": noise[:, :, None],
        "segments": np.concatenate([start, period], axis=1),  # (N, 2): first centre, period
    }


def _lowvardetect(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    info = SYNTH_DATASETS["lowvardetect"]
    seq_len, channels = info.seq_len, info.channels
    y = _balanced_labels(n, info.num_classes, rng)
    background = _narma2(n, seq_len, channels, rng) + rng.normal(0.0, 1.0, (n, seq_len, channels))
    channel = (y >= 2).astype(np.int64)  # classes 0/1 -> channel 0, 2/3 -> channel 1
    mean = np.where(y % 2 == 0, -1.5, 1.5)  # classes 0/2 low, 1/3 high
    length = rng.integers(10, 20, size=n)
    start = rng.integers(20, seq_len - 40, size=n)
    steps = np.arange(seq_len)[None, :]  # (1, T)
    inside = (steps >= start[:, None]) & (steps < (start + length)[:, None])  # (N, T)
    value = mean[:, None] + rng.normal(0.0, 0.1, size=(n, seq_len))  # (N, T)
    x = background.copy()
    truth = np.zeros((n, seq_len, channels), dtype=np.uint8)
    cells = (np.arange(n)[:, None], steps, channel[:, None])
    x[cells] = np.where(inside, value, x[cells])
    truth[cells] = inside.astype(np.uint8)
    segments = np.stack([start, length, channel], axis=1)[:, None, :]  # (N, 1, 3)
    return {"x": x, "y": y, "truth": truth, "background": background, "segments": segments}


def _generate(name: str, num_samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """x, y, truth plus what tests check them against: background (the signal before planting;
    for FreqShapes the noise), segments (start, length, channel per planted segment, -1 for
    none; for FreqShapes the first spike centre and the period) and, for SeqComb, freq (the
    sine's a per segment)."""
    _info(name)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if name in _SEQCOMB:
        return _seqcomb(name, num_samples, rng)
    if name == "freqshapes":
        return _freqshapes(num_samples, rng)
    return _lowvardetect(num_samples, rng)


def make_synth(
    name: str, num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_samples`` series of one set: (X float32 (N, T, D), y int64 (N,), truth uint8
    (N, T, D): 1 where the cell decides the label). Classes balanced, order shuffled."""
    out = _generate(name, num_samples, rng)
    return out["x"].astype(np.float32), out["y"], out["truth"]


def synth_splits(
    name: str,
    seed: int = 0,
    num_train: int = 5000,
    num_val: int = 100,
    num_test: int = 1000,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{"train" | "val" | "test": (X, y, truth)} drawn in that order from one generator seeded
    with ``seed`` (the paper's sizes by default). Same arguments -> identical arrays."""
    _info(name)
    if num_train < 1 or num_val < 0 or num_test < 0:
        raise ValueError(
            f"need num_train >= 1 and num_val, num_test >= 0, got {num_train}/{num_val}/{num_test}"
        )
    rng = np.random.default_rng(seed)
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    return {split: make_synth(name, n, rng) for split, n in sizes.items()}
