"""Time-series classifiers and their TimeX explainers, loaded from bundles (no training imports).

Bundles (safetensors + JSON, never a pickle):

- ``tsclassifier``: ``weights.safetensors`` of :class:`~behave.models.tsclassifier.TSClassifier`,
  ``config.json`` with ``family``, ``model`` (the config), ``dataset``, ``class_names``,
  ``seq_len``, ``channels``.
- ``timex``: ``weights.safetensors`` of :class:`~behave.explain.timex.TimeX` (its frozen copy of
  the black box included, so the explainer is self-contained), ``config.json`` with ``family``,
  ``model``, ``dataset``, ``class_names``, ``explains`` (the registered classifier and version it
  was trained against) and ``landmarks`` (per landmark: how many test explanations are nearest
  to it, their classes, their kept share).

:class:`ClassifierRunner` predicts and explains with Captum; :class:`TimeXRunner` explains with
one forward pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from behave.explain.timex import TimeX, TimeXConfig
from behave.models.tsclassifier import TSClassifier, TSClassifierConfig

__all__ = [
    "CLASSIFIER_FAMILY",
    "TIMEX_FAMILY",
    "InputError",
    "save_classifier_bundle",
    "save_timex_bundle",
    "load_classifier",
    "load_timex",
    "predict_classes",
    "ClassifierRunner",
    "TimeXRunner",
]

CLASSIFIER_FAMILY = "tsclassifier"
TIMEX_FAMILY = "timex"


class InputError(ValueError):
    """A request the model cannot read; ``field`` names where (e.g. ``inputs[0][3]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@torch.no_grad()
def predict_classes(model: torch.nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class ids (N,) a (B, T, D) -> logits model gives (N, T, D) series, in batches."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).argmax(-1)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, np.int64)


def _save(module: torch.nn.Module, out_dir: Path, meta: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(out_dir / "weights.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def save_classifier_bundle(model: TSClassifier, out_dir: Path, extra: dict) -> Path:
    meta = {"family": CLASSIFIER_FAMILY, "model": asdict(model.config), **extra}
    return _save(model, out_dir, meta)


def save_timex_bundle(model: TimeX, out_dir: Path, extra: dict) -> Path:
    meta = {"family": TIMEX_FAMILY, "model": asdict(model.config), **extra}
    return _save(model, out_dir, meta)


def _read(bundle_dir: Path, family: str) -> tuple[dict, dict[str, torch.Tensor]]:
    bundle_dir = Path(bundle_dir)
    meta = json.loads((bundle_dir / "config.json").read_text())
    if meta.get("family") != family:
        raise ValueError(f"{bundle_dir} holds a {meta.get('family')!r} model, not {family!r}")
    return meta, load_file(str(bundle_dir / "weights.safetensors"))  # no pickle


def load_classifier(bundle_dir: Path, device: str | torch.device = "cpu") -> ClassifierRunner:
    meta, state = _read(bundle_dir, CLASSIFIER_FAMILY)
    model = TSClassifier(TSClassifierConfig(**meta["model"]))
    model.load_state_dict(state)
    return ClassifierRunner(model, meta, device)


def load_timex(bundle_dir: Path, device: str | torch.device = "cpu") -> TimeXRunner:
    meta, state = _read(bundle_dir, TIMEX_FAMILY)
    model = TimeX(TimeXConfig(**meta["model"]))
    model.load_state_dict(state)
    return TimeXRunner(model, meta, device)


class _Runner:
    def __init__(self, meta: dict, config: TSClassifierConfig, device) -> None:
        self.meta = meta
        self.seq_len, self.channels = config.seq_len, config.channels
        self.class_names: list[str] = list(meta.get("class_names") or range(config.num_classes))
        self.device = torch.device(device)

    def as_tensor(self, inputs) -> torch.Tensor:
        """(B, T, D) float tensor from nested lists / arrays; InputError names the bad field."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim == 2 and self.channels == 1 and x.shape[-1] != 1:
            x = x[..., None]  # univariate series given as (B, T)
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.channels):
            raise InputError(
                "inputs",
                f"expected series of {self.seq_len} time steps x {self.channels} channels, "
                f"got shape {tuple(x.shape[1:]) if x.ndim > 1 else tuple(x.shape)}",
            )
        bad = ~np.isfinite(x)
        if bad.any():
            b, t, _ = np.argwhere(bad)[0]
            raise InputError(f"inputs[{b}][{t}]", "values must be finite numbers (no NaN/inf)")
        return torch.from_numpy(x).to(self.device)


class ClassifierRunner(_Runner):
    def __init__(self, model: TSClassifier, meta: dict, device="cpu") -> None:
        super().__init__(meta, model.config, device)
        self.model = model.to(self.device).eval()
        self.num_classes = model.config.num_classes

    @torch.no_grad()
    def predict_proba(self, inputs) -> np.ndarray:
        x = inputs if isinstance(inputs, torch.Tensor) else self.as_tensor(inputs)
        return torch.softmax(self.model(x.to(self.device)), dim=-1).cpu().numpy()

    def predict_frame(self, model_input, **params):
        """MLflow pyfunc: (B, T, D) array -> DataFrame of class probabilities and the label."""
        import pandas as pd

        probs = self.predict_proba(np.asarray(model_input, dtype=np.float32))
        frame = pd.DataFrame(probs, columns=[f"p_{c}" for c in self.class_names])
        frame["label"] = [self.class_names[i] for i in probs.argmax(-1)]
        return frame

    def explain(self, inputs, method: str, target=None, **options) -> dict:
        """Captum attributions (B, T, D) of the predicted (or given) class."""
        from behave.explain.attributions import attribute

        x = self.as_tensor(inputs)
        probs = self.predict_proba(x)
        target = self._targets(target, probs)
        start = time.perf_counter()
        options.setdefault(
            "internal_batch_size", 640
        )  # IG-50 on 64 series: 5 passes, not 1 huge one
        values = attribute(
            self.model, x, torch.as_tensor(target, device=self.device), method, **options
        )
        return {
            "attributions": values.detach().cpu().numpy(),
            "probabilities": probs,
            "target": target,
            "seconds": time.perf_counter() - start,
        }

    def _targets(self, target, probs: np.ndarray) -> np.ndarray:
        if target is None:
            return probs.argmax(-1)
        target = np.broadcast_to(np.asarray(target, dtype=np.int64), (len(probs),)).copy()
        if ((target < 0) | (target >= self.num_classes)).any():
            raise InputError("target", f"class index must be in 0..{self.num_classes - 1}")
        return target


class TimeXRunner(_Runner):
    def __init__(self, model: TimeX, meta: dict, device="cpu") -> None:
        super().__init__(meta, model.config.blackbox, device)
        self.model = model.to(self.device).eval()
        self.landmarks: list[dict] = meta.get("landmarks", [])

    @torch.no_grad()
    def explain(self, inputs) -> dict:
        """One forward pass: saliency (mask probability), the binary mask, both predictions and
        the nearest landmark of each explanation."""
        x = inputs if isinstance(inputs, torch.Tensor) else self.as_tensor(inputs)
        start = time.perf_counter()
        out = self.model(x.to(self.device), sample_mask=False)
        seconds = time.perf_counter() - start
        return {
            "attributions": out.saliency.cpu().numpy(),
            "mask": out.mask.cpu().numpy().astype(np.uint8),
            "probabilities": torch.softmax(out.blackbox_logits, -1).cpu().numpy(),
            "explanation_probabilities": torch.softmax(out.logits, -1).cpu().numpy(),
            "landmark": out.landmark.cpu().numpy(),
            "landmark_similarity": out.landmark_similarity.cpu().numpy(),
            "embedding": out.embedding.cpu().numpy(),
            "seconds": seconds,
        }

    def predict_frame(self, model_input, **params):
        """MLflow pyfunc: (B, T, D) array -> the explained label, mask share and landmark."""
        import pandas as pd

        result = self.explain(np.asarray(model_input, dtype=np.float32))
        return pd.DataFrame(
            {
                "label": [self.class_names[i] for i in result["probabilities"].argmax(-1)],
                "kept_share": result["mask"].reshape(len(result["mask"]), -1).mean(-1),
                "landmark": result["landmark"],
            }
        )
