import pytest
import torch
import torch.nn.functional as F

from behave.models.decision_mamba import (
    DecisionMamba,
    DecisionMambaConfig,
    MambaBlock,
)

STATE_DIM, ACT_DIM = 5, 3


def tiny_config(**kw) -> DecisionMambaConfig:
    defaults = dict(
        state_dim=STATE_DIM,
        act_dim=ACT_DIM,
        context_length=8,
        max_timestep=50,
        d_model=16,
        num_layers=2,
        d_state=4,
        dropout=0.0,
    )
    return DecisionMambaConfig(**{**defaults, **kw})


def tiny_model(seed: int = 0, **kw) -> DecisionMamba:
    torch.manual_seed(seed)
    return DecisionMamba(tiny_config(**kw)).eval()


def random_trajectory(B: int = 2, L: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        returns_to_go=torch.randn(B, L, 1, generator=g),
        states=torch.randn(B, L, STATE_DIM, generator=g),
        actions=torch.rand(B, L, ACT_DIM, generator=g) * 2 - 1,
        timesteps=torch.arange(L).repeat(B, 1) + torch.randint(0, 10, (B, 1), generator=g),
    )


def perturbed(traj: dict[str, torch.Tensor], keys, start: int) -> dict[str, torch.Tensor]:
    """A copy of traj with `keys` replaced by fresh values from step `start` on."""
    out = {k: v.clone() for k, v in traj.items()}
    for k in keys:
        if k == "timesteps":
            out[k][:, start:] = (out[k][:, start:] + 7) % 50
        else:
            out[k][:, start:] += 3.0 * torch.randn_like(out[k][:, start:])
    return out


def test_output_shapes_and_hidden_states():
    model = tiny_model()
    out = model(**random_trajectory(B=3, L=6), output_hidden_states=True)
    assert out.action_preds.shape == (3, 6, ACT_DIM)
    assert out.state_preds.shape == (3, 6, STATE_DIM)
    assert out.return_preds.shape == (3, 6, 1)
    assert out.action_preds.abs().max() <= 1.0  # tanh head, action_scale 1
    assert len(out.hidden_states) == model.config.num_layers + 1
    assert all(h.shape == (3, 18, 16) for h in out.hidden_states)


def test_action_scale_bounds_actions():
    model = tiny_model(action_scale=2.5)
    with torch.no_grad():
        model.predict_action.bias.fill_(100.0)
    out = model(**random_trajectory())
    assert torch.allclose(out.action_preds, torch.full_like(out.action_preds, 2.5))


def test_every_parameter_receives_gradient():
    model = tiny_model().train()
    traj = random_trajectory()
    out = model(**traj)
    loss = (
        F.mse_loss(out.action_preds, traj["actions"])
        + F.smooth_l1_loss(out.state_preds[:, :-1], traj["states"][:, 1:])
        + F.smooth_l1_loss(out.return_preds[:, :-1], traj["returns_to_go"][:, 1:])
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


@pytest.mark.parametrize("t", [0, 3, 7])
def test_no_action_leak(t):
    """action_preds[:, t] must not depend on a_t, nor on anything after step t."""
    model = tiny_model()
    traj = random_trajectory()
    changed = perturbed(traj, ["actions"], t)
    changed = perturbed(changed, ["returns_to_go", "states", "timesteps"], t + 1)
    with torch.no_grad():
        base, new = model(**traj), model(**changed)
    torch.testing.assert_close(new.action_preds[:, : t + 1], base.action_preds[:, : t + 1])
    # the perturbation does reach what may see it: the action token a_t's own heads
    assert not torch.allclose(new.state_preds[:, t], base.state_preds[:, t])
    if t + 1 < traj["actions"].shape[1]:
        assert not torch.allclose(new.action_preds[:, t + 1], base.action_preds[:, t + 1])


def test_causal_future_steps_do_not_change_the_past():
    model = tiny_model()
    traj = random_trajectory()
    t = 4
    with torch.no_grad():
        base = model(**traj)
        new = model(**perturbed(traj, ["returns_to_go", "states", "actions", "timesteps"], t + 1))
    for name in ("action_preds", "state_preds", "return_preds"):
        torch.testing.assert_close(getattr(new, name)[:, : t + 1], getattr(base, name)[:, : t + 1])
        assert not torch.allclose(getattr(new, name)[:, t + 1 :], getattr(base, name)[:, t + 1 :])


def test_mamba_block_step_equals_forward():
    torch.manual_seed(0)
    block = MambaBlock(tiny_config()).eval()
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        full = block(x)
        cache = block.allocate_cache(2)
        steps = []
        for t in range(x.shape[1]):
            y, cache = block.step(x[:, t], cache)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.conv.shape == (2, 32, 3) and cache.ssm.shape == (2, 32, 4)


def test_recurrent_step_equals_forward():
    model = tiny_model(num_layers=3)
    traj = random_trajectory(B=2, L=8)
    with torch.no_grad():
        full = model(**traj).action_preds  # (B, L, A)
        cache = model.allocate_cache(2)
        actions = []
        for t in range(8):
            actions.append(
                model.step(
                    traj["returns_to_go"][:, t],
                    traj["states"][:, t],
                    traj["timesteps"][:, t],
                    cache,
                    previous_action=None if t == 0 else traj["actions"][:, t - 1],
                )
            )
    assert cache.num_steps == 8
    torch.testing.assert_close(torch.stack(actions, 1), full, atol=1e-5, rtol=1e-5)


def test_step_requires_previous_action_exactly_after_the_first_step():
    model = tiny_model()
    traj = random_trajectory(B=1, L=2)
    step = [traj[k][:, 0] for k in ("returns_to_go", "states", "timesteps")]
    cache = model.allocate_cache(1)
    with pytest.raises(ValueError, match="previous_action"):
        model.step(*step, cache, previous_action=traj["actions"][:, 0])
    model.step(*step, cache)
    with pytest.raises(ValueError, match="previous_action"):
        model.step(*step, cache)


def test_mamba_init():
    config = tiny_config()
    block = MambaBlock(config)
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= config.dt_init_floor and dt.max() <= config.dt_max * (1 + 1e-5)
    torch.testing.assert_close(-torch.exp(block.A_log[0]), -torch.arange(1.0, 5.0))
    assert torch.equal(block.D, torch.ones(32))


def test_state_dict_round_trip(tmp_path):
    model = tiny_model(seed=0)
    path = tmp_path / "dm.pt"
    torch.save(model.state_dict(), path)
    loaded = tiny_model(seed=1)
    loaded.load_state_dict(torch.load(path, weights_only=True))
    traj = random_trajectory()
    with torch.no_grad():
        a, b = model(**traj), loaded(**traj)
    for name in ("action_preds", "state_preds", "return_preds"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(state_dim=0), "state_dim"),
        (dict(num_layers=0), "num_layers"),
        (dict(d_conv=0), "d_conv"),
        (dict(dt_rank=0), "dt_rank"),
        (dict(dt_min=0.2, dt_max=0.1), "dt_min"),
        (dict(norm="batchnorm"), "norm"),
        (dict(dropout=1.0), "dropout"),
        (dict(action_scale=0.0), "action_scale"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**bad)


def test_input_shape_errors():
    model = tiny_model()
    traj = random_trajectory()
    with pytest.raises(ValueError, match="states"):
        model(**{**traj, "states": traj["states"][..., :-1]})
    with pytest.raises(ValueError, match="timesteps"):
        model(**{**traj, "timesteps": traj["timesteps"][0]})


def test_default_config():
    config = DecisionMambaConfig(state_dim=17, act_dim=6)
    assert (config.d_model, config.num_layers, config.d_state, config.expand) == (128, 3, 16, 2)
    assert (config.d_conv, config.context_length, config.dt_rank) == (4, 20, 8)
