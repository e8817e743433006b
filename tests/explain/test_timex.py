"""TimeX: binary masks in forward with gradient in backward; frozen black box; losses; bundle."""

import torch

from behave.explain.timex import TimeX, TimeXConfig, binary_gumbel_mask
from behave.inference.timeseries import load_timex, save_timex_bundle
from behave.models.tsclassifier import TSClassifierConfig
from behave.tasks.timex import timex_losses


def _timex(channels=1) -> TimeX:
    torch.manual_seed(0)
    bb = TSClassifierConfig(seq_len=16, channels=channels, num_classes=3, d_model=16)
    return TimeX(TimeXConfig(blackbox=bb, decoder_dim=8, num_landmarks=4))


def test_masks_are_binary_forward_and_carry_gradient_backward():
    logits = torch.randn(4, 16, 2, requires_grad=True)
    for sample in (True, False):
        mask = binary_gumbel_mask(logits, tau=1.0, sample=sample)
        assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
        (mask * torch.arange(16.0)[None, :, None]).sum().backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        logits.grad = None
    # without noise the mask is the thresholded probability
    assert torch.equal(binary_gumbel_mask(logits, 1.0, False), (logits > 0).float())


def test_forward_shapes_and_only_the_explainer_side_learns():
    for channels in (1, 3):
        model = _timex(channels).train()
        out = model(torch.randn(5, 16, channels))
        assert out.mask.shape == out.mask_logits.shape == (5, 16, channels)
        assert out.logits.shape == out.blackbox_logits.shape == (5, 3)
        assert out.landmark.shape == (5,)
        losses = timex_losses(out, mask_prior=0.2)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert all(p.grad is None for p in model.blackbox.parameters())
        assert model.mask_generator.out[-1].weight.grad.abs().sum() > 0
        assert model.landmarks.grad.abs().sum() > 0
        assert not model.blackbox.training  # frozen black box stays in eval mode


def test_explainer_starts_as_a_copy_of_the_black_box():
    model = _timex().eval()
    x = torch.randn(3, 16, 1)
    ones = torch.ones(3, 16, 1)
    assert torch.allclose(model.explain_masked(x, ones).logits, model.blackbox(x), atol=1e-5)


def test_sparsity_prior_is_zero_at_the_prior_and_positive_elsewhere():
    model = _timex().eval()
    out = model(torch.randn(2, 16, 1))
    at_prior = torch.full_like(out.mask_logits, torch.logit(torch.tensor(0.3)).item())
    out.mask_logits = at_prior
    assert timex_losses(out, 0.3)["sparsity"].abs() < 1e-5
    assert timex_losses(out, 0.1)["sparsity"] > 0.01


def test_landmarks_initialise_on_distinct_embeddings():
    model = _timex()
    z = torch.eye(6, 16)
    model.init_landmarks(z)
    assert torch.linalg.matrix_rank(model.landmarks.detach()) == 4


def test_bundle_round_trip_gives_the_same_explanation(tmp_path):
    model = _timex(2).eval()
    model.baseline.fill_(0.5)
    save_timex_bundle(model, tmp_path, {"dataset": "toy", "class_names": ["a", "b", "c"]})
    runner = load_timex(tmp_path)
    x = torch.randn(4, 16, 2)
    result = runner.explain(x.numpy())
    expected = model(x, sample_mask=False)
    assert torch.allclose(torch.from_numpy(result["attributions"]), expected.saliency, atol=1e-6)
    assert (result["mask"] == expected.mask.detach().numpy()).all()
