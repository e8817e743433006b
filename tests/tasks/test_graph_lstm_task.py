"""The Graph-LSTM task's losses: the spectral clustering regularizer on hand-made clusters, and
the total loss going down on a fixed batch."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from behave.tasks.graph_lstm import TrajectoryForecastTask

INFO = {
    "hz": 5.0,
    "observe_steps": 4,
    "predict_steps": 10,  # 2 s: keyframes at frames 4 and 9
    "max_agents": 4,
    "behaviors": ["overspeeding", "neutral", "underspeeding"],
    "behavior_rule": {"radius_m": 20.0, "scale_m": 5.0, "threshold": 0.02},
    "graph": {"radius_m": 30.0, "scale_m": 10.0, "k_neighbours": 2, "eigenvectors": 2},
    "content_hash": "x",
}


def _task(**kw) -> TrajectoryForecastTask:
    torch.manual_seed(0)
    return TrajectoryForecastTask(data_info=INFO, hidden_size=8, dropout=0.0, **kw)


def test_peer_pull_pulls_toward_the_other_members_of_the_cluster_only():
    task = _task(regularizer="peer_pull")
    B, N, S = 1, 4, 2
    last = torch.zeros(B, N, 4, 2)
    future = torch.zeros(B, N, 10, 2)
    future[0, 0, :, 0] = 10.0  # agents 0 and 1 form a cluster; 0 truly moves 10 m, 1 moves 20 m
    future[0, 1, :, 0] = 20.0
    batch = {
        "observed": last,
        "future": future,
        "future_present": torch.ones(B, N, 10, dtype=torch.bool),
    }
    # predicted co-membership: {0, 1} together, 2 and 3 alone
    projection = torch.zeros(B, S, N, N)
    projection[:, :, :2, :2] = 0.5
    projection[:, :, 2, 2] = projection[:, :, 3, 3] = 1.0
    mean = torch.zeros(B, N, 10, 2)
    mean[0, 0, :, 0] = 20.0  # agent 0 predicted exactly at its peer's displacement
    mean[0, 1, :, 0] = 13.0  # agent 1 predicted 3 m from its peer's (10 m)
    mean[0, 2, :, 0] = 99.0  # a loner: never pulled, whatever it predicts
    out = SimpleNamespace(mean=mean)
    reg = task._cluster_regularizer(batch, out, projection)
    assert abs(reg.item() - 1.5) < 1e-3, reg  # (0 + 3) / 2 over the clustered agents


def test_loss_goes_down_on_a_fixed_batch():
    task = _task()
    g = torch.Generator().manual_seed(0)
    B, N = 4, 4
    speed = 20 + 5 * torch.rand(B, N, 1, 1, generator=g)
    t = torch.arange(14).view(1, 1, -1, 1) / INFO["hz"]
    lanes = torch.tensor([0.0, 4.0, 0.0, 4.0]).view(1, N, 1, 1)
    start = torch.arange(N).view(1, N, 1, 1) * 15.0
    xy = torch.cat([start + speed * t + 0.5 * t**2, lanes.expand(B, N, 14, 1)], -1)  # accelerating
    from behave.ops.graphs import geometric_adjacency, projection, spectral_embedding

    present = torch.ones(B, N, dtype=torch.bool)
    keys = xy[:, :, [8, 13]].transpose(1, 2)  # (B, S, N, 2)
    adj = geometric_adjacency(keys, present[:, None].expand(B, 2, N), radius=30.0, scale=10.0, k=2)
    vectors, _ = spectral_embedding(adj, present[:, None].expand(B, 2, N), 2)
    batch = {
        "observed": xy[:, :, :4],
        "present": present,
        "future": xy[:, :, 4:],
        "future_present": torch.ones(B, N, 10, dtype=torch.bool),
        "behavior": torch.randint(0, 3, (B, N), generator=g),
        "future_projection": projection(vectors),
    }
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = task._losses(batch, task(batch))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses[::10]


def test_relative_regularizer_is_zero_at_the_truth_and_ignores_a_shared_error():
    task = _task(regularizer="relative")
    B, N, S = 1, 4, 2
    future = torch.zeros(B, N, 10, 2)
    future[0, 0, :, 0] = 10.0  # agents 0 and 1 form a cluster that moves differently
    future[0, 1, :, 0] = 20.0
    batch = {
        "observed": torch.zeros(B, N, 4, 2),
        "future": future,
        "future_present": torch.ones(B, N, 10, dtype=torch.bool),
    }
    projection = torch.zeros(B, S, N, N)
    projection[:, :, :2, :2] = 0.5
    projection[:, :, 2, 2] = projection[:, :, 3, 3] = 1.0

    def reg(mean):
        return task._cluster_regularizer(batch, SimpleNamespace(mean=mean), projection).item()

    assert reg(future.clone()) < 1e-3  # unlike the peer pull (10 m here), no bias at the truth
    shared = future.clone()
    shared[0, :2, :, 0] += 4.0  # the whole cluster 4 m ahead: left to the likelihood
    assert reg(shared) < 1e-3
    apart = future.clone()
    apart[0, 0, :, 0] += 3.0  # agent 0 alone 3 m off: e_0 - e_1 = 3, e_1 - e_0 = -3
    assert abs(reg(apart) - 3.0) < 1e-3


def test_an_unknown_regularizer_is_refused_with_the_choices():
    import pytest

    from behave.errors import ConfigError

    with pytest.raises(ConfigError, match="regularizer must be one of.*peer_pull.*relative"):
        _task(regularizer="kmeans")
