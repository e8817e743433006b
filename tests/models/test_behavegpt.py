import torch

from behave.data.vocab import Vocabulary
from behave.inference.behavegpt import BehaveGPTPredictor, HistoryEvent, save_bundle
from behave.models.behavegpt import PAD_ID, BehaveGPT, BehaveGPTConfig, EventBatch


def tiny_config(**kw) -> BehaveGPTConfig:
    return BehaveGPTConfig(
        num_behaviors=12,
        num_locations=3,
        num_domains=2,
        context_length=8,
        d_model=16,
        num_layers=2,
        num_heads=2,
        dropout=0.0,
        **kw,
    )


def random_batch(config: BehaveGPTConfig, B: int = 3, L: int = 8, seed: int = 0) -> EventBatch:
    g = torch.Generator().manual_seed(seed)
    return EventBatch(
        behavior=torch.randint(2, config.num_behaviors, (B, L), generator=g),
        weekday=torch.randint(0, 7, (B, L), generator=g),
        time_slot=torch.randint(0, 48, (B, L), generator=g),
        location=torch.randint(0, config.num_locations, (B, L), generator=g),
        domain=torch.randint(0, config.num_domains, (B, L), generator=g),
    )


def test_output_shapes_and_hidden_states():
    config = tiny_config()
    model = BehaveGPT(config)
    out = model(random_batch(config), output_hidden_states=True)
    assert out.logits.shape == (3, 8, 12)
    assert len(out.hidden_states) == config.num_layers + 1
    assert all(h.shape == (3, 8, 16) for h in out.hidden_states)


def test_every_parameter_receives_gradient():
    config = tiny_config()
    model = BehaveGPT(config)
    batch = random_batch(config)
    loss = torch.nn.functional.cross_entropy(
        model(batch).logits.flatten(0, 1), batch.behavior.flatten()
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_causal_and_right_padding_do_not_change_earlier_positions():
    config = tiny_config()
    model = BehaveGPT(config).eval()
    batch = random_batch(config, B=1)
    full = model(batch).logits
    padded = EventBatch(**{k: v.clone() for k, v in vars(batch).items()})
    padded.behavior[:, 5:] = PAD_ID
    assert torch.allclose(model(padded).logits[:, :5], full[:, :5], atol=1e-6)


def test_too_long_sequence_is_a_clear_error():
    config = tiny_config()
    model = BehaveGPT(config)
    try:
        model(random_batch(config, L=9))
    except ValueError as err:
        assert "context_length 8" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_bundle_round_trip_and_seeded_generation(tmp_path):
    config = tiny_config()
    model = BehaveGPT(config).eval()
    vocab = Vocabulary(
        ["<pad>", "<unk>", *[f"b{i}" for i in range(10)]],
        ["<unk>", "home", "work"],
        ["<unk>", "app"],
    )
    save_bundle(model, vocab, tmp_path)
    predictor = BehaveGPTPredictor.from_dir(tmp_path)
    batch = random_batch(config)
    assert torch.equal(predictor.model(batch).logits, model(batch).logits)
    history = [HistoryEvent("b3"), HistoryEvent("b4", location="home"), HistoryEvent("b1")]
    first = predictor.generate(history, num_steps=6, temperature=0.8, top_k=5, seed=7)
    again = predictor.generate(history, num_steps=6, temperature=0.8, top_k=5, seed=7)
    assert first == again and len(first["behaviors"]) == 6
    top = predictor.next_behavior([history, history[:1]], top_k=4)
    assert [len(r["behaviors"]) for r in top] == [4, 4]
    assert all("<pad>" not in r["behaviors"] and "<unk>" not in r["behaviors"] for r in top)
    long = predictor.next_behavior([[HistoryEvent("b2")] * 11], top_k=3)[0]
    assert long["events_used"] == 8 and long["truncated_events"] == 3
