"""The dynamic geometric graph on hand-made scenes: edges, weights, Laplacian, spectrum."""

from __future__ import annotations

import math

import torch

from behave.ops.graphs import (
    geometric_adjacency,
    laplacian,
    projection,
    spectral_embedding,
    weighted_degree,
)

# two groups of two agents, 100 m apart; inside a group the agents are 3 m and 4 m apart
SCENE = torch.tensor([[0.0, 0.0], [3.0, 0.0], [100.0, 0.0], [100.0, 4.0]])
ALL = torch.ones(4, dtype=torch.bool)


def test_edges_join_close_agents_with_exp_distance_weights():
    A = geometric_adjacency(SCENE, ALL, radius=10.0, scale=2.0)
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 0] = math.exp(-3 / 2)
    expected[2, 3] = expected[3, 2] = math.exp(-4 / 2)
    torch.testing.assert_close(A, expected)


def test_absent_agents_have_no_edges_and_radius_cuts():
    present = torch.tensor([True, False, True, True])
    A = geometric_adjacency(SCENE, present, radius=3.5, scale=1.0)
    assert A[0].sum() == 0 and A[:, 1].sum() == 0  # agent 1 absent, so 0 is alone
    assert A[2, 3] == 0  # 4 m > radius 3.5 m


def test_k_nearest_neighbours_are_symmetrized():
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.5, 0.0], [4.5, 0.0]])
    A = geometric_adjacency(line, ALL, radius=100.0, k=1)
    edges = {(i, j) for i, j in torch.nonzero(A).tolist() if i < j}
    # nearest: 0->1, 1->0, 2->1, 3->2; symmetrized
    assert edges == {(0, 1), (1, 2), (2, 3)}
    torch.testing.assert_close(A, A.T)


def test_laplacian_rows_sum_to_zero_and_degree_is_centrality():
    A = geometric_adjacency(SCENE, ALL, radius=10.0, scale=2.0)
    L = laplacian(A)
    torch.testing.assert_close(L.sum(-1), torch.zeros(4))
    torch.testing.assert_close(L.diagonal(), weighted_degree(A))


def test_spectrum_of_two_components_has_two_zero_eigenvalues_and_block_projection():
    A = geometric_adjacency(SCENE, ALL, radius=10.0, scale=2.0)
    vectors, values = spectral_embedding(A, ALL, k=2)
    torch.testing.assert_close(values, torch.zeros(2), atol=1e-6, rtol=0)
    # the null space's projection is the "same component" indicator, each block 1/size
    expected = torch.tensor(
        [[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]]
    )
    torch.testing.assert_close(projection(vectors), expected, atol=1e-6, rtol=0)


def test_absent_agents_stay_out_of_the_smallest_eigenvectors():
    present = torch.tensor([True, True, True, False])
    A = geometric_adjacency(SCENE, present, radius=10.0, scale=2.0)
    vectors, values = spectral_embedding(A, present, k=2)
    assert vectors[3].abs().sum() == 0
    assert values.max() < 1.0  # both from real agents: {0, 1} and the lone agent 2


def test_batched_frames_match_one_at_a_time():
    frames = torch.stack([SCENE, SCENE * 0.5, SCENE + 1.0])  # (F, N, 2)
    present = torch.ones(3, 4, dtype=torch.bool)
    batched = geometric_adjacency(frames, present, radius=10.0, scale=2.0, k=2)
    for f in range(3):
        single = geometric_adjacency(frames[f], present[f], radius=10.0, scale=2.0, k=2)
        torch.testing.assert_close(batched[f], single)
