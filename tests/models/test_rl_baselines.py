"""Decision Transformer and behavior-cloning baselines behind DecisionMamba's interface."""

from __future__ import annotations

import torch

from behave.models.behavior_cloning import BehaviorCloning, BehaviorCloningConfig
from behave.models.decision_transformer import DecisionTransformer, DecisionTransformerConfig

S, A = 5, 3


def _batch(B=2, L=6):
    torch.manual_seed(0)
    return (
        torch.randn(B, L, 1),
        torch.randn(B, L, S),
        torch.rand(B, L, A) * 2 - 1,
        torch.arange(L).repeat(B, 1),
    )


def test_decision_transformer_shapes_and_causality():
    model = DecisionTransformer(
        DecisionTransformerConfig(S, A, context_length=6, d_model=16, num_layers=1, dropout=0.0)
    ).eval()
    rtg, s, a, t = _batch()
    out = model(rtg, s, a, t)
    assert out.action_preds.shape == (2, 6, A) and out.state_preds.shape == (2, 6, S)
    assert out.action_preds.abs().max() <= 1.0  # tanh head: actions in [-1, 1]
    a2 = a.clone()
    a2[:, 3] += 1.0  # the action at step 3 may change predictions after it, never at or before
    out2 = model(rtg, s, a2, t)
    assert torch.allclose(out.action_preds[:, :4], out2.action_preds[:, :4], atol=1e-6)
    assert not torch.allclose(out.action_preds[:, 4:], out2.action_preds[:, 4:])


def test_behavior_cloning_reads_only_the_current_state():
    model = BehaviorCloning(BehaviorCloningConfig(S, A, hidden=8, dropout=0.0)).eval()
    rtg, s, a, t = _batch()
    out = model(rtg, s, a, t)
    assert out.action_preds.shape == (2, 6, A)
    other = model(rtg * 5, s, -a, t + 7)
    assert torch.equal(out.action_preds, other.action_preds)
