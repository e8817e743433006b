"""Behavior probes find a planted linear signal; surgery edits exactly the planned rows."""

import copy

import pytest
import torch

from behave.explain.probes import (
    LinearProbe,
    binary_auroc,
    fit_probe,
    pool_hidden_states,
    probe_layers,
)
from behave.explain.surgery import (
    SurgeryConfig,
    apply_surgery,
    mlp_input_projections,
    operate,
    plan_surgery,
)
from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig


def planted(n=2000, d=16, seed=0):
    """Gaussian features whose label is a noisy threshold on one hidden direction."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d)  # unequal scales
    direction = torch.zeros(d)
    direction[3], direction[7] = 1.0, -2.0
    logits = x @ direction - 2.5  # rare positives, like a tail behavior
    y = (logits + 0.3 * torch.randn(n, generator=g)) > 0
    return x, y, direction


def test_probe_recovers_a_planted_direction_and_separates_held_out_data():
    x, y, direction = planted()
    assert 0.05 < y.float().mean() < 0.4
    probes = probe_layers({0: x[:1500]}, y[:1500], {0: x[1500:]}, y[1500:], info={"label": "t"})
    probe = probes[0]
    assert probe.metrics["auroc"] > 0.97
    assert probe.metrics["balanced_accuracy"] > 0.9
    cos = torch.nn.functional.cosine_similarity(probe.direction, direction / direction.norm(), 0)
    assert cos > 0.95


def test_probe_on_pure_noise_is_near_chance():
    x, _, _ = planted()
    y = torch.rand(len(x), generator=torch.Generator().manual_seed(1)) < 0.2
    probe = probe_layers({0: x[:1500]}, y[:1500], {0: x[1500:]}, y[1500:])[0]
    assert 0.4 < probe.metrics["auroc"] < 0.6


def test_probe_needs_both_labels():
    x, _, _ = planted(100)
    with pytest.raises(ValueError, match="needs both labels"):
        fit_probe(x, torch.zeros(100, dtype=torch.bool))


def test_probe_round_trips_through_safetensors(tmp_path):
    x, y, _ = planted(500)
    weight, bias = fit_probe(x, y)
    probe = LinearProbe(
        weight, bias, layer=2, pooling="mean", metrics={"auroc": 0.9}, info={"a": 1}
    )
    loaded = LinearProbe.load(probe.save(tmp_path / "probe"))
    assert torch.equal(loaded.weight, probe.weight)
    assert (loaded.bias, loaded.layer, loaded.pooling, loaded.info) == (bias, 2, "mean", {"a": 1})
    torch.testing.assert_close(loaded.predict_proba(x), probe.predict_proba(x))
    with pytest.raises(ValueError, match="another model"):
        probe.logits(torch.zeros(3, 5))


def test_auroc_matches_pairwise_definition_with_ties():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.3, 0.4])
    labels = torch.tensor([0, 1, 0, 1, 0, 1]).bool()
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()
    assert binary_auroc(scores, labels) == pytest.approx(float(pairs.mean()))


def test_pooling_mean_and_last_respect_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]).bool()
    assert pool_hidden_states(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]
    assert pool_hidden_states(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool_hidden_states(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden_states(hidden, right, "max")


def small_gpt(seed=0):
    torch.manual_seed(seed)
    return BehaveGPT(
        BehaveGPTConfig(num_behaviors=30, num_locations=3, num_domains=2, d_model=16, num_layers=3)
    ).eval()


def test_surgery_edits_exactly_the_planned_rows_and_nothing_else():
    model = small_gpt()
    before = copy.deepcopy(model.state_dict())
    direction = torch.randn(16, generator=torch.Generator().manual_seed(3))
    plan = operate(model, direction, SurgeryConfig(alpha=0.5, top_k=10, layers=(1, 3)))
    after = model.state_dict()
    assert sum(len(r) for r in plan.rows.values()) == 10
    assert set(plan.layer_counts) <= {1, 2}
    for name, tensor in after.items():
        rows = plan.rows.get(name, [])
        if not rows:
            assert torch.equal(tensor, before[name]), name  # bit-identical
            continue
        changed = (tensor != before[name]).any(dim=1).nonzero().flatten().tolist()
        assert changed == rows
        torch.testing.assert_close(tensor[rows], before[name][rows] + plan.shifts[name])
    # the chosen rows are the most anti-aligned of all candidates in blocks 1-2
    cos = torch.cat(
        [
            torch.nn.functional.cosine_similarity(before[n], direction[None], dim=1)
            for b, n, _ in mlp_input_projections(model)
            if b in (1, 2)
        ]
    )
    chosen = sorted(c for cs in plan.cosines.values() for c in cs)
    torch.testing.assert_close(torch.tensor(chosen), cos.sort().values[:10])


def test_surgery_is_reproducible_and_variants_differ():
    direction = torch.randn(16, generator=torch.Generator().manual_seed(4))
    edited = []
    for config in (
        SurgeryConfig(alpha=1.0, top_k=8),
        SurgeryConfig(alpha=1.0, top_k=8),
        SurgeryConfig(alpha=1.0, top_k=8, select="aligned"),
        SurgeryConfig(alpha=1.0, top_k=8, mode="remove"),
    ):
        model = small_gpt()
        operate(model, direction, config)
        edited.append(model.state_dict())
    assert all(torch.equal(edited[0][k], edited[1][k]) for k in edited[0])
    assert any(not torch.equal(edited[0][k], edited[2][k]) for k in edited[0])
    # projection removal leaves the edited rows orthogonal to the direction
    model = small_gpt()
    plan = plan_surgery(model, direction, SurgeryConfig(alpha=1.0, top_k=8, mode="remove"))
    apply_surgery(model, plan)
    params = dict(model.named_parameters())
    for name, rows in plan.rows.items():
        dots = params[name][rows] @ (direction / direction.norm())
        assert dots.abs().max() < 1e-5


def test_surgery_rejects_mismatched_probe_and_bad_config():
    model = small_gpt()
    with pytest.raises(ValueError, match="another model"):
        plan_surgery(model, torch.randn(8), SurgeryConfig())
    with pytest.raises(ValueError, match="select no block"):
        plan_surgery(model, torch.randn(16), SurgeryConfig(layers=(5, 7)))
    with pytest.raises(ValueError, match="top_k"):
        plan_surgery(model, torch.randn(16), SurgeryConfig(top_k=10_000))
    with pytest.raises(ValueError, match="mode"):
        SurgeryConfig(mode="scale")
    with pytest.raises(ValueError, match="no MLP input projection"):
        mlp_input_projections(torch.nn.Linear(3, 3))


def test_per_block_directions_score_each_block_against_its_own():
    model = small_gpt()
    g = torch.Generator().manual_seed(5)
    directions = {b: torch.randn(16, generator=g) for b in range(3)}
    before = copy.deepcopy(model.state_dict())
    plan = operate(model, directions, SurgeryConfig(alpha=1.0, top_k=12))
    cos = []
    for block, name, _ in mlp_input_projections(model):
        v = directions[block] / directions[block].norm()
        cos.append(torch.nn.functional.cosine_similarity(before[name], v[None], dim=1))
        if name in plan.rows:  # shifted along its own block's direction
            shift = plan.shifts[name]
            assert torch.nn.functional.cosine_similarity(shift, v, dim=0) > 0.9999
    chosen = sorted(c for cs in plan.cosines.values() for c in cs)
    torch.testing.assert_close(torch.tensor(chosen), torch.cat(cos).sort().values[:12])
    with pytest.raises(ValueError, match="no direction for block"):
        plan_surgery(small_gpt(), {0: torch.randn(16)}, SurgeryConfig(top_k=4))


def test_mean_difference_points_from_negatives_to_positives():
    from behave.explain.probes import mean_difference_direction

    x, y, direction = planted()
    v = mean_difference_direction(x, y)
    assert v.norm() == pytest.approx(1.0)
    diff = x[y].mean(0) - x[~y].mean(0)
    torch.testing.assert_close(v, diff / diff.norm())
    with pytest.raises(ValueError, match="both labels"):
        mean_difference_direction(x, torch.ones(len(x), dtype=torch.bool))


def test_per_block_allocation_takes_the_same_number_of_rows_from_every_block():
    model = small_gpt()
    direction = torch.randn(16, generator=torch.Generator().manual_seed(6))
    plan = plan_surgery(model, direction, SurgeryConfig(top_k=10, per_block=True))
    assert plan.layer_counts == {0: 3, 1: 3, 2: 3}
    for _, name, weight in mlp_input_projections(model):  # each block's most anti-aligned
        cos = torch.nn.functional.cosine_similarity(weight.detach(), direction[None], dim=1)
        assert sorted(plan.rows[name]) == sorted(cos.argsort()[:3].tolist())
    with pytest.raises(ValueError, match="one row per block"):
        plan_surgery(model, direction, SurgeryConfig(top_k=2, per_block=True))
