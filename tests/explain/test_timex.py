"""TimeX: binary masks in forward with gradient in backward; frozen black box; losses; bundle."""

import pytest
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


def test_without_attention_mask_the_explainer_reads_the_baseline_filled_full_series():
    # hiding dropped steps from attention and the mean pool changes what the black box computes
    # from the kept ones (a mean over fewer steps forgets how many spikes there were), so even
    # the ground-truth mask may not reproduce its prediction; without it, a masked series is the
    # same series with the dropped cells at the baseline, every step read
    torch.manual_seed(0)
    bb = TSClassifierConfig(seq_len=16, channels=1, num_classes=3, d_model=16)
    model = TimeX(TimeXConfig(blackbox=bb, decoder_dim=8, num_landmarks=4, attention_mask=False))
    model.eval().baseline.fill_(0.25)
    x = torch.randn(3, 16, 1)
    mask = (torch.rand(3, 16, 1) > 0.5).float()
    filled = x * mask + 0.25 * (1 - mask)
    read = model.explain_masked(x, mask)
    assert torch.allclose(read.logits, model.blackbox(filled), atol=1e-5)
    hidden = model.blackbox.encode(filled, mask[..., 0]).logits  # the published reading
    assert not torch.allclose(read.logits, hidden, atol=1e-3)
    # the straight-through mask still passes gradient to every cell through its value
    soft = mask.clone().requires_grad_(True)
    model.explain_masked(x, soft).logits.sum().backward()
    assert (soft.grad.abs() > 0).float().mean() > 0.9


def test_noise_baseline_is_a_fresh_draw_around_the_channel_mean_and_round_trips(tmp_path):
    # a constant baseline is a low-variance segment, LowVarDetect's class evidence
    torch.manual_seed(0)
    bb = TSClassifierConfig(seq_len=16, channels=2, num_classes=3, d_model=16)
    model = TimeX(TimeXConfig(blackbox=bb, decoder_dim=8, num_landmarks=4, baseline_noise=True))
    model.eval().baseline.copy_(torch.tensor([1.0, -1.0]))
    model.baseline_std.copy_(torch.tensor([0.5, 2.0]))
    seen = []
    model.explainer.encode = lambda x, keep=None: seen.append(x)
    model.explain_masked(torch.randn(256, 16, 2), torch.zeros(256, 16, 2))
    filled = seen[0].reshape(-1, 2)
    assert torch.allclose(filled.mean(0), torch.tensor([1.0, -1.0]), atol=0.1)
    assert torch.allclose(filled.std(0), torch.tensor([0.5, 2.0]), rtol=0.05)
    del model.explainer.encode
    save_timex_bundle(model, tmp_path, {"dataset": "toy", "class_names": ["a", "b", "c"]})
    assert torch.equal(load_timex(tmp_path).model.baseline_std, model.baseline_std)


def test_local_kernel_lets_a_mask_logit_read_its_neighbours_and_round_trips(tmp_path):
    with pytest.raises(ValueError, match="local_kernel must be 0 or odd"):
        TimeXConfig(
            blackbox=TSClassifierConfig(seq_len=16, channels=1, num_classes=3), local_kernel=4
        )
    torch.manual_seed(0)
    bb = TSClassifierConfig(seq_len=16, channels=2, num_classes=3, d_model=16)
    model = TimeX(TimeXConfig(blackbox=bb, decoder_dim=8, num_landmarks=4, local_kernel=5)).eval()
    # the local block sees exactly the neighbourhood (two kernel-5 layers: steps t-4..t+4);
    # the decoder's attention after it mixes everything anyway, so it is checked on its own
    q = torch.randn(1, 8, 16)  # (B, decoder_dim, T)
    bumped = q.clone()
    bumped[0, :, 8] += 3.0
    local = model.mask_generator.local
    delta = (local(bumped) - local(q)).abs().sum(1)[0]  # (16,)
    assert delta[4:13].min() > 0 and delta[:4].max() == 0 and delta[13:].max() == 0
    x = torch.randn(1, 16, 2)
    with torch.no_grad():  # and the generator uses it: zeroing it changes the logits
        before = model(x, sample_mask=False).mask_logits
        local[-1].weight.zero_()
        local[-1].bias.zero_()
        assert not torch.allclose(before, model(x, sample_mask=False).mask_logits)
    save_timex_bundle(model, tmp_path, {"dataset": "toy", "class_names": ["a", "b", "c"]})
    result = load_timex(tmp_path).explain(x.numpy())
    assert (result["mask"] == model(x, sample_mask=False).mask.detach().numpy()).all()
