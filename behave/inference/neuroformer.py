"""Neuroformer from a bundle: decode behavior, generate spikes, read the inferred connectivity.

Everything here is plain torch + numpy (no Lightning): the task calls the same functions for its
end-of-fit report that the service calls per request.

- :func:`sample_window` — autoregressive generation of one current window per row of a batch
  (seeded ``torch.Generator``; temperature, top-k, top-p), until EOS or the window is full.
- :func:`generate_trials` — rolls windows forward through whole trials: each generated window
  becomes part of the next window's previous context.
- :func:`attention_connectivity` — the attention from source to target neurons: the coupling
  readout's scores (one query per target neuron, one key per source neuron; the same in every
  window), or a cross block's attention to the previous window credited to the neuron each
  query predicts, averaged over windows.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from behave.data.spike_tokens import TokenSpec, events_to_counts, tokens_to_events, window_tokens
from behave.inference.behavegpt import InputError
from behave.models.neuroformer import Neuroformer, NeuroformerConfig

__all__ = [
    "FAMILY",
    "NeuroformerRunner",
    "save_bundle",
    "load_neuroformer",
    "sample_window",
    "generate_trials",
    "attention_connectivity",
    "attention_connectivities",
    "InputError",
]

FAMILY = "neuroformer"


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Keep the top-k and the smallest set with cumulative probability >= top_p: (B, V)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keeps at least the top token
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def sample_window(
    model: Neuroformer,
    spec: TokenSpec,
    previous_ids: torch.Tensor,  # (B, Lp)
    previous_offsets: torch.Tensor,  # (B, Lp)
    stimulus: torch.Tensor | None = None,  # (B, Ls, S)
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Current-window tokens (B, max_current) sampled after SOS; pad after each row's EOS.

    Offsets never go back in time (a sampled offset below the previous token's is raised to it)
    and invalid choices (pad, SOS) are excluded, so every row decodes to valid events."""
    B, device = previous_ids.shape[0], previous_ids.device
    ids = torch.full((B, spec.max_current), spec.pad_id, dtype=torch.long, device=device)
    offsets = torch.full_like(ids, spec.current_offsets - 1)
    ids[:, 0], offsets[:, 0] = spec.sos_id, 0
    done = torch.zeros(B, dtype=torch.bool, device=device)
    banned = torch.tensor([spec.pad_id, spec.sos_id], device=device)
    contexts, _, _ = model.encode_context(previous_ids, previous_offsets, stimulus)
    for p in range(spec.max_current - 1):
        # causal: tokens after p do not change position p's output, so feed only 0..p
        hidden, _, _ = model.decode_tokens(ids[:, : p + 1], offsets[:, : p + 1], contexts)
        state = hidden[:, p]  # (B, D)
        id_logits = model.id_head(state).float()  # (B, V)
        id_logits[:, banned] = float("-inf")
        if p == spec.max_current - 2:  # the last slot can only close the window
            id_logits[:, : spec.num_neurons] = float("-inf")
        off_logits = model.offset_head(state)[:, : spec.current_bins].float()  # (B, bins)
        last = (
            offsets[:, p].clamp(max=spec.current_bins - 1)
            if p
            else torch.zeros_like(done, dtype=torch.long)
        )
        too_early = torch.arange(spec.current_bins, device=device)[None] < last[:, None]
        off_logits = off_logits.masked_fill(too_early, float("-inf"))
        if greedy:
            next_id, next_off = id_logits.argmax(-1), off_logits.argmax(-1)
        else:
            t = max(temperature, 1e-5)
            id_probs = _filter_logits(id_logits / t, top_k, top_p).softmax(-1)
            off_probs = _filter_logits(off_logits / t, top_k, top_p).softmax(-1)
            next_id = torch.multinomial(id_probs, 1, generator=generator).squeeze(-1)
            next_off = torch.multinomial(off_probs, 1, generator=generator).squeeze(-1)
        eos = next_id == spec.eos_id
        next_off = torch.where(eos, torch.full_like(next_off, spec.eos_offset), next_off)
        write = ~done
        ids[write, p + 1] = next_id[write]
        offsets[write, p + 1] = next_off[write]
        done = done | eos
        if done.all():
            break
    return ids, offsets


@torch.no_grad()
def generate_trials(
    model: Neuroformer,
    spec: TokenSpec,
    context_counts: np.ndarray,  # (trials, previous_bins, N) true activity before generation
    bins: int,  # bins to generate after the context
    stimulus: np.ndarray | None = None,  # (trials, previous_bins + bins, S)
    *,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Generated counts (trials, bins, N), window by window after the given context."""
    T, P = context_counts.shape[0], spec.previous_bins
    C = spec.current_bins
    counts = np.zeros((T, P + bins, spec.num_neurons), np.uint8)
    counts[:, :P] = context_counts
    generator = torch.Generator(device=device).manual_seed(seed)
    for start in range(P, P + bins, C):
        toks = [window_tokens(counts[t], start, spec) for t in range(T)]
        prev_ids = torch.as_tensor(np.stack([k["previous_ids"] for k in toks]), device=device)
        prev_off = torch.as_tensor(np.stack([k["previous_offsets"] for k in toks]), device=device)
        stim = None
        if stimulus is not None:
            stim = torch.as_tensor(
                stimulus[:, start - P : start + C], dtype=torch.float32, device=device
            )
            if stim.shape[1] < P + C:  # the end of the trial: repeat the last frame
                pad = stim[:, -1:].expand(-1, P + C - stim.shape[1], -1)
                stim = torch.cat([stim, pad], 1)
        ids, offs = sample_window(
            model,
            spec,
            prev_ids,
            prev_off,
            stim,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        ids, offs = ids.cpu().numpy(), offs.cpu().numpy()
        width = min(C, P + bins - start)
        for t in range(T):
            neurons, times = tokens_to_events(ids[t], offs[t], spec, start_bin=0, bin_s=1.0)
            window = events_to_counts(
                neurons, times, num_neurons=spec.num_neurons, bins=C, bin_s=1.0
            )
            counts[t, start : start + width] = window[:width]
    return counts[:, P:]


def attention_connectivity(
    model: Neuroformer,
    loader,
    spec: TokenSpec,
    *,
    layer: str = "readout",
    max_lag_bins: int | None = None,
    device="cpu",
) -> np.ndarray:
    """Attention A[source, target] (N, N) from source to target neurons.

    - ``readout`` (default): the coupling readout's |score| x kernel norm summed over heads
      (:meth:`CouplingReadout.coupling`); its query is the target neuron and its key the
      source neuron, so it is the same in every window and ``loader`` is not read for it;
    - ``cross.<i>.previous``: a cross block's softmax attention averaged over the windows of
      ``loader`` (pairs never seen together are 0; heads averaged), credited to the neuron of
      the token each query predicts (the next token), multiplied by the number of keys the
      query could see (1 = uniform attention). ``max_lag_bins``: only previous-window spikes
      at most that many bins before the current window count."""
    return attention_connectivities(
        model, loader, spec, [layer], max_lag_bins=max_lag_bins, device=device
    )[layer]


@torch.no_grad()
def attention_connectivities(
    model: Neuroformer,
    loader,
    spec: TokenSpec,
    layers: list[str],
    *,
    max_lag_bins: int | None = None,
    device="cpu",
) -> dict[str, np.ndarray]:
    """:func:`attention_connectivity` of several attention maps in one pass over ``loader``."""
    N, P = spec.num_neurons, spec.previous_bins
    maps = {}
    if "readout" in layers:
        maps["readout"] = model.readout.coupling().detach().float().cpu().numpy()
    averaged = [layer for layer in layers if layer != "readout"]
    if not averaged:
        return maps
    was_training = model.training
    model.eval()
    total = {layer: torch.zeros(N * N, dtype=torch.float64) for layer in averaged}
    seen = {layer: torch.zeros(N * N, dtype=torch.float64) for layer in averaged}
    try:
        for batch in loader:
            cur, prev = batch["current_ids"].to(device), batch["previous_ids"].to(device)
            out = model(
                cur,
                batch["current_offsets"].to(device),
                prev,
                batch["previous_offsets"].to(device),
                batch["stimulus"].to(device) if "stimulus" in batch else None,
                need_weights=True,
            )
            key_ok = prev < N  # (B, Lp)
            if max_lag_bins is not None:
                key_ok &= batch["previous_offsets"].to(device) >= P - max_lag_bins
            keys = (prev < N).sum(-1, keepdim=True) + 1  # what a query could see, null too
            for layer in averaged:
                w = out.attention[layer].mean(1)[:, :-1, 1:]  # (B, Lc - 1, Lp)
                lift = w * keys[:, :, None]  # softmax: uniform -> 1
                target = cur[:, 1:]  # the spike each query predicts
                pair_ok = (target < N)[:, :, None] & key_ok[:, None, :]
                index = (prev[:, None, :] * N + target[:, :, None])[pair_ok].cpu()
                total[layer].index_add_(0, index, lift[pair_ok].double().cpu())
                seen[layer].index_add_(0, index, torch.ones(len(index), dtype=torch.float64))
    finally:
        model.train(was_training)
    for layer in averaged:
        maps[layer] = (total[layer] / seen[layer].clamp_min(1)).view(N, N).float().numpy()
    return maps


# ---- bundles -------------------------------------------------------------------------------
def save_bundle(
    model: Neuroformer,
    out_dir: Path,
    spec: TokenSpec,
    connectivity: np.ndarray | None = None,
    extra: dict | None = None,
) -> Path:
    """``weights.safetensors`` (+ the inferred connectivity) and ``config.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if connectivity is not None:
        state["_connectivity"] = torch.as_tensor(connectivity, dtype=torch.float32).contiguous()
    save_file(state, str(out_dir / "weights.safetensors"))
    meta = {
        "family": FAMILY,
        "model": asdict(model.config),
        "tokens": spec.to_dict(),
        **(extra or {}),
    }
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def load_neuroformer(bundle_dir: Path, device: str | torch.device = "cpu") -> NeuroformerRunner:
    bundle_dir = Path(bundle_dir)
    meta = json.loads((bundle_dir / "config.json").read_text())
    state = load_file(str(bundle_dir / "weights.safetensors"))  # no pickle
    connectivity = state.pop("_connectivity", None)
    model = Neuroformer(NeuroformerConfig(**meta["model"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # e.g. a bundle saved before the coupling readout replaced the old sigmoid readout
    if missing or unexpected:
        raise ValueError(
            f"{bundle_dir}: its weights do not fit this version's Neuroformer "
            f"({len(missing)} missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. "
            f"{unexpected[:1]}); retrain it: behave fit --config pipelines/neuroformer.yaml"
        )
    return NeuroformerRunner(
        model,
        TokenSpec(**meta["tokens"]),
        meta,
        connectivity=None if connectivity is None else connectivity.numpy(),
        device=device,
    )


class NeuroformerRunner:
    """A loaded Neuroformer: the service's decode / generate / connectivity calls."""

    def __init__(
        self,
        model: Neuroformer,
        spec: TokenSpec,
        meta: dict,
        connectivity: np.ndarray | None = None,
        device: str | torch.device = "cpu",
    ):
        self.model = model.to(device).eval()
        self.spec = spec
        self.meta = meta
        self.connectivity = connectivity
        self.device = torch.device(device)
        self.bin_s = float(meta.get("bin_s", 0.01))
        self.stimulus_channels = int(model.config.stimulus_channels)
        stats = meta.get("behavior_stats") or {"mean": 0.0, "std": 1.0}
        self.behavior_mean, self.behavior_std = float(stats["mean"]), float(stats["std"])

    @property
    def num_neurons(self) -> int:
        return self.spec.num_neurons

    @property
    def window_s(self) -> float:
        return (self.spec.previous_bins + self.spec.current_bins) * self.bin_s

    # ---- request checks ----------------------------------------------------------------------
    def validate_events(self, neurons, times, field: str = "spikes") -> None:
        """Raise :class:`InputError` naming the first bad event (what the service checks too)."""
        if len(neurons) == 0:
            raise InputError(field, "no spikes: send at least one {neuron, time} event")
        prev = -np.inf
        for i, (n, t) in enumerate(zip(neurons, times, strict=True)):
            if not np.isfinite(t) or t < 0:
                raise InputError(f"{field}[{i}].time", f"must be a finite time >= 0 s, got {t}")
            if int(n) != n or not 0 <= n < self.num_neurons:
                raise InputError(
                    f"{field}[{i}].neuron",
                    f"unknown neuron id {n}; this model knows ids 0..{self.num_neurons - 1}",
                )
            if t < prev:
                raise InputError(
                    f"{field}[{i}].time",
                    f"spikes must be sorted by time ({t} s comes after {prev} s); sort them",
                )
            prev = t

    def _stimulus_frames(self, stimulus, bins: int, field: str = "stimulus") -> np.ndarray | None:
        if self.stimulus_channels == 0 or stimulus is None:
            return None
        stim = np.asarray(stimulus, dtype=np.float32)
        if stim.ndim != 2 or stim.shape[1] != self.stimulus_channels:
            raise InputError(
                field,
                f"expected one row of {self.stimulus_channels} channels per {self.bin_s * 1000:g} "
                f"ms bin, got shape {list(stim.shape)}",
            )
        if not np.isfinite(stim).all():
            raise InputError(field, "stimulus values must be finite numbers")
        if len(stim) < bins:  # hold the last frame to the end
            stim = np.concatenate([stim, np.repeat(stim[-1:], bins - len(stim), 0)])
        return stim[:bins]

    def predict_frame(self, frame) -> pd.DataFrame:  # noqa: F821
        """MLflow pyfunc: a (neuron, time) DataFrame of one recording -> decoded windows."""
        import pandas as pd

        missing = {"neuron", "time"} - set(frame.columns)
        if missing:
            raise InputError("model_input", f"missing columns {sorted(missing)}: need neuron, time")
        frame = frame.sort_values("time", kind="stable")
        decoded = self.decode(frame["neuron"].to_numpy(), frame["time"].to_numpy())
        return pd.DataFrame(decoded["windows"])

    # ---- routes ------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, neurons, times, stimulus=None) -> dict:
        """Behavior of each current window tiling the recording after the first previous
        window: a list of {start_s, end_s, behavior} in the data's units."""
        neurons, times = np.asarray(neurons, np.int64), np.asarray(times, np.float64)
        self.validate_events(neurons, times)
        spec, P, C = self.spec, self.spec.previous_bins, self.spec.current_bins
        bins = max(int(np.floor(times.max() / self.bin_s)) + 1, P + C)
        bins = P + int(np.ceil((bins - P) / C)) * C
        counts = events_to_counts(
            neurons, times, num_neurons=spec.num_neurons, bins=bins, bin_s=self.bin_s
        )
        stim = self._stimulus_frames(stimulus, bins)
        starts = list(range(P, bins - C + 1, C))
        toks = [window_tokens(counts, s, spec) for s in starts]
        batch = {
            k: torch.as_tensor(np.stack([t[k] for t in toks]), device=self.device)
            for k in ("current_ids", "current_offsets", "previous_ids", "previous_offsets")
        }
        stim_t = None
        if stim is not None:
            stim_t = torch.as_tensor(
                np.stack([stim[s - P : s + C] for s in starts]), device=self.device
            )
        out = self.model(
            batch["current_ids"],
            batch["current_offsets"],
            batch["previous_ids"],
            batch["previous_offsets"],
            stim_t,
            with_readout=False,  # decoding reads only the behavior head
        )
        values = out.behavior.float().cpu().numpy() * self.behavior_std + self.behavior_mean
        return {
            "behavior": self.meta.get("behavior"),
            "windows": [
                {
                    "start_s": round(s * self.bin_s, 6),
                    "end_s": round((s + C) * self.bin_s, 6),
                    "value": float(v),
                }
                for s, v in zip(starts, values, strict=True)
            ],
        }

    def generate(
        self,
        neurons,
        times,
        *,
        duration_s: float,
        stimulus=None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> dict:
        """Spike events generated for ``duration_s`` after the context (the last
        ``previous_bins`` bins of the given events); times continue the context's clock."""
        neurons, times = np.asarray(neurons, np.int64), np.asarray(times, np.float64)
        self.validate_events(neurons, times)
        spec, P = self.spec, self.spec.previous_bins
        end_bin = int(np.floor(times.max() / self.bin_s)) + 1
        first = end_bin - P  # may be negative: silence before the recording
        counts = events_to_counts(
            neurons,
            times - first * self.bin_s,
            num_neurons=spec.num_neurons,
            bins=P,
            bin_s=self.bin_s,
        )
        bins = max(1, int(round(duration_s / self.bin_s)))
        stim = self._stimulus_frames(stimulus, P + bins)
        generated = generate_trials(
            self.model,
            spec,
            counts[None],
            bins,
            None if stim is None else stim[None],
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            device=self.device,
        )[0]
        b, n = np.nonzero(generated)
        reps = generated[b, n]
        b, n = np.repeat(b, reps), np.repeat(n, reps)
        order = np.lexsort((n, b))
        return {
            "spikes": [
                {"neuron": int(n[i]), "time": round((end_bin + b[i]) * self.bin_s, 6)}
                for i in order
            ],
            "start_s": round(end_bin * self.bin_s, 6),
            "end_s": round((end_bin + bins) * self.bin_s, 6),
        }
