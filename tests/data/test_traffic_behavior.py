"""The behavior labelling rule on constructed speed-ups and slow-downs."""

from __future__ import annotations

import pytest
import torch

from behave.data.traffic_behavior import BEHAVIORS, BehaviorRule, centrality_slope, label_behaviors

HZ = 10.0
RULE = BehaviorRule(radius_m=20.0, scale_m=5.0, threshold=0.02)


def _window(speeds: list[float], gaps: list[float], seconds: float = 5.0) -> torch.Tensor:
    """Agents on one lane, agent i starting gaps[i] metres ahead, driving speeds[i] m/s."""
    t = torch.arange(int(seconds * HZ) + 1) / HZ  # (F,)
    x = torch.tensor(gaps)[None] + torch.tensor(speeds)[None] * t[:, None]  # (F, N)
    return torch.stack([x, torch.zeros_like(x)], -1)  # (F, N, 2)


def test_speeding_up_behind_a_car_is_overspeeding_for_the_closer():
    # agent 0 closes in on agent 1 from 18 m behind at +3 m/s relative
    positions = _window([28.0, 25.0], [0.0, 18.0])
    labels = label_behaviors(positions, torch.ones(positions.shape[:2], dtype=torch.bool), RULE, HZ)
    assert BEHAVIORS[labels[0]] == "overspeeding"


def test_falling_behind_is_underspeeding():
    # agent 0 starts 6 m behind agent 1 and drops back at -3 m/s relative
    positions = _window([22.0, 25.0], [0.0, 6.0])
    labels = label_behaviors(positions, torch.ones(positions.shape[:2], dtype=torch.bool), RULE, HZ)
    assert BEHAVIORS[labels[0]] == "underspeeding"


def test_keeping_pace_is_neutral():
    positions = _window([25.0, 25.0, 25.0], [0.0, 10.0, 40.0])
    labels = label_behaviors(positions, torch.ones(positions.shape[:2], dtype=torch.bool), RULE, HZ)
    assert [BEHAVIORS[i] for i in labels] == ["neutral"] * 3


def test_slope_is_per_second_not_per_frame():
    fast = _window([28.0, 25.0], [0.0, 18.0])
    slow_rate = fast[::2]  # the same motion at 5 Hz
    present = torch.ones(fast.shape[:2], dtype=torch.bool)
    a = centrality_slope(fast, present, RULE, HZ)
    b = centrality_slope(slow_rate, present[::2], RULE, HZ / 2)
    torch.testing.assert_close(a, b)


def test_an_agent_missing_from_part_of_the_window_gets_no_label():
    positions = _window([28.0, 25.0], [0.0, 18.0])
    present = torch.ones(positions.shape[:2], dtype=torch.bool)
    present[-5:, 1] = False
    labels = label_behaviors(positions, present, RULE, HZ)
    assert labels[1] == -1


def test_rule_parameters_are_validated():
    with pytest.raises(ValueError, match="threshold"):
        BehaviorRule(threshold=0)
