"""A spiking circuit with known wiring, a drifting-grating stimulus and running speed.

Ground truth for the Neuroformer family (Antoniades et al., "Neuroformer: Multimodal and
Multitask Generative Pretraining for Brain Data", ICLR 2024, https://arxiv.org/abs/2311.00573;
official code https://github.com/a-antoniades/Neuroformer). The paper recovers hub-like
connectivity from a simulated circuit (NEST); we simulate a discrete-time Bernoulli GLM in plain
numpy instead: no NEST dependency, a few seconds for the default size, and the exact weights
and delays that made every spike are known.

Per 10 ms bin ``t``, trial ``r`` and neuron ``n`` (vectorized over trials and neurons)::

    logit[r, t, n] = bias[n]                                  baseline rate (1.5-4.5 Hz, hubs 8-12)
                   + stimulus[r, t, :] @ stim_weights[:, n]   tuning to the grating's channels
                   + speed_gain[n] * speed[r, t] / speed_scale      behavior modulates activity
                   + sum_d counts[r, t - d, :] @ W_d[:, n]    edges with delay d in 1..3 bins
    counts[r, t, n] ~ Bernoulli(sigmoid(logit) * (1 - counts[r, t - 1, n]))  refractory bin
    speed[r, t + 1] = max(0, a * speed[r, t] + (1 - a) * speed_baseline
                             + motor_drive * sum(counts[r, t, motor]) + noise)

The ``(1 - counts[r, t - 1, n])`` factor is an absolute refractory period of one bin
(self-inhibition; not an edge of the adjacency). Running speed both depends on activity (the
previous bin's spikes of the "motor" neurons) and modulates it. Wiring: ``num_hubs`` hubs, each
exciting ~``hub_fanout`` of the other neurons strongly, plus sparse weaker random edges of
either sign. The adjacency is ``A[source, target]``. Each trial starts after ``warmup_s`` of
simulated, discarded grey screen, so the network and the speed begin in their steady state.

Differences from the paper's circuit, and why: Bernoulli GLM (not integrate-and-fire in NEST)
for speed and exact ground truth; at most one spike per neuron and bin (10 ms, refractory);
the behavior variable is simulated jointly with the spikes so both directions of coupling exist.

Stimulus: each trial shows one of ``num_conditions`` drift directions (the trial's condition)
after a grey period; channel ``k`` is a rectified cosine tuning to direction ``k * 360 / S``
times a ``drift_hz`` phase modulation, so one condition always gives the same time course.

Axis letters: R trials, L bins per trial, N neurons, S stimulus channels, E edges.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

try:  # small matmuls run ~2x faster on one BLAS thread than on many contending ones
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with most scientific stacks
    threadpool_limits = None

__all__ = ["CircuitConfig", "simulate_circuit"]

_EDGE_JITTER = 1e-4  # spike times keep this fraction of a bin clear of bin edges (exact binning)


@dataclass(frozen=True)
class CircuitConfig:
    num_neurons: int = 100  # N
    num_trials: int = 200  # R
    trial_s: float = 3.0  # seconds per trial (L = trial_s / bin_s bins)
    bin_s: float = 0.01  # simulation step and binning width (s)
    warmup_s: float = 1.0  # simulated before each trial (grey screen) and discarded
    # --- baseline
    baseline_hz: tuple[float, float] = (1.5, 4.5)  # per-neuron rate without inputs, uniform
    hub_baseline_hz: tuple[float, float] = (8.0, 12.0)  # hubs fire somewhat more
    # --- wiring (A[source, target])
    num_hubs: int = 5
    hub_fanout: float = 0.25  # fraction of the non-hub neurons each hub excites
    hub_weight: float = 2.0  # logit weight of a hub edge (mean)
    hub_weight_jitter: float = 0.3  # its standard deviation across edges
    max_delay_bins: int = 3  # edge delays are drawn from 1..max_delay_bins
    random_edge_prob: float = 0.01  # each other ordered pair is an edge with this probability
    random_weight: tuple[float, float] = (0.5, 1.0)  # |weight| range of random edges
    excitatory_fraction: float = 0.5  # random edges with a positive weight
    # --- stimulus: drifting grating
    num_conditions: int = 4  # drift directions, evenly spaced; one per trial
    stimulus_channels: int = 8  # S: direction-tuned channels
    drift_hz: float = 2.0  # temporal frequency of the grating
    grey_s: float = 0.5  # grey screen (all channels 0) at the start of each trial
    preferred_weight: tuple[float, float] = (1.0, 2.0)  # logit weight on a neuron's best channel
    other_weight_std: float = 0.2  # weights on the other channels ~ N(0, std)
    # --- behavior: running speed (cm/s)
    num_motor: int = 10  # neurons whose spikes drive the speed
    motor_drive: float = 0.3  # cm/s added per motor spike in the previous bin
    speed_ar: float = 0.97  # AR(1) coefficient a per bin (time constant ~0.33 s)
    speed_baseline: float = 4.0  # level the AR(1) relaxes to without motor input
    speed_noise: float = 1.0  # cm/s, per-bin innovation std
    speed_scale: float = 10.0  # speed enters the logit as speed / speed_scale
    speed_gain_std: float = 0.5  # per-neuron gain ~ N(0, std)

    def __post_init__(self) -> None:
        if self.num_neurons < 2 or self.num_trials < 1:
            raise ValueError("num_neurons must be >= 2 and num_trials >= 1")
        if self.bin_s <= 0 or self.trial_s < self.bin_s or self.warmup_s < 0:
            raise ValueError(
                f"need 0 < bin_s <= trial_s and warmup_s >= 0, got {self.bin_s=} "
                f"{self.trial_s=} {self.warmup_s=}"
            )
        if not 0 <= self.num_hubs <= self.num_neurons:
            raise ValueError(f"num_hubs must be in 0..num_neurons, got {self.num_hubs}")
        if not 0 <= self.num_motor <= self.num_neurons:
            raise ValueError(f"num_motor must be in 0..num_neurons, got {self.num_motor}")
        if self.max_delay_bins < 1 or self.num_conditions < 1 or self.stimulus_channels < 1:
            raise ValueError("max_delay_bins, num_conditions and stimulus_channels must be >= 1")
        if not 0 <= self.hub_fanout <= 1 or not 0 <= self.random_edge_prob <= 1:
            raise ValueError("hub_fanout and random_edge_prob are fractions in [0, 1]")

    @property
    def num_bins(self) -> int:
        return int(round(self.trial_s / self.bin_s))

    @property
    def warmup_bins(self) -> int:
        return int(round(self.warmup_s / self.bin_s))

    def to_dict(self) -> dict:
        return asdict(self)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _wiring(config: CircuitConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hubs and edges (E, 4) = [source, target, delay_bins, weight], sorted by (source, target)."""
    n = config.num_neurons
    hubs = np.sort(rng.choice(n, config.num_hubs, replace=False))
    is_edge = np.zeros((n, n), dtype=bool)
    weight = np.zeros((n, n))
    others = np.setdiff1d(np.arange(n), hubs)  # hubs never excite each other: no hub loops
    fanout = int(round(config.hub_fanout * len(others)))
    for hub in hubs:
        targets = rng.choice(others, fanout, replace=False)
        is_edge[hub, targets] = True
        jitter = config.hub_weight_jitter * rng.standard_normal(fanout)
        weight[hub, targets] = config.hub_weight + jitter
    extra = (rng.random((n, n)) < config.random_edge_prob) & ~is_edge
    np.fill_diagonal(extra, False)
    magnitude = rng.uniform(*config.random_weight, size=(n, n))
    sign = np.where(rng.random((n, n)) < config.excitatory_fraction, 1.0, -1.0)
    weight = np.where(extra, sign * magnitude, weight)
    is_edge |= extra
    delay = rng.integers(1, config.max_delay_bins + 1, size=(n, n))
    source, target = np.nonzero(is_edge)  # row-major: sorted by (source, target)
    edges = np.stack(
        [source, target, delay[source, target], weight[source, target]], axis=1
    ).astype(np.float64)
    return hubs, edges


def _stimulus(config: CircuitConfig) -> np.ndarray:
    """Stimulus time course of each condition: (C, L, S) float32 in [0, 1]."""
    direction = 2 * np.pi * np.arange(config.num_conditions) / config.num_conditions  # (C,)
    preferred = 2 * np.pi * np.arange(config.stimulus_channels) / config.stimulus_channels  # (S,)
    tuning = np.maximum(np.cos(direction[:, None] - preferred[None, :]), 0.0)  # (C, S)
    t = np.arange(config.num_bins) * config.bin_s  # (L,) bin starts
    phase = 2 * np.pi * config.drift_hz * (t - config.grey_s)  # (L,)
    drift = 0.5 * (1 + np.sin(phase[:, None] + preferred[None, :]))  # (L, S)
    drift[t < config.grey_s] = 0.0
    return (tuning[:, None, :] * drift[None, :, :]).astype(np.float32)  # (C, L, S)


def _run_trials(
    config: CircuitConfig,
    rng: np.random.Generator,
    drive_static: np.ndarray,
    delay_weights: np.ndarray,
    speed_gain: np.ndarray,
    motor: np.ndarray,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Step the GLM bin by bin over ``drive_static`` (T, R, N) = bias + stimulus drive, where T
    counts warm-up and trial bins; returns counts (T, R, N) float64 0/1 and speed (T, R)."""
    steps, r, n = drive_static.shape
    max_delay = config.max_delay_bins
    stacked_weights = delay_weights.reshape(max_delay * n, n)  # (D * N, N)
    recent = np.zeros((r, max_delay * n))  # (R, D * N): counts at t - 1, ..., t - D
    motor_mask = np.zeros(n)
    motor_mask[motor] = 1.0
    counts = np.zeros((steps, r, n))  # (T, R, N)
    speed = np.zeros((steps, r))  # (T, R)
    speed[0] = config.speed_baseline
    for t in tqdm(range(steps), disable=not progress, desc="spikes", unit="bin"):
        logit = drive_static[t] + speed[t, :, None] * (speed_gain / config.speed_scale)  # (R, N)
        logit += recent @ stacked_weights
        fire = rng.random((r, n)) < 1.0 / (1.0 + np.exp(-logit))
        counts[t] = fire & (recent[:, :n] == 0)  # absolute refractory period of one bin
        recent = np.concatenate([counts[t], recent[:, : (max_delay - 1) * n]], axis=1)
        if t + 1 < steps:
            speed[t + 1] = np.maximum(
                0.0,
                config.speed_ar * speed[t]
                + (1 - config.speed_ar) * config.speed_baseline
                + config.motor_drive * (counts[t] @ motor_mask)
                + config.speed_noise * rng.standard_normal(r),
            )
    return counts, speed


def simulate_circuit(
    config: CircuitConfig | None = None, seed: int = 0, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """Simulate ``config.num_trials`` trials; same config and seed -> identical arrays.

    Returns counts (R, L, N) uint8 (0/1), behavior (R, L) float32 (running speed, cm/s),
    stimulus (R, L, S) float32, conditions (R,) int64, edges (E, 4) float64 [source, target,
    delay_bins, weight], hubs (H,) and motor (M,) neuron ids, the per-neuron ground truth
    (bias, stim_weights (S, N), speed_gain), and one spike table sorted by (trial, time, neuron):
    spike_trial, spike_neuron (int32), spike_time (float64 seconds from the trial's start; the
    bin start plus a uniform jitter inside the bin).
    """
    config = config or CircuitConfig()
    wiring_seed, trial_seed, jitter_seed = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(wiring_seed)
    n, r = config.num_neurons, config.num_trials
    hubs, edges = _wiring(config, rng)
    rate_hz = rng.uniform(*config.baseline_hz, size=n)
    rate_hz[hubs] = rng.uniform(*config.hub_baseline_hz, size=len(hubs))
    bias = _logit(rate_hz * config.bin_s)  # (N,)
    stim_weights = config.other_weight_std * rng.standard_normal((config.stimulus_channels, n))
    best = rng.integers(0, config.stimulus_channels, size=n)
    stim_weights[best, np.arange(n)] = rng.uniform(*config.preferred_weight, size=n)  # (S, N)
    speed_gain = config.speed_gain_std * rng.standard_normal(n)  # (N,)
    motor = np.sort(rng.choice(n, config.num_motor, replace=False))
    source, target, delay = (edges[:, i].astype(np.int64) for i in range(3))
    delay_weights = np.zeros((config.max_delay_bins, n, n))  # (D, N, N): [delay-1, source, target]
    delay_weights[delay - 1, source, target] = edges[:, 3]

    rng = np.random.default_rng(trial_seed)
    conditions = rng.integers(0, config.num_conditions, size=r)  # (R,)
    stimulus = _stimulus(config)[conditions]  # (R, L, S)
    warm = config.warmup_bins  # grey-screen bins before the trial: the network and speed settle
    drive_static = np.concatenate(
        [np.broadcast_to(bias, (warm, r, n)), bias + stimulus.transpose(1, 0, 2) @ stim_weights]
    )  # (W + L, R, N), time-major so every bin is one contiguous slice
    limits = threadpool_limits(1, user_api="blas") if threadpool_limits else nullcontext()
    with limits:
        counts, speed = _run_trials(
            config, rng, drive_static, delay_weights, speed_gain, motor, progress
        )
    counts = counts[warm:].transpose(1, 0, 2).astype(np.uint8)  # (R, L, N)
    speed = speed[warm:].T  # (R, L)

    spike_trial, spike_bin, spike_neuron = np.nonzero(counts)  # (K,) each
    jitter = np.random.default_rng(jitter_seed).uniform(
        _EDGE_JITTER, 1 - _EDGE_JITTER, size=len(spike_bin)
    )
    spike_time = (spike_bin + jitter) * config.bin_s  # (K,) seconds
    order = np.lexsort((spike_neuron, spike_time, spike_trial))
    return {
        "counts": counts,
        "behavior": speed.astype(np.float32),
        "stimulus": stimulus,
        "conditions": conditions,
        "edges": edges,
        "hubs": hubs,
        "motor": motor,
        "bias": bias,
        "stim_weights": stim_weights,
        "speed_gain": speed_gain,
        "spike_trial": spike_trial[order].astype(np.int32),
        "spike_neuron": spike_neuron[order].astype(np.int32),
        "spike_time": spike_time[order],
    }
