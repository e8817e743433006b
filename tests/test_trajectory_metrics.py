"""ADE/FDE in metres and behavior accuracy on hand-made cases; the constant-velocity baseline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from behave.data.traffic_behavior import BEHAVIORS, BehaviorRule, label_behaviors
from behave.trajectory_metrics import (
    ForecastAccumulator,
    ForecastScorer,
    constant_velocity_forecast,
)

HZ = 2.0  # two frames per second keeps the arithmetic readable


def test_ade_fde_per_horizon_and_masking():
    target = torch.zeros(1, 4, 2)  # one agent, 2 s at 2 Hz
    predicted = torch.tensor([[[1.0, 0], [2.0, 0], [3.0, 0], [4.0, 0]]])
    valid = torch.tensor([[True, True, True, False]])  # the last frame is unknown
    acc = ForecastAccumulator(HZ, [1, 2])
    acc.update(predicted, target, valid)
    m = acc.compute()
    assert m["ade_1s"] == pytest.approx(1.5) and m["fde_1s"] == pytest.approx(2.0)
    assert m["ade_2s"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3: the unknown frame is skipped
    assert "fde_2s" not in m  # no agent has a true position 2 s ahead


def test_behavior_accuracies():
    acc = ForecastAccumulator(HZ, [1], list(BEHAVIORS))
    logits = torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 1])]  # predictions
    labels = torch.tensor([0, 1, 1, 1, 2, -1])  # the last one has no label
    acc.update(
        torch.zeros(6, 2, 2),
        torch.zeros(6, 2, 2),
        torch.ones(6, 2, dtype=torch.bool),
        logits,
        labels,
    )
    m = acc.compute()
    assert m["behavior_weighted_accuracy"] == pytest.approx(4 / 5)
    assert m["behavior_balanced_accuracy"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert m["recall_neutral"] == pytest.approx(2 / 3)


def test_constant_velocity_is_exact_on_straight_tracks_and_so_is_its_behavior_rule():
    rule = BehaviorRule(radius_m=20.0, scale_m=5.0, threshold=0.02)
    t = torch.arange(14).view(1, 1, -1, 1) / HZ
    speeds = torch.tensor([28.0, 25.0]).view(1, 2, 1, 1)
    xy = torch.cat(
        [torch.tensor([0.0, 18.0]).view(1, 2, 1, 1) + speeds * t, torch.zeros(1, 2, 14, 1)], -1
    )
    observed, future = xy[:, :, :4], xy[:, :, 4:]
    torch.testing.assert_close(constant_velocity_forecast(observed, HZ, 10), future)
    present = torch.ones(1, 2, dtype=torch.bool)
    truth = torch.cat([observed[:, :, -1:], future], 2).transpose(1, 2)
    behavior = label_behaviors(truth, present.unsqueeze(1).expand(-1, 11, -1), rule, HZ)
    scorer = ForecastScorer(HZ, 10, list(BEHAVIORS), rule.to_dict())
    batch = {
        "observed": observed,
        "future": future,
        "future_present": torch.ones(1, 2, 10, dtype=torch.bool),
        "present": present,
        "behavior": behavior,
    }
    wrong = SimpleNamespace(mean=future + 1.0, behavior_logits=torch.zeros(1, 2, 3))
    scorer.update(batch, wrong)
    m = scorer.compute()
    assert m["cv_fde_5s"] == pytest.approx(0, abs=1e-4) and m["fde_5s"] == pytest.approx(2**0.5)
    assert m["cv_behavior_weighted_accuracy"] == 1.0
