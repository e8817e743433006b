"""Linear behavior probes on a model's hidden states.

Paper: Wang et al. 2024, "Model Surgery: Modulating LLM's Behavior Via Simple Parameter
Editing" (arXiv 2407.08770). Official code: github.com/lucywang720/model-surgery.

A probe is a logistic regression ``p(behavior | h) = sigmoid(w·h + b)`` on the hidden state
``h`` of one layer; its weight ``w`` is the *behavior direction* that ``behave.explain.surgery``
edits along. Where we differ from the paper, and why:
- The paper trains one two-class head on the last layer's mean-pooled states. We fit one probe
  per layer and report held-out accuracy / AUROC for each, so the user sees where the behavior
  becomes linearly readable before choosing the layer whose direction drives the edit.
- The fit is an L2-regularized, class-balanced logistic regression (full-batch L-BFGS) on
  standardized features, folded back to raw hidden-state space: behaviors worth removing are
  rare (a few % of positions), and without balancing the probe learns "always no".

Axis glossary: N samples, B batch, L sequence length, D hidden size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "POOLINGS",
    "LinearProbe",
    "pool_hidden_states",
    "fit_probe",
    "probe_layers",
    "binary_auroc",
    "mean_difference_direction",
]

POOLINGS = ("mean", "last")
PROBE_WEIGHTS = "probe.safetensors"
PROBE_META = "probe.json"


@dataclass
class LinearProbe:
    """``sigmoid(weight · h + bias)`` on the hidden states of ``layer`` (0 = embeddings)."""

    weight: torch.Tensor  # (D,) in raw hidden-state space
    bias: float
    layer: int
    pooling: str = "last"
    metrics: dict[str, float] = field(default_factory=dict)  # held-out accuracy, AUROC, ...
    info: dict = field(default_factory=dict)  # what the probe reads: model, label, data

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,)"""
        if features.shape[-1] != self.weight.numel():
            raise ValueError(
                f"hidden size {features.shape[-1]} does not match the probe's "
                f"{self.weight.numel()}: the probe was trained on another model"
            )
        return features.float() @ self.weight.to(features.device) + self.bias

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))

    @property
    def direction(self) -> torch.Tensor:
        """Unit vector pointing towards the behavior, (D,)."""
        return self.weight / self.weight.norm().clamp_min(1e-12)

    def save(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight.detach().cpu().contiguous()}, str(out_dir / PROBE_WEIGHTS))
        meta = {k: v for k, v in asdict(self).items() if k != "weight"}
        (out_dir / PROBE_META).write_text(json.dumps(meta, indent=2))
        return out_dir

    @classmethod
    def load(cls, probe_dir: Path) -> LinearProbe:
        probe_dir = Path(probe_dir)
        if not (probe_dir / PROBE_META).is_file():
            raise FileNotFoundError(f"{probe_dir} is not a probe folder (no {PROBE_META})")
        meta = json.loads((probe_dir / PROBE_META).read_text())
        weight = load_file(str(probe_dir / PROBE_WEIGHTS))["weight"]  # tensors only, no pickle
        return cls(weight=weight, **meta)


def pool_hidden_states(
    hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean"
) -> torch.Tensor:
    """(B, L, D) states and a (B, L) mask of real tokens -> (B, D).

    ``mean`` averages the real tokens; ``last`` takes each row's last real token (left or right
    padding alike).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = mask.to(hidden.device).bool()
    if not mask.any(dim=1).all():
        raise ValueError("every row needs at least one real token to pool")
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * weights).sum(1) / weights.sum(1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask, positions, -1).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def binary_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half)."""
    labels = labels.bool()
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = scores.double().argsort()
    ranks = torch.empty_like(order, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    sorted_scores = scores.double()[order]
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def fit_probe(
    features: torch.Tensor, labels: torch.Tensor, *, l2: float = 1e-3, max_iter: int = 200
) -> tuple[torch.Tensor, float]:
    """Class-balanced, L2-regularized logistic regression; (weight (D,), bias) in raw space."""
    x = features.detach().double()
    y = labels.detach().double().flatten()
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, D) with N = len(labels); got {tuple(x.shape)}")
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        raise ValueError(
            f"the probe needs both labels; got {pos} positive of {len(y)} samples — "
            "collect more data or choose a behavior that occurs in it"
        )
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    # balanced weights: each class contributes half of the loss
    sample_weight = torch.where(y > 0, 0.5 / pos, 0.5 / (len(y) - pos))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure():
        opt.zero_grad()
        loss = (
            sample_weight
            * torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none")
        ).sum() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w.detach() / std).float()
    b_raw = float(b.detach() - (w.detach() * mean / std).sum())
    return w_raw, b_raw


def mean_difference_direction(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unit vector from the mean of the negatives to the mean of the positives, (D,).

    An alternative edit direction to a probe's weight: the probe's weight separates the classes
    best (it leans on low-variance dimensions), the mean difference says where the behavior's
    states *are*. On SmolLM2 the two had cosine 0.23 and the mean difference edited far better
    (``benchmarks/surgery_llm.py``).
    """
    labels = labels.bool().flatten()
    if labels.all() or not labels.any():
        raise ValueError("the mean difference needs both labels")
    x = features.float()
    diff = x[labels].mean(0) - x[~labels].mean(0)
    return diff / diff.norm().clamp_min(1e-12)


def _classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    labels = labels.bool()
    pred = probs > 0.5
    tpr = (pred & labels).sum() / labels.sum().clamp_min(1)
    tnr = (~pred & ~labels).sum() / (~labels).sum().clamp_min(1)
    return {
        "accuracy": float((pred == labels).float().mean()),
        "balanced_accuracy": float((tpr + tnr) / 2),
        "auroc": binary_auroc(probs, labels),
        "positive_rate": float(labels.float().mean()),
    }


def probe_layers(
    train: dict[int, torch.Tensor],
    train_labels: torch.Tensor,
    test: dict[int, torch.Tensor],
    test_labels: torch.Tensor,
    *,
    pooling: str = "last",
    l2: float = 1e-3,
    info: dict | None = None,
) -> dict[int, LinearProbe]:
    """One probe per layer, fitted on ``train`` and scored on the held-out ``test`` features
    (each ``{layer: (N, D)}``); the metrics are in each probe's ``metrics``."""
    probes = {}
    for layer in sorted(train):
        weight, bias = fit_probe(train[layer], train_labels, l2=l2)
        probe = LinearProbe(weight, bias, layer, pooling, info=dict(info or {}))
        probe.metrics = _classification_metrics(
            probe.predict_proba(test[layer]).cpu(), test_labels.cpu()
        )
        probes[layer] = probe
    return probes
