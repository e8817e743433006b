"""Explains held-out test series through the service and shows them beside the ground truth.

    python scripts/explain_client.py --url http://127.0.0.1:3000 --data-dir data/timeseries/freqshapes

For each of a few test series of the data folder (one per class that has a ground truth), it asks
``POST /explain`` for TimeX's explanation (when a TimeX explainer is served for the model) and for
Integrated Gradients', prints where each puts its top cells beside where the signal was planted,
the time each took, and writes the heatmaps as PNGs. Then it asks for a BehaveGPT explanation of
a short history, if BehaveGPT is served.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from behave.client import BehaveClient  # noqa: E402


def _top_cells(attributions: np.ndarray, k: int) -> set[tuple[int, int]]:
    flat = np.argsort(-attributions, axis=None)[:k]
    return {(int(i) // attributions.shape[1], int(i) % attributions.shape[1]) for i in flat}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--data-dir", default="data/timeseries/freqshapes")
    p.add_argument("--png-dir", default="explanations", help="where the heatmaps go")
    args = p.parse_args()
    from behave.data.timeseries import load_timeseries

    data = load_timeseries(Path(args.data_dir))
    x, y, truth = data.splits["test"]
    client = BehaveClient(args.url, timeout=120)
    models = client.explain_models()
    if data.name not in models:
        sys.exit(f"the service explains {sorted(models)}, not {data.name}")
    methods = [m for m in ("timex", "integrated_gradients") if m in models[data.name].methods]
    Path(args.png_dir).mkdir(parents=True, exist_ok=True)
    shown = [
        int(np.argmax(y == c)) for c in np.unique(y) if truth is not None and truth[y == c].any()
    ]
    for i in shown[:3]:
        planted = {tuple(c) for c in np.argwhere(truth[i])} if truth is not None else set()
        print(f"\ntest series {i}: true class {data.class_names[y[i]]}, signal planted in "
              f"{len(planted)} of {x.shape[1] * x.shape[2]} cells")  # fmt: skip
        for method in methods:
            answer = client.explain_series(x[i : i + 1], method, model=data.name, plot=True)
            (e,) = answer.explanations
            values = np.asarray(e.attributions)
            top = _top_cells(values, max(len(planted), 1))
            hit = len(top & planted) / max(len(planted), 1)
            extra = ""
            if method == "timex":
                kept = np.asarray(e.mask)
                extra = (f", mask keeps {int(kept.sum())} cells ({int(kept[truth[i] > 0].sum())} "
                         f"planted), nearest landmark {e.landmark}")  # fmt: skip
            png = Path(args.png_dir) / f"{data.name}-{i}-{method}.png"
            png.write_bytes(base64.b64decode(e.png_base64))
            print(f"  {method:<21} predicts {e.prediction} (p={e.probability:.2f}); "
                  f"{hit:.0%} of its top cells are planted ones; {1000 * answer.seconds:.1f} ms"
                  f"{extra}; heatmap {png}")  # fmt: skip
    if "behavegpt" in models:
        history = client.behaviors().behaviors[:5]
        answer = client.explain_history(history, "integrated_gradients")
        (e,) = answer.explanations
        values = np.asarray(e.attributions)
        print(f"\nBehaveGPT after {len(history)} events predicts {e.prediction} "
              f"(p={e.probability:.3f}); attribution per event (summed over "
              f"{', '.join(answer.features)}):")  # fmt: skip
        for behavior, row in zip(history, values, strict=True):
            print(f"  {behavior:<28} {row.sum():+.4f}")
    client.close()


if __name__ == "__main__":
    main()
