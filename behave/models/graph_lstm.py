"""Two-stream graph-LSTM for road-agent trajectory and behavior forecasting.

Paper: Chandra, Guan, Panuganti, Mittal, Bhattacharya, Bera, Manocha, "Forecasting Trajectory and
Behavior of Road-Agents Using Spectral Clustering in Graph-LSTMs", RA-L 2020,
https://arxiv.org/abs/1912.01118. Official code (unmaintained):
https://github.com/rohanchandra30/Spectral-Trajectory-and-Behavior-Prediction

- **Stream 1** — an LSTM encoder-decoder per agent over its own observed track; the decoder
  emits a bivariate Gaussian (mean, two scales, correlation) per future frame.
- **Stream 2** — a graph-LSTM over the scene's weighted dynamic geometric graphs: at each
  observed frame every agent's LSTM cell reads its own state and the degree-normalized,
  edge-weighted (exp(-d / scale)) sum of messages from its neighbours, each built from the
  neighbour's hidden state and its position and velocity relative to the receiver; rolled
  forward, it predicts the
  spectral embedding (K eigenvector rows per agent) of the graph at each future second, and the
  behavior head classifies each agent's future behavior.
- The **spectral clustering regularizer** (in the task) ties stream-1 predictions to stream-2's
  predicted cluster structure.

Where we differ and why:
- The official code replaces the predicted mean with the target inside its likelihood (the loss
  then only trains the scales) and flips negative losses; ours is the exact bivariate-normal
  negative log-likelihood (:func:`bivariate_nll`, tested against torch.distributions).
- Eigenvectors are ambiguous in sign and order, so stream 2 is trained on the projection
  ``Z Z^T`` of its predicted embedding Z against the true ``U U^T`` (invariant to both) rather
  than on raw eigenvectors. Its inputs are the graphs themselves (message passing with their
  weights, plus each agent's weighted degree), not eigenvectors, for the same reason.
- Stream 1's decoder also reads stream 2's hidden state (``graph_context``), so the full model
  sees its neighbours at inference, not only through the training-time regularizer; with
  ``graph_stream: false`` the model is the plain LSTM encoder-decoder baseline.
- The behavior head also reads the labelling rule itself (the centrality slope θ') computed
  on the observed tracks and on the model's own forecast of every agent: the labels are that
  rule on the true future, and a head without it stayed below the rule applied to a
  constant-velocity forecast (accuracy 0.65 vs 0.71-0.76 on 40 scenes).
- Velocities are finite differences of the observed positions (computed in the model), so
  any (frame, agent, x, y) source gives the same input.
- The decoder predicts a residual on top of constant-velocity extrapolation (the network starts
  from the physics baseline instead of learning it).

Axis letters: B windows, N agents (padded), To observed frames, Tp predicted frames, S future
seconds with a predicted graph, K eigenvectors, H hidden size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from behave.ops.graphs import geometric_adjacency

__all__ = [
    "GraphLSTMConfig",
    "GraphLSTM",
    "GraphLSTMOutput",
    "bivariate_nll",
    "finite_difference_velocities",
]

_MIN_SCALE_M = 0.05  # a floor on σ keeps the likelihood finite on perfectly straight tracks
_MAX_CORRELATION = 0.95
_RULE_FEATURES = 3  # θ' observed, θ' forecast, θ now (see GraphLSTM._rule_features)


@dataclass
class GraphLSTMConfig:
    observe_steps: int = 20  # To: observed frames (2 s at 10 Hz)
    predict_steps: int = 50  # Tp: predicted frames (5 s at 10 Hz)
    hz: float = 10.0  # frames per second
    hidden_size: int = 64  # H
    graph_stream: bool = True  # stream 2; False = the plain LSTM encoder-decoder
    graph_context: bool = True  # stream 1's decoder reads stream 2's state
    eigenvectors: int = 4  # K: spectral embedding size predicted per agent
    future_graphs: int = 5  # S: future seconds with a predicted graph
    radius_m: float = 30.0  # DGG: edges between agents closer than this
    scale_m: float = 10.0  # DGG: edge weight exp(-d / scale_m)
    k_neighbours: int = 4  # DGG: at most this many nearest neighbours (symmetrized)
    num_behaviors: int = 3  # overspeeding, neutral, underspeeding
    # the labelling rule's graph (behave/data/traffic_behavior.py): the behavior head also reads
    # the rule's centrality slope θ' on the observed tracks and on the forecast itself
    behavior_radius_m: float = 20.0
    behavior_scale_m: float = 5.0
    behavior_threshold: float = 0.02  # θ' per second; features are divided by it
    rule_features: bool = True
    position_scale: float = 10.0  # metres per network unit
    velocity_scale: float = 30.0  # m/s per network unit
    dropout: float = 0.1


@dataclass
class GraphLSTMOutput:
    mean: torch.Tensor  # (B, N, Tp, 2) metres, window coordinates
    scale: torch.Tensor  # (B, N, Tp, 2) σx, σy in metres
    correlation: torch.Tensor  # (B, N, Tp) ρ
    behavior_logits: torch.Tensor  # (B, N, num_behaviors)
    embedding: torch.Tensor | None  # (B, N, S, K) predicted spectral embedding; None w/o stream 2


def bivariate_nll(
    target: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, correlation: torch.Tensor
) -> torch.Tensor:
    """Exact negative log-likelihood of ``target`` (..., 2) under N(mean, Σ(scale, ρ)), (...)."""
    z = (target - mean) / scale  # (..., 2)
    one_minus = 1 - correlation.pow(2)
    quad = (z[..., 0].pow(2) + z[..., 1].pow(2) - 2 * correlation * z[..., 0] * z[..., 1]) / (
        2 * one_minus
    )
    return math.log(2 * math.pi) + scale.log().sum(-1) + 0.5 * one_minus.log() + quad


def finite_difference_velocities(positions: torch.Tensor, hz: float) -> torch.Tensor:
    """Velocities (..., T, 2) from positions (..., T, 2): backward differences, the first frame
    takes the second's. Computed from positions here (not read from the data) so that generated,
    imported and served tracks give the model the same input."""
    v = torch.diff(positions, dim=-2) * hz  # (..., T - 1, 2)
    return torch.cat([v[..., :1, :], v], dim=-2)


def _present_rows(run, rows: torch.Tensor, present: torch.Tensor, *shape: int) -> torch.Tensor:
    """``run`` on the rows of present agents only, zeros for padding: (B*N, ...) -> (B*N,
    *shape). Windows are padded to the largest scene (half the rows on generated highways), and
    the per-agent LSTMs are most of the model's time, so padding is not fed through them."""
    keep = present.flatten()  # (B*N,)
    out = rows.new_zeros(len(keep), *shape)
    if keep.any():
        out[keep] = run(rows[keep])
    return out


class GraphLSTM(nn.Module):
    def __init__(self, config: GraphLSTMConfig) -> None:
        super().__init__()
        self.config = c = config
        H = c.hidden_size
        # stream 1: own track -> H; features per frame: Δposition, velocity, position - last
        self.encoder = nn.LSTM(6, H, batch_first=True)
        decoder_in = H + (H if c.graph_stream and c.graph_context else 0) + 1
        self.decoder = nn.LSTM(decoder_in, H, batch_first=True)
        self.trajectory_head = nn.Linear(H, 5)  # residual x, y; σx, σy (pre-softplus); ρ (pre-tanh)
        self.dropout = nn.Dropout(c.dropout)
        if c.graph_stream:
            # stream 2: node features (position, velocity, weighted degree) + neighbour message;
            # a message is the neighbour's state plus where it is and how fast it closes in,
            # relative to the receiver (what decides whether an agent gains neighbours)
            self.message_state = nn.Linear(H, H)
            self.message_relative = nn.Linear(4, H)
            self.graph_cell = nn.LSTMCell(5 + H, H)
            self.future_cell = nn.LSTMCell(H, H)
            self.embedding_head = nn.Linear(H, c.eigenvectors)
        behavior_in = H + (H if c.graph_stream else 0) + (_RULE_FEATURES if c.rule_features else 0)
        self.behavior_head = nn.Sequential(
            nn.Linear(behavior_in, H),
            nn.GELU(),
            nn.Dropout(c.dropout),
            nn.Linear(H, c.num_behaviors),
        )

    def forward(self, observed: torch.Tensor, present: torch.Tensor) -> GraphLSTMOutput:
        """observed (B, N, To, 2) positions in metres at ``hz``; present (B, N) bool."""
        c = self.config
        velocities = finite_difference_velocities(observed, c.hz)  # (B, N, To, 2)
        own = self._encode_tracks(observed, velocities, present)  # (B, N, H)
        graph = self._graph_stream(observed, velocities, present) if c.graph_stream else None
        context = own if graph is None or not c.graph_context else torch.cat([own, graph[0]], -1)
        last, velocity = observed[:, :, -1], velocities[:, :, -1]
        mean, scale, correlation = self._decode(context, last, velocity, present)
        features = [own] if graph is None else [own, graph[0]]
        if c.rule_features:
            features.append(self._rule_features(observed, mean.detach(), present))
        return GraphLSTMOutput(
            mean=mean,
            scale=scale,
            correlation=correlation,
            behavior_logits=self.behavior_head(torch.cat(features, -1)),
            embedding=None if graph is None else graph[1],
        )

    def _decode(
        self,
        context: torch.Tensor,
        last: torch.Tensor,
        velocity: torch.Tensor,
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-agent context (B, N, C), last position and velocity (B, N, 2) -> the Gaussian
        of each future frame: mean (B, N, Tp, 2) = constant velocity + residual, σ, ρ."""
        c = self.config
        B, N, _ = context.shape
        steps = torch.arange(1, c.predict_steps + 1, device=context.device)  # (Tp,)
        dec_in = torch.cat(
            [
                context.unsqueeze(2).expand(B, N, c.predict_steps, context.shape[-1]),
                (steps / c.predict_steps).view(1, 1, -1, 1).expand(B, N, -1, 1),
            ],
            -1,
        )  # (B, N, Tp, C + 1)
        raw = _present_rows(
            lambda rows: self.trajectory_head(self.dropout(self.decoder(rows)[0])),
            dec_in.flatten(0, 1),
            present,
            c.predict_steps,
            5,
        ).view(B, N, c.predict_steps, 5)
        seconds = (steps / c.hz).view(1, 1, -1, 1)  # (1, 1, Tp, 1)
        constant_velocity = last.unsqueeze(2) + velocity.unsqueeze(2) * seconds
        mean = constant_velocity + raw[..., :2] * c.position_scale
        scale = F.softplus(raw[..., 2:4]) * c.position_scale * 0.1 + _MIN_SCALE_M
        correlation = torch.tanh(raw[..., 4]) * _MAX_CORRELATION
        return mean, scale, correlation

    def _rule_features(
        self, observed: torch.Tensor, forecast: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """The labelling rule's centrality slope θ' (per second, over the threshold) on the
        observed frames and on the forecast means, and θ now: (B, N, 3). The labels are this
        rule applied to the true future, so the forecast's θ' is the model's own best guess of
        it (no gradient: the classifier must not bend the trajectories)."""
        c = self.config

        def theta(positions: torch.Tensor) -> torch.Tensor:  # (B, N, T, 2) -> (B, N, T)
            T = positions.shape[2]
            adjacency = geometric_adjacency(
                positions.transpose(1, 2),
                present.unsqueeze(1).expand(-1, T, -1),
                radius=c.behavior_radius_m,
                scale=c.behavior_scale_m,
            )  # (B, T, N, N)
            return adjacency.sum(-1).transpose(1, 2)

        past = theta(observed)  # (B, N, To)
        future = theta(torch.cat([observed[:, :, -1:], forecast], 2))  # (B, N, Tp + 1)
        per_second = c.hz / c.behavior_threshold
        return torch.stack(
            [
                (past[..., -1] - past[..., 0]) / max(past.shape[-1] - 1, 1) * per_second,
                (future[..., -1] - future[..., 0]) / max(future.shape[-1] - 1, 1) * per_second,
                past[..., -1],
            ],
            -1,
        ) * present.unsqueeze(-1)

    def _encode_tracks(
        self, observed: torch.Tensor, velocities: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        c = self.config
        B, N, To, _ = observed.shape
        delta = torch.diff(observed, dim=2, prepend=observed[:, :, :1])  # (B, N, To, 2)
        relative = observed - observed[:, :, -1:]  # (B, N, To, 2)
        x = torch.cat(
            [delta / c.position_scale, velocities / c.velocity_scale, relative / c.position_scale],
            -1,
        )
        return _present_rows(
            lambda rows: self.encoder(rows)[1][0][-1], x.flatten(0, 1), present, c.hidden_size
        ).view(B, N, -1)

    def _graph_stream(
        self, observed: torch.Tensor, velocities: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph-LSTM over the observed DGGs -> (state (B, N, H), embedding (B, N, S, K))."""
        c = self.config
        B, N, To, _ = observed.shape
        H = c.hidden_size
        adjacency = geometric_adjacency(
            observed.transpose(1, 2),  # (B, To, N, 2)
            present.unsqueeze(1).expand(B, To, N),
            radius=c.radius_m,
            scale=c.scale_m,
            k=c.k_neighbours,
        )  # (B, To, N, N)
        degree = adjacency.sum(-1, keepdim=True)  # (B, To, N, 1) weighted-degree centrality
        normalized = adjacency / degree.clamp_min(1e-6)  # mean over neighbours, by weight
        weight = present.to(observed.dtype)[:, :, None, None]  # (B, N, 1, 1)
        centre = (observed[:, :, -1:] * weight).sum(1, keepdim=True) / weight.sum(
            1, keepdim=True
        ).clamp_min(1)
        centre_rel = (observed - centre) * weight  # (B, N, To, 2); padding reads zeros
        h = observed.new_zeros(B * N, H)
        cell = observed.new_zeros(B * N, H)
        # Messages travel along the strongest edges only: a symmetrized k-NN graph has about
        # 2k edges per agent, so gathering the top 2k costs O(N k) instead of O(N^2).
        K = min(N, 2 * c.k_neighbours)
        edge_weight, neighbour = normalized.topk(K, dim=-1)  # (B, To, N, K)
        state = torch.cat([observed, velocities], -1)  # (B, N, To, 4)
        for t in range(To):
            nb = neighbour[:, t]  # (B, N, K)
            nb_state = torch.gather(
                state[:, :, t].unsqueeze(1).expand(B, N, N, 4),
                2,
                nb.unsqueeze(-1).expand(B, N, K, 4),
            )  # (B, N, K, 4)
            rel = nb_state - state[:, :, t].unsqueeze(2)  # j - i: (B, N, K, 4)
            rel = torch.cat([rel[..., :2] / c.position_scale, rel[..., 2:] / c.velocity_scale], -1)
            nb_h = torch.gather(
                self.message_state(h.view(B, N, H)).unsqueeze(1).expand(B, N, N, H),
                2,
                nb.unsqueeze(-1).expand(B, N, K, H),
            )  # (B, N, K, H)
            edge = F.gelu(nb_h + self.message_relative(rel))
            message = (edge_weight[:, t].unsqueeze(-1) * edge).sum(2)  # (B, N, H)
            node = torch.cat(
                [
                    centre_rel[:, :, t] / (c.position_scale * 5),
                    velocities[:, :, t] / c.velocity_scale,
                    degree[:, t],
                ],
                -1,
            )  # (B, N, 5)
            h, cell = self.graph_cell(torch.cat([node, message], -1).flatten(0, 1), (h, cell))
        state = h.view(B, N, H) * present.unsqueeze(-1)
        # roll forward one second at a time, passing messages on the last observed graph
        embeddings = []
        fh, fc = h, cell
        for _ in range(c.future_graphs):
            message = normalized[:, -1] @ fh.view(B, N, H)
            fh, fc = self.future_cell(message.flatten(0, 1), (fh, fc))
            embeddings.append(self.embedding_head(fh).view(B, N, -1))
        embedding = torch.stack(embeddings, 2) * present[:, :, None, None]  # (B, N, S, K)
        return state, embedding
