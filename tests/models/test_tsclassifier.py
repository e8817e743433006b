"""The time-series classifier: shapes, gradients, the keep mask, bundle round trip."""

import torch

from behave.inference.timeseries import load_classifier, save_classifier_bundle
from behave.models.tsclassifier import KeepToAttentionBias, TSClassifier, TSClassifierConfig


def _model(**kw) -> TSClassifier:
    torch.manual_seed(0)
    return TSClassifier(TSClassifierConfig(seq_len=20, channels=3, num_classes=4, d_model=16, **kw))


def test_shapes_and_every_parameter_gets_gradient():
    model = _model(num_layers=2)
    x = torch.randn(5, 20, 3)
    out = model.encode(x)
    assert out.logits.shape == (5, 4)
    assert out.embedding.shape == (5, 16)
    assert out.sequence.shape == (5, 20, 16)
    out.logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_dropped_steps_do_not_reach_the_output():
    model = _model().eval()
    x = torch.randn(2, 20, 3)
    keep = torch.ones(2, 20)
    keep[:, 5:12] = 0
    changed = x.clone()
    changed[:, 5:12] = 100 * torch.randn(2, 7, 3)  # only the dropped steps differ
    a, b = model.encode(x, keep).logits, model.encode(changed, keep).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, model.encode(changed).logits, atol=1e-3)


def test_all_ones_keep_equals_no_mask():
    model = _model().eval()
    x = torch.randn(3, 20, 3)
    assert torch.allclose(model.encode(x, torch.ones(3, 20)).logits, model(x), atol=1e-5)


def test_keep_mask_passes_gradient_straight_through():
    keep = torch.tensor([[1.0, 0.0, 1.0]], requires_grad=True)
    bias = KeepToAttentionBias.apply(keep)
    assert bias[0, 1] < -1e8 and bias[0, 0] == 0
    bias.sum().backward()
    assert torch.equal(keep.grad, torch.ones_like(keep))


def test_wrong_length_is_refused_with_the_expected_length():
    model = _model()
    try:
        model(torch.randn(1, 7, 3))
    except ValueError as err:
        assert "7 time steps" in str(err) and "20" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_bundle_round_trip(tmp_path):
    model = _model().eval()
    save_classifier_bundle(model, tmp_path, {"dataset": "toy", "class_names": list("abcd")})
    runner = load_classifier(tmp_path)
    x = torch.randn(4, 20, 3)
    assert torch.allclose(runner.model(x), model(x))
    frame = runner.predict_frame(x.numpy())
    assert list(frame.columns) == ["p_a", "p_b", "p_c", "p_d", "label"]
