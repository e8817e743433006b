"""Captum attributions of time-series classifiers and BehaveGPT: shapes, planted cells,
completeness, state restored, and the heatmap."""

from __future__ import annotations

import base64

import pytest
import torch
from captum.attr._core import deep_lift as captum_deep_lift
from torch import nn

from behave.explain.attributions import (
    CAPTUM_METHODS,
    EVENT_FEATURES,
    _EventEmbeddingForward,
    _field_embeddings,
    attribute,
    attribute_events,
    attribution_heatmap,
    figure_png_base64,
)
from behave.models.behavegpt import PAD_ID, BehaveGPT, BehaveGPTConfig, EventBatch


class TinyTransformer(nn.Module):
    """(B, T, D) -> logits (B, C): one encoder layer, mean pooling, linear head."""

    def __init__(self, channels: int = 3, d_model: int = 16, num_classes: int = 2) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.proj(x)).mean(dim=1))


class PlantedWindow(nn.Module):
    """Class 1's logit is 4 tanh(sum of channel 1 over steps 10..14 / 2); class 0's is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 10:15, 1].sum(dim=1) / 2  # (B,)
        return torch.stack([torch.zeros_like(s), 4 * self.tanh(s)], dim=1)  # (B, 2)


def planted_mask(T: int = 30, D: int = 3) -> torch.Tensor:
    mask = torch.zeros(T, D, dtype=torch.bool)
    mask[10:15, 1] = True
    return mask


def test_every_method_keeps_shape_and_restores_model_state():
    torch.manual_seed(0)
    model = TinyTransformer().train()
    model.head.weight.requires_grad_(False)
    x = torch.randn(4, 12, 3)
    target = torch.tensor([0, 1, 0, 1])
    for method in CAPTUM_METHODS:
        attr = attribute(model, x, target, method, n_steps=8, window=4)
        assert attr.shape == x.shape, method
        assert torch.isfinite(attr).all(), method
        assert not attr.requires_grad
    assert model.training and all(m.training for m in model.modules())
    assert not model.head.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "head.weight")
    assert all(p.grad is None for p in model.parameters())
    assert nn.GELU not in captum_deep_lift.SUPPORTED_NON_LINEAR  # our DeepLift rule is scoped


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="integrated_gradients.*feature_ablation"):
        attribute(TinyTransformer(), torch.randn(1, 5, 3), torch.tensor([0]), "lime")


def test_gradients_work_inside_inference_mode():
    model = TinyTransformer()
    with torch.inference_mode():
        x = torch.randn(2, 6, 3)
        attr = attribute(model, x, torch.tensor([1, 0]), "integrated_gradients", n_steps=4)
    assert attr.shape == (2, 6, 3) and attr.abs().sum() > 0


def test_integrated_gradients_completeness_on_a_transformer():
    torch.manual_seed(1)
    model = TinyTransformer().eval()
    x = torch.randn(6, 10, 3) * 2
    target = torch.tensor([0, 1, 1, 0, 1, 0])
    attr = attribute(model, x, target, "integrated_gradients", n_steps=50)
    with torch.no_grad():
        rows = torch.arange(6)
        delta = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    total = attr.sum(dim=(1, 2))
    assert torch.all((total - delta).abs() <= 0.05 * delta.abs() + 1e-4), (total, delta)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "deeplift", "occlusion"])
def test_planted_window_gets_the_mass(method):
    torch.manual_seed(0)
    x = torch.randn(16, 30, 3)
    attr = attribute(PlantedWindow(), x, torch.ones(16, dtype=torch.long), method, window=2)
    mass = attr.abs()
    share = mass[:, planted_mask()].sum() / mass.sum()
    # 5 of 90 cells are planted; occlusion's 2-step windows spill half a window on each side
    assert share > (0.8 if method == "occlusion" else 0.99), share


def test_trained_model_attributions_find_the_planted_window():
    torch.manual_seed(0)
    x = torch.randn(2048 + 64, 30, 3)
    y = (x[:, 10:15, 1].sum(dim=1) > 0).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(90, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=3e-2)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[:2048]), y[:2048]).backward()
        optimizer.step()
    test_x, test_y = x[2048:], y[2048:]
    with torch.no_grad():
        assert (model(test_x).argmax(1) == test_y).float().mean() > 0.9
    for method in ("integrated_gradients", "saliency", "deeplift"):
        mass = attribute(model, test_x, test_y, method).abs()
        share = mass[:, planted_mask()].sum() / mass.sum()
        assert share > 0.6, (method, share)  # 5 of 90 cells carry ~0.78 of the mass


def test_deeplift_uses_a_rule_for_gelu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.GELU(), nn.Linear(8, 2))
    x = torch.randn(3, 4, 3) * 3
    target = torch.tensor([0, 1, 1])
    deeplift = attribute(model, x, target, "deeplift")
    # with only a Rescale rule between two linear layers, DeepLift sums exactly to the delta
    with torch.no_grad():
        rows = torch.arange(3)
        delta = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    torch.testing.assert_close(deeplift.sum(dim=(1, 2)), delta, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(deeplift, attribute(model, x, target, "input_x_gradient"))


def tiny_behavegpt() -> BehaveGPT:
    torch.manual_seed(0)
    config = BehaveGPTConfig(
        num_behaviors=12,
        num_locations=3,
        num_domains=2,
        context_length=8,
        d_model=16,
        num_layers=2,
        num_heads=2,
        dropout=0.1,
    )
    return BehaveGPT(config)


def padded_events(B: int = 3, L: int = 8) -> EventBatch:
    g = torch.Generator().manual_seed(0)
    events = EventBatch(
        behavior=torch.randint(2, 12, (B, L), generator=g),
        weekday=torch.randint(0, 7, (B, L), generator=g),
        time_slot=torch.randint(0, 48, (B, L), generator=g),
        location=torch.randint(0, 3, (B, L), generator=g),
        domain=torch.randint(0, 2, (B, L), generator=g),
    )
    events.behavior[0, 5:] = PAD_ID
    events.behavior[1, 7:] = PAD_ID
    return events


def test_event_forward_matches_model():
    model = tiny_behavegpt().eval()
    events = padded_events()
    position = torch.tensor([4, 6, 7])
    with torch.no_grad():
        expected = model(events).logits[torch.arange(3), position]  # (B, V)
        got = _EventEmbeddingForward(model)(*_field_embeddings(model, events), position)
    torch.testing.assert_close(got, expected)


def test_attribute_events_every_method():
    model = tiny_behavegpt().train()
    events = padded_events()
    position = torch.tensor([4, 6, 7])  # the last real event of each history
    target = torch.tensor([3, 4, 5])
    padding = events.behavior == PAD_ID
    for method in CAPTUM_METHODS:
        attr = attribute_events(model, events, position, target, method, n_steps=16)
        assert attr.shape == (3, 8, len(EVENT_FEATURES)), method
        assert torch.isfinite(attr).all(), method
        assert (attr[padding] == 0).all(), method
        assert attr[~padding].abs().sum() > 0, method
    assert model.training
    # fields are summed before the first layer: one gradient per event, shared by its fields
    saliency = attribute_events(model, events, position, target, "saliency")
    torch.testing.assert_close(saliency, saliency[..., :1].expand_as(saliency))


def test_attribute_events_integrated_gradients_completeness():
    model = tiny_behavegpt()
    events = padded_events()
    position = torch.tensor([4, 6, 7])
    target = torch.tensor([3, 4, 5])
    attr = attribute_events(model, events, position, target, "integrated_gradients")
    model.eval()
    forward = _EventEmbeddingForward(model)
    with torch.no_grad():
        inputs = _field_embeddings(model, events)
        rows = torch.arange(3)
        full = forward(*inputs, position)[rows, target]
        empty = forward(*(torch.zeros_like(t) for t in inputs), position)[rows, target]
    torch.testing.assert_close(attr.sum(dim=(1, 2)), full - empty, atol=2e-3, rtol=0.05)


def test_attribute_events_rejects_bad_positions():
    model = tiny_behavegpt()
    with pytest.raises(ValueError, match="position"):
        attribute_events(
            model, padded_events(), torch.tensor([0, 8, 1]), torch.tensor([2, 2, 2]), "saliency"
        )


def test_heatmap_is_a_png():
    torch.manual_seed(0)
    inputs = torch.randn(40, 2).numpy()
    values = torch.randn(40, 2).numpy()
    encoded = figure_png_base64(attribution_heatmap(values, inputs, "IG on a random series"))
    assert base64.b64decode(encoded).startswith(b"\x89PNG")
    positive = figure_png_base64(attribution_heatmap(abs(values), inputs, "saliency"))
    assert base64.b64decode(positive).startswith(b"\x89PNG")
