"""Ask the served Neuroformer about a held-out trial of a spikes data folder, and compare its
answers with the truth the simulator recorded.

    python scripts/neural_client.py --url http://127.0.0.1:3000 --data-dir data/spikes

Takes the first test trial of the folder (the trials the training pipeline set aside, default
split settings) and prints:

- ``POST /neural/decode``: its spikes (and stimulus) in, the decoded running speed of each 50 ms
  window out, beside the recorded speed (correlation and a few windows);
- ``POST /neural/generate``: 0.5 s generated after the trial's first second, its rate beside the
  recorded rate of the same 0.5 s;
- ``GET /neural/connectivity``: the strongest inferred source -> target pairs, each marked with
  whether the simulator's circuit really has that edge.
"""

from __future__ import annotations

import argparse

import numpy as np

from behave.client import BehaveClient
from behave.data.spikes_datamodule import SpikesDataModule


def events(counts: np.ndarray, bin_s: float) -> list[dict]:
    """(bins, N) counts -> time-sorted spike events (mid-bin times)."""
    b, n = np.nonzero(counts)
    return [
        {"neuron": int(n[i]), "time": round(float((b[i] + 0.5) * bin_s), 4)}
        for i in np.lexsort((n, b))
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--data-dir", default="data/spikes")
    args = p.parse_args()
    client = BehaveClient(args.url, timeout=120)
    dm = SpikesDataModule(args.data_dir)
    binned, trial = dm.binned, int(dm.split["test"][0])
    counts, bin_s = binned.counts[trial], binned.bin_s
    stimulus = None if binned.stimulus is None else binned.stimulus[trial].round(4).tolist()

    spikes = events(counts, bin_s)
    decoded = client.neural_decode(spikes, stimulus=stimulus)
    windows = decoded.windows
    starts = [int(round(w.start_s / bin_s)) for w in windows]
    true = np.array([binned.behavior[trial, s : s + 5].mean() for s in starts])
    pred = np.array([w.value for w in windows])
    print(
        f"trial {trial}: {len(spikes)} spikes in, {len(windows)} windows of "
        f"{decoded.behavior} decoded (model version {decoded.model_version}); "
        f"correlation with the recorded speed {np.corrcoef(true, pred)[0, 1]:.2f}"
    )
    for w, t in list(zip(windows, true, strict=True))[:: max(1, len(windows) // 6)]:
        print(f"  {w.start_s:5.2f}-{w.end_s:.2f} s  decoded {w.value:6.2f}  recorded {t:6.2f}")

    context_bins = int(round(1.0 / bin_s))
    generated = client.neural_generate(
        events(counts[:context_bins], bin_s),
        stimulus=None if stimulus is None else stimulus[: context_bins + 50],
        duration_s=0.5,
        seed=0,
    )
    n = binned.counts.shape[2]
    rate = len(generated.spikes) / (0.5 * n)
    real = counts[context_bins : context_bins + 50].sum() / (0.5 * n)
    print(
        f"generated {len(generated.spikes)} spikes in {generated.start_s:.2f}-"
        f"{generated.end_s:.2f} s: {rate:.1f} Hz per neuron (recorded: {real:.1f} Hz)"
    )

    conn = client.neural_connectivity(top=10)
    adjacency = binned.adjacency
    print("strongest inferred edges (source -> target, coupling strength):")
    for e in conn.top_edges:
        mark = (
            "" if adjacency is None else (" true edge" if adjacency[e.source, e.target] else " -")
        )
        print(f"  {e.source:3d} -> {e.target:3d}  {e.weight:.2f}{mark}")
    client.close()


if __name__ == "__main__":
    main()
