"""Spike events <-> Neuroformer tokens.

A window of the recording becomes two token sequences (Antoniades et al., ICLR 2024, §3):

- the **current** window (``current_bins`` bins, 50 ms at 10 ms): ``[SOS] spikes... [EOS]``,
  one token per spike in time order (ties by neuron id), each token a pair (neuron id, offset =
  bin index within the window); the model predicts this sequence autoregressively;
- the **previous** window (``previous_bins`` bins just before it, 150 ms): the same pairs without
  SOS/EOS, offsets counted from the previous window's start; the model cross-attends to it.

Both are padded to fixed lengths (``max_current`` / ``max_previous``) with ``pad_id`` and a pad
offset. A window with more spikes than fit keeps its earliest spikes and is counted as truncated
(the data module sizes the lengths from the data so that almost none are).

Time resolution is the bin (10 ms): a token's time is ``window start + offset · bin_s``; a
round trip events -> tokens -> events returns each spike's bin, not its sub-bin time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TokenSpec", "window_tokens", "tokens_to_events", "events_to_counts"]


@dataclass(frozen=True)
class TokenSpec:
    num_neurons: int
    current_bins: int = 5  # 50 ms at 10 ms bins
    previous_bins: int = 15  # 150 ms
    max_current: int = 64  # tokens in the current window, SOS and EOS included
    max_previous: int = 160  # tokens in the previous window

    @property
    def pad_id(self) -> int:
        return self.num_neurons

    @property
    def sos_id(self) -> int:
        return self.num_neurons + 1

    @property
    def eos_id(self) -> int:
        return self.num_neurons + 2

    @property
    def id_vocab(self) -> int:
        return self.num_neurons + 3

    @property
    def eos_offset(self) -> int:
        return self.current_bins  # one past the last bin: "the window ends here"

    @property
    def current_offsets(self) -> int:
        return self.current_bins + 2  # bins, EOS, pad

    @property
    def previous_offsets(self) -> int:
        return self.previous_bins + 1  # bins, pad

    def to_dict(self) -> dict:
        return asdict(self)


def _spike_tokens(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """counts (bins, N) -> (neuron ids, bin offsets) of every spike, time order, ties by id;
    a bin with k spikes of one neuron gives k tokens."""
    bins, neurons = np.nonzero(counts)
    reps = counts[bins, neurons].astype(np.int64)
    return np.repeat(neurons, reps), np.repeat(bins, reps)


def window_tokens(counts: np.ndarray, start: int, spec: TokenSpec) -> dict[str, np.ndarray | bool]:
    """Tokens of the window whose current part starts at bin ``start`` of one trial.

    counts: (bins, N) spike counts of the trial; bins before 0 count as silent.
    Returns current_ids/current_offsets (max_current,), previous_ids/previous_offsets
    (max_previous,) as int64, and ``truncated`` (bool).
    """
    cur_ids, cur_off = _spike_tokens(counts[start : start + spec.current_bins])
    first_prev = max(0, start - spec.previous_bins)
    prev_ids, prev_off = _spike_tokens(counts[first_prev:start])
    prev_off = prev_off + (first_prev - (start - spec.previous_bins))

    room = spec.max_current - 2
    truncated = len(cur_ids) > room or len(prev_ids) > spec.max_previous
    cur_ids, cur_off = cur_ids[:room], cur_off[:room]
    prev_ids, prev_off = prev_ids[-spec.max_previous :], prev_off[-spec.max_previous :]

    current_ids = np.full(spec.max_current, spec.pad_id, np.int64)
    current_offsets = np.full(spec.max_current, spec.current_offsets - 1, np.int64)
    n = len(cur_ids)
    current_ids[0], current_offsets[0] = spec.sos_id, 0
    current_ids[1 : n + 1], current_offsets[1 : n + 1] = cur_ids, cur_off
    current_ids[n + 1], current_offsets[n + 1] = spec.eos_id, spec.eos_offset

    previous_ids = np.full(spec.max_previous, spec.pad_id, np.int64)
    previous_offsets = np.full(spec.max_previous, spec.previous_offsets - 1, np.int64)
    previous_ids[: len(prev_ids)], previous_offsets[: len(prev_ids)] = prev_ids, prev_off
    return {
        "current_ids": current_ids,
        "current_offsets": current_offsets,
        "previous_ids": previous_ids,
        "previous_offsets": previous_offsets,
        "truncated": truncated,
    }


def tokens_to_events(
    ids: np.ndarray, offsets: np.ndarray, spec: TokenSpec, *, start_bin: int, bin_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """A current-window token sequence -> (neuron ids, spike times in s) of its spikes.

    Reads up to the first EOS; SOS, pad and out-of-range offsets are skipped."""
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    end = np.flatnonzero(ids == spec.eos_id)
    stop = end[0] if len(end) else len(ids)
    ids, offsets = ids[:stop], offsets[:stop]
    keep = (ids < spec.num_neurons) & (offsets >= 0) & (offsets < spec.current_bins)
    return ids[keep], (start_bin + offsets[keep]) * bin_s


def events_to_counts(
    neurons: np.ndarray, times: np.ndarray, *, num_neurons: int, bins: int, bin_s: float
) -> np.ndarray:
    """(neuron, time in s) events -> counts (bins, num_neurons) uint8; events outside
    [0, bins · bin_s) are ignored."""
    b = np.floor(np.asarray(times, np.float64) / bin_s + 1e-9).astype(np.int64)
    n = np.asarray(neurons, np.int64)
    keep = (b >= 0) & (b < bins) & (n >= 0) & (n < num_neurons)
    counts = np.zeros((bins, num_neurons), np.int64)
    np.add.at(counts, (b[keep], n[keep]), 1)
    return np.minimum(counts, 255).astype(np.uint8)
