"""Graph-LSTM: exact likelihood, shapes, gradients, permutation equivariance, bundle round trip."""

from __future__ import annotations

import math

import pytest
import torch

from behave.models.graph_lstm import (
    GraphLSTM,
    GraphLSTMConfig,
    bivariate_nll,
    finite_difference_velocities,
)

TINY = GraphLSTMConfig(observe_steps=6, predict_steps=10, hz=5.0, hidden_size=8, eigenvectors=2)


def _scene(B=2, N=5, To=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(B, N, 1, 2, generator=g) * torch.tensor([60.0, 8.0])
    speed = 20 + 10 * torch.rand(B, N, 1, 2, generator=g) * torch.tensor([1.0, 0.0])
    t = torch.arange(To).view(1, 1, To, 1) / TINY.hz
    present = torch.ones(B, N, dtype=torch.bool)
    if B > 1:
        present[1, -2:] = False
    return start + speed * t, present


def test_bivariate_nll_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    target, mean = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    scale = torch.rand(64, 2, generator=g) + 0.2
    rho = torch.rand(64, generator=g) * 1.8 - 0.9
    cov = torch.stack(
        [
            torch.stack([scale[:, 0] ** 2, rho * scale[:, 0] * scale[:, 1]], -1),
            torch.stack([rho * scale[:, 0] * scale[:, 1], scale[:, 1] ** 2], -1),
        ],
        -2,
    )
    reference = -torch.distributions.MultivariateNormal(mean, cov).log_prob(target)
    torch.testing.assert_close(bivariate_nll(target, mean, scale, rho), reference)


def test_nll_is_minimized_at_the_target_not_elsewhere():
    target = torch.tensor([1.0, 2.0])
    scale, rho = torch.tensor([0.5, 0.5]), torch.tensor(0.0)
    at = bivariate_nll(target, target, scale, rho)
    off = bivariate_nll(target, target + 0.3, scale, rho)
    assert at < off
    assert at == pytest.approx(math.log(2 * math.pi) + 2 * math.log(0.5))


def test_finite_difference_velocities():
    positions = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 1.0]])
    v = finite_difference_velocities(positions, hz=10.0)
    torch.testing.assert_close(v, torch.tensor([[10.0, 0.0], [10.0, 0.0], [20.0, 10.0]]))


@pytest.mark.parametrize("graph_stream", [True, False])
def test_shapes_and_every_parameter_gets_a_gradient(graph_stream):
    torch.manual_seed(0)
    config = GraphLSTMConfig(**{**TINY.__dict__, "graph_stream": graph_stream, "dropout": 0.0})
    model = GraphLSTM(config)
    observed, present = _scene()
    out = model(observed, present)
    B, N = present.shape
    assert out.mean.shape == (B, N, 10, 2) and out.scale.shape == (B, N, 10, 2)
    assert out.correlation.shape == (B, N, 10) and out.behavior_logits.shape == (B, N, 3)
    assert (out.scale > 0).all() and (out.correlation.abs() < 1).all()
    if graph_stream:
        assert out.embedding.shape == (B, N, config.future_graphs, 2)
        assert out.embedding[1, -2:].abs().sum() == 0  # absent agents predict nothing
    else:
        assert out.embedding is None
    loss = out.mean.square().mean() + out.scale.mean() + out.correlation.mean()
    loss = loss + out.behavior_logits.mean()
    if out.embedding is not None:
        loss = loss + out.embedding.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_an_untrained_model_starts_near_constant_velocity():
    torch.manual_seed(0)
    model = GraphLSTM(TINY).eval()
    observed, present = _scene()
    out = model(observed, present)
    velocity = (observed[:, :, -1] - observed[:, :, -2]) * TINY.hz
    cv_end = observed[:, :, -1] + velocity * (TINY.predict_steps / TINY.hz)
    # residuals are bounded by position_scale x (a small head output): metres, not tens of metres
    assert (out.mean[:, :, -1] - cv_end).norm(dim=-1).max() < TINY.position_scale


def test_agents_are_permutation_equivariant_and_padding_does_not_leak():
    torch.manual_seed(0)
    model = GraphLSTM(TINY).eval()
    observed, present = _scene(B=1, N=4)
    perm = torch.tensor([2, 0, 3, 1])
    a = model(observed, present)
    b = model(observed[:, perm], present[:, perm])
    torch.testing.assert_close(a.mean[:, perm], b.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.behavior_logits[:, perm], b.behavior_logits, atol=1e-5, rtol=1e-5)
    # an extra absent agent (padding) far away with garbage positions changes nothing
    pad = torch.cat([observed, torch.full_like(observed[:, :1], 7.0)], 1)
    c = model(pad, torch.cat([present, torch.zeros(1, 1, dtype=torch.bool)], 1))
    torch.testing.assert_close(c.mean[:, :4], a.mean, atol=1e-5, rtol=1e-5)


def test_bundle_round_trip_gives_the_same_forecast(tmp_path):
    from behave.inference import load_predictor
    from behave.inference.graph_lstm import save_bundle

    torch.manual_seed(0)
    model = GraphLSTM(TINY).eval()
    save_bundle(model, tmp_path / "bundle", {"behaviors": ["over", "neutral", "under"]})
    forecaster = load_predictor(tmp_path / "bundle")
    observed, present = _scene(B=1, N=3)
    scene = [{"agent_id": f"a{i}", "track": observed[0, i].tolist()} for i in range(3)]
    result = forecaster.forecast([scene])[0]
    direct = model(observed, present)
    got = torch.tensor([r["positions"] for r in result])
    torch.testing.assert_close(got, direct.mean[0], atol=2e-3, rtol=0)  # rounded to mm
    assert {r["behavior"] for r in result} <= {"over", "neutral", "under"}


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda s: s[0].update(track=s[0]["track"][:3]), "too short"),
        (lambda s: s[1].update(agent_id="a0"), "duplicate agent_id"),
        (lambda s: s[0]["track"][-1].__setitem__(0, float("nan")), "finite"),
    ],
)
def test_bad_tracks_name_the_field(tmp_path, bad, match):
    from behave.inference.graph_lstm import Forecaster, InputError

    forecaster = Forecaster(GraphLSTM(TINY), {"behaviors": ["o", "n", "u"]})
    observed, _ = _scene(B=1, N=2)
    scene = [{"agent_id": f"a{i}", "track": observed[0, i].tolist()} for i in range(2)]
    bad(scene)
    with pytest.raises(InputError, match=match) as err:
        forecaster.forecast([scene])
    assert err.value.field.startswith("scenes[0].agents[")
