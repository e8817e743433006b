"""Trajectory and behavior forecasting metrics, in metres (pure torch).

- ADE@h: mean Euclidean error over the predicted frames of the first h seconds.
- FDE@h: Euclidean error at the frame h seconds ahead.
  Both are averaged over agents whose true position exists at those frames (imported tracks can
  end early); errors of the predicted *mean* (the Gaussian's most likely point).
- behavior: ``weighted_accuracy`` = the per-class accuracies (recalls) weighted by each class's
  share of the labels, which equals the plain accuracy (the paper's "weighted average
  accuracy"); ``balanced_accuracy`` = their unweighted mean (every class counts once);
  ``recall_<class>`` per class; the confusion matrix (rows: true, columns: predicted).
"""

from __future__ import annotations

import torch

__all__ = ["ForecastAccumulator", "ForecastScorer", "constant_velocity_forecast"]


def constant_velocity_forecast(observed: torch.Tensor, hz: float, steps: int) -> torch.Tensor:
    """The physics baseline: last position + last finite-difference velocity x time.
    observed (..., To, 2) -> (..., steps, 2)."""
    velocity = (observed[..., -1, :] - observed[..., -2, :]) * hz  # (..., 2)
    seconds = torch.arange(1, steps + 1, dtype=observed.dtype, device=observed.device) / hz
    return observed[..., -1:, :] + velocity.unsqueeze(-2) * seconds.unsqueeze(-1)


class ForecastAccumulator:
    """Sums of errors and counts over batches; ``compute()`` -> flat metric dict."""

    def __init__(self, hz: float, horizons_s: list[int], behaviors: list[str] | None = None):
        self.hz, self.horizons = hz, list(horizons_s)
        self.behaviors = list(behaviors or [])
        self.ade_sum = torch.zeros(len(self.horizons), dtype=torch.float64)
        self.ade_count = torch.zeros(len(self.horizons), dtype=torch.float64)
        self.fde_sum = torch.zeros(len(self.horizons), dtype=torch.float64)
        self.fde_count = torch.zeros(len(self.horizons), dtype=torch.float64)
        n = len(self.behaviors)
        self.confusion = torch.zeros(n, n, dtype=torch.long)

    @torch.no_grad()
    def update(
        self,
        predicted: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor,
        behavior_logits: torch.Tensor | None = None,
        behavior: torch.Tensor | None = None,
    ) -> None:
        """predicted, target (..., Tp, 2); valid (..., Tp) bool; behavior logits (..., C) and
        labels (...) with -1 for none."""
        error = (predicted - target).norm(dim=-1).double().cpu()  # (..., Tp)
        valid = valid.cpu()
        for i, h in enumerate(self.horizons):
            frames = int(round(h * self.hz))
            span, span_valid = error[..., :frames], valid[..., :frames]
            self.ade_sum[i] += span[span_valid].sum()
            self.ade_count[i] += span_valid.sum()
            last, last_valid = error[..., frames - 1], valid[..., frames - 1]
            self.fde_sum[i] += last[last_valid].sum()
            self.fde_count[i] += last_valid.sum()
        if behavior_logits is not None and behavior is not None and self.behaviors:
            labelled = behavior >= 0
            pred = behavior_logits.argmax(-1)[labelled].cpu()
            true = behavior[labelled].cpu()
            n = len(self.behaviors)
            self.confusion += torch.bincount(true * n + pred, minlength=n * n).view(n, n)

    def compute(self, prefix: str = "") -> dict[str, float]:
        out: dict[str, float] = {}
        for i, h in enumerate(self.horizons):
            if self.ade_count[i] > 0:
                out[f"{prefix}ade_{h}s"] = float(self.ade_sum[i] / self.ade_count[i])
            if self.fde_count[i] > 0:
                out[f"{prefix}fde_{h}s"] = float(self.fde_sum[i] / self.fde_count[i])
        total = int(self.confusion.sum())
        if total:
            support = self.confusion.sum(1).double()  # (C,)
            recall = self.confusion.diagonal().double() / support.clamp_min(1)
            seen = support > 0
            out[f"{prefix}behavior_weighted_accuracy"] = float(
                (recall * support).sum() / support.sum()
            )
            out[f"{prefix}behavior_balanced_accuracy"] = float(recall[seen].mean())
            for name, r, s in zip(self.behaviors, recall.tolist(), seen.tolist(), strict=True):
                if s:
                    out[f"{prefix}recall_{name}"] = r
        return out


class ForecastScorer:
    """A model's forecasts and constant velocity's, scored on the same windows: feed batches
    (the traffic datamodule's dicts) with the model's output, then ``compute()`` gives the
    model's metrics and the baseline's under ``cv_`` (its behavior accuracy: the labelling
    rule applied to the constant-velocity future, when ``rule`` is given)."""

    def __init__(
        self, hz: float, predict_steps: int, behaviors: list[str], rule: dict | None = None
    ):
        """``rule``: the behavior labelling rule's parameters; when given, the baseline also
        classifies behaviors, by that rule applied to its own extrapolation of every agent."""
        self.hz, self.predict_steps = hz, predict_steps
        horizons = list(range(1, round(predict_steps / hz) + 1))
        self.model = ForecastAccumulator(hz, horizons, behaviors)
        self.rule = rule
        self.baseline = ForecastAccumulator(hz, horizons, behaviors if rule else None)

    def update(self, batch: dict[str, torch.Tensor], out) -> None:
        future, valid = batch["future"], batch["future_present"]
        self.model.update(out.mean, future, valid, out.behavior_logits, batch["behavior"])
        cv = constant_velocity_forecast(batch["observed"], self.hz, self.predict_steps)
        votes = None
        if self.rule is not None:
            from behave.data.traffic_behavior import BehaviorRule, label_behaviors

            track = torch.cat([batch["observed"][:, :, -1:], cv], 2).transpose(1, 2)  # (B, T, N, 2)
            present = batch["present"].unsqueeze(1).expand(-1, track.shape[1], -1)
            labels = label_behaviors(track, present, BehaviorRule.from_dict(self.rule), self.hz)
            votes = torch.nn.functional.one_hot(labels.clamp_min(0), len(self.model.behaviors))
        self.baseline.update(
            cv, future, valid, votes, batch["behavior"] if votes is not None else None
        )

    def compute(self, prefix: str = "") -> dict[str, float]:
        return {**self.model.compute(prefix), **self.baseline.compute(f"{prefix}cv_")}

    @property
    def confusion(self) -> torch.Tensor:
        return self.model.confusion
