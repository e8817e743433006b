"""Serving a behavior probe: "how likely is this history's next event to be in family F?"

A probe bundle is self-contained: ``probe.safetensors`` + ``probe.json`` (the linear probe),
``config.json`` (family ``probe``) and ``model/`` — the bundle of the exact BehaveGPT version
whose hidden states the probe reads. A probe direction means nothing in another model's hidden
space, so it travels with those weights rather than following whatever is @champion.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from behave.explain.probes import LinearProbe
from behave.inference.behavegpt import BehaveGPTPredictor, HistoryEvent

__all__ = ["FAMILY", "ProbePredictor", "save_probe_bundle", "example_io"]

FAMILY = "probe"
THRESHOLD = 0.5  # the probe is fitted class-balanced: 0.5 balances the two error rates


def save_probe_bundle(probe: LinearProbe, model_bundle: Path, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    probe.save(out_dir)
    shutil.copytree(model_bundle, out_dir / "model", dirs_exist_ok=True)
    model_family = json.loads((Path(model_bundle) / "config.json").read_text())["family"]
    meta = {
        "family": FAMILY,
        "model_family": model_family,
        "layer": probe.layer,
        "behavior_family": probe.info.get("behavior_family"),
        "label": probe.info.get("label"),
    }
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
    return out_dir


class ProbePredictor:
    def __init__(self, model: BehaveGPTPredictor, probe: LinearProbe) -> None:
        if probe.layer > model.model.config.num_layers:
            raise ValueError(
                f"probe reads layer {probe.layer}; the model has {model.model.config.num_layers}"
            )
        self.model, self.probe = model, probe
        self.behavior_family = probe.info.get("behavior_family", "")
        self.label = probe.info.get("label", "")

    @classmethod
    def from_dir(cls, bundle_dir: Path, device: str | torch.device = "cpu") -> ProbePredictor:
        bundle_dir = Path(bundle_dir)
        return cls(
            BehaveGPTPredictor.from_dir(bundle_dir / "model", device),
            LinearProbe.load(bundle_dir),
        )

    @torch.inference_mode()
    def score(self, histories: list[list[HistoryEvent]]) -> list[dict]:
        """Probe probability and flag for the event after each history (one batched forward)."""
        encoded = [self.model.encode(h, field=f"histories[{i}]") for i, h in enumerate(histories)]
        lengths = [n for _, n, _ in encoded]
        batch = self.model.stack([b for b, _, _ in encoded], lengths)
        hidden = self.model.model(batch, output_hidden_states=True).hidden_states[self.probe.layer]
        last = torch.tensor(lengths, device=hidden.device) - 1
        features = hidden[torch.arange(len(lengths), device=hidden.device), last]  # (B, D)
        probs = self.probe.predict_proba(features).cpu().tolist()
        return [
            {"score": p, "flagged": p >= THRESHOLD, "events_used": n, "events_dropped": d}
            for p, (_, n, d) in zip(probs, encoded, strict=True)
        ]

    def predict_frame(self, frame, **_):
        """MLflow pyfunc: a ``history`` column of behavior-name lists -> probe scores."""
        import pandas as pd

        histories = [[HistoryEvent(behavior=b) for b in h] for h in frame["history"]]
        scores = self.score(histories)
        return pd.DataFrame(
            {"score": [s["score"] for s in scores], "flagged": [s["flagged"] for s in scores]}
        )


def example_io(bundle_dir: Path):
    """Input/output examples for the MLflow signature."""
    import pandas as pd

    predictor = ProbePredictor.from_dir(bundle_dir)
    names = predictor.model.vocab.behaviors[2:8]
    frame = pd.DataFrame({"history": [names[:3], names[3:]]})
    return frame, predictor.predict_frame(frame)
