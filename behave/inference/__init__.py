"""Load trained models from their bundles for prediction (no training imports)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_predictor"]


def load_predictor(bundle_dir: Path, device: str = "cpu"):
    """The predictor for the family named in the bundle's ``config.json``."""
    family = json.loads((Path(bundle_dir) / "config.json").read_text()).get("family")
    if family == "behavegpt":
        from behave.inference.behavegpt import BehaveGPTPredictor

        return BehaveGPTPredictor.from_dir(bundle_dir, device)
    if family == "decision_mamba":
        from behave.inference.offline_rl import load_policy

        return load_policy(bundle_dir, device)
    if family == "graph_lstm":
        from behave.inference.graph_lstm import load_forecaster

        return load_forecaster(bundle_dir, device)
    if family == "neuroformer":
        from behave.inference.neuroformer import load_neuroformer

        return load_neuroformer(bundle_dir, device)
    if family == "tsclassifier":
        from behave.inference.timeseries import load_classifier

        return load_classifier(bundle_dir, device)
    if family == "timex":
        from behave.inference.timeseries import load_timex

        return load_timex(bundle_dir, device)
    if family == "probe":
        from behave.inference.probe import ProbePredictor

        return ProbePredictor.from_dir(bundle_dir, device)
    raise ValueError(f"{bundle_dir}: unknown model family {family!r} in config.json")
