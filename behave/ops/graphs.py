"""Weighted dynamic geometric graphs (DGG) of road agents and their spectra, batched in torch.

Chandra et al. (RA-L 2020, https://arxiv.org/abs/1912.01118) represent each frame of a scene as a
graph whose nodes are agents and whose edges join agents that are close, weighted exp(-d).
Here, per frame:

    A_ij = exp(-d_ij / scale)   if i != j, both agents present, d_ij < radius
                                and (when k is set) j is among i's k nearest or i among j's
    L    = D - A                (unnormalized Laplacian, D = diag(row sums of A))

``spectral_embedding`` returns the eigenvectors of the k smallest eigenvalues of L — the
spectral-clustering coordinates: agents in one connected group share the same values on the
null-space vectors. Eigenvectors are defined only up to sign (and rotation inside repeated
eigenvalues), so models compare *projections* ``U U^T`` (N x N, invariant to both) rather than U.

Absent (padded) agents get no edges and a large diagonal entry in L, which moves their
eigenvectors to the top of the spectrum, out of the k smallest.

Where we differ from the official code: it keeps one eigenvector from scipy's ``eigs`` (largest
magnitude, unordered), builds its kNN adjacency without symmetrizing and without resetting it
between frames; we use a symmetric graph per frame and the k smallest eigenvectors, as the
paper describes.

Axis letters: F frames, N agents, K eigenvectors.
"""

from __future__ import annotations

import torch

__all__ = [
    "pairwise_distances",
    "geometric_adjacency",
    "laplacian",
    "spectral_embedding",
    "projection",
    "weighted_degree",
]

_ABSENT_DIAGONAL = 1e3  # larger than any degree of a real agent (at most N * 1)


def pairwise_distances(positions: torch.Tensor) -> torch.Tensor:
    """(..., N, 2) -> (..., N, N) Euclidean distances."""
    diff = positions.unsqueeze(-2) - positions.unsqueeze(-3)  # (..., N, N, 2)
    return diff.pow(2).sum(-1).clamp_min(0).sqrt()


def geometric_adjacency(
    positions: torch.Tensor,
    present: torch.Tensor,
    *,
    radius: float,
    scale: float = 1.0,
    k: int | None = None,
) -> torch.Tensor:
    """Symmetric weighted adjacency (..., N, N) of the DGG; see the module docstring."""
    d = pairwise_distances(positions)  # (..., N, N)
    n = d.shape[-1]
    pair = present.unsqueeze(-1) & present.unsqueeze(-2)  # (..., N, N)
    eye = torch.eye(n, dtype=torch.bool, device=d.device)
    edge = pair & ~eye & (d < radius)
    if k is not None and k < n - 1:
        far = torch.where(pair & ~eye, d, torch.full_like(d, float("inf")))
        kth = far.topk(k, dim=-1, largest=False).values[..., -1:]  # (..., N, 1)
        nearest = far <= kth
        edge = edge & (nearest | nearest.transpose(-1, -2))
    return torch.where(edge, torch.exp(-d / scale), torch.zeros_like(d))


def laplacian(adjacency: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """L = D - A; absent agents (``present`` False) get a large diagonal entry instead."""
    lap = torch.diag_embed(adjacency.sum(-1)) - adjacency
    if present is not None:
        lap = lap + torch.diag_embed((~present).to(lap.dtype) * _ABSENT_DIAGONAL)
    return lap


def spectral_embedding(
    adjacency: torch.Tensor, present: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvectors (..., N, K) and eigenvalues (..., K) of the K smallest eigenvalues of L.

    Rows of absent agents are zeroed. Computed in float64: eigh is ill-conditioned for nearly
    repeated eigenvalues, which disconnected traffic groups produce.
    """
    lap = laplacian(adjacency.double(), present)
    values, vectors = torch.linalg.eigh(lap)  # ascending
    k = min(k, lap.shape[-1])
    vectors = vectors[..., :k] * present.unsqueeze(-1)
    return vectors.to(adjacency.dtype), values[..., :k].to(adjacency.dtype)


def projection(vectors: torch.Tensor) -> torch.Tensor:
    """U U^T (..., N, N): the sign- and rotation-invariant form of an embedding U (..., N, K)."""
    return vectors @ vectors.transpose(-1, -2)


def weighted_degree(adjacency: torch.Tensor) -> torch.Tensor:
    """Weighted-degree centrality θ_i = Σ_j A_ij, (..., N, N) -> (..., N)."""
    return adjacency.sum(-1)
