import math

import numpy as np
import pytest
import torch

from behave.metrics import (
    RankingAccumulator,
    frequency_buckets,
    generation_divergences,
    js_divergence,
    tail_mask_from_counts,
)


def test_recall_macro_weighted_ndcg_on_a_hand_computed_case():
    # 3 types; scores rank types per row; targets 0, 0, 1, 2
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.1],  # target 0 rank 1
            [0.1, 0.9, 0.5],  # target 0 rank 3
            [0.2, 0.9, 0.1],  # target 1 rank 1
            [0.9, 0.5, 0.1],  # target 2 rank 3
        ]
    )
    targets = torch.tensor([0, 0, 1, 2])
    acc = RankingAccumulator(3, ks=(1, 2, 10), tail_mask=torch.tensor([False, True, True]))
    acc.update(scores[:2], targets[:2])  # two batches accumulate like one
    acc.update(scores[2:], targets[2:])
    m = acc.compute()
    assert m["recall_at_1_weighted"] == pytest.approx(2 / 4)
    # per type recall@1: type0 1/2, type1 1, type2 0 -> macro 0.5
    assert m["recall_at_1_macro"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["recall_at_2_weighted"] == pytest.approx(2 / 4)
    assert m["recall_at_10_weighted"] == 1.0
    assert m["recall_at_10_head"] == 1.0 and m["recall_at_10_tail"] == 1.0
    expected_ndcg = (1 + 1 / math.log2(4) + 1 + 1 / math.log2(4)) / 4
    assert m["ndcg_at_10"] == pytest.approx(expected_ndcg)


def test_tail_mask_is_rarest_80_percent_of_seen_types():
    counts = torch.tensor([0, 0, 100, 50, 10, 5, 1])  # 5 seen types (ids 2..6)
    mask = tail_mask_from_counts(counts)
    assert mask.tolist() == [False, False, False, True, True, True, True]


def test_frequency_buckets_split_types_evenly_by_rank():
    counts = torch.tensor([0, 0, 100, 50, 10, 5])
    assert frequency_buckets(counts, 2).tolist() == [1, 1, 0, 0, 1, 1]


def test_js_divergence_bounds():
    assert js_divergence([1, 0], [1, 0]) == pytest.approx(0.0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        js_divergence([0, 0], [1, 0])


def test_generation_divergences_zero_for_identical_sequences():
    seqs = [np.array([1, 2, 3, 2]), np.array([3, 3, 1])]
    d = generation_divergences(seqs, seqs, 4)
    assert d == {"histogram_jsd": pytest.approx(0.0), "transition_jsd": pytest.approx(0.0)}
    other = [np.array([0, 0, 0, 0])]
    assert generation_divergences(other, seqs, 4)["histogram_jsd"] == pytest.approx(1.0)
