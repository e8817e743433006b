"""Ranking and generation metrics for next-behavior models (pure torch / numpy).

Definitions (one target behavior per prediction; metric keys avoid "@", which MLflow rejects,
so recall@10 macro is ``recall_at_10_macro``):
- recall@k (weighted): share of predictions whose target is among the top-k scores; every
  prediction counts once, so frequent behaviors weigh more.
- recall@k (macro): the mean over behavior types seen as targets of each type's recall@k; every
  type counts once, so it measures how well rare behaviors are served.
- head / tail recall@k: weighted recall@k over predictions whose target is a head type (the
  most frequent 20% of types in training) or a tail type (the rarest 80%).
- NDCG@10: 1/log2(rank + 1) when the target ranks within the top 10 (rank 1 = best), else 0.
- generation divergences: Jensen-Shannon divergence (base 2, in [0, 1]) between generated and
  real behavior histograms, and between their bigram (transition) distributions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "tail_mask_from_counts",
    "frequency_buckets",
    "RankingAccumulator",
    "js_divergence",
    "transition_counts",
    "generation_divergences",
]


def tail_mask_from_counts(counts: torch.Tensor, tail_share: float = 0.8) -> torch.Tensor:
    """Boolean (V,) mask of tail types: the rarest ``tail_share`` of types with a count > 0.

    Types never seen in training (count 0, e.g. <pad>/<unk>) are neither head nor tail.
    """
    counts = torch.as_tensor(counts)
    seen = torch.nonzero(counts > 0).flatten()
    order = seen[torch.argsort(counts[seen], descending=True, stable=True)]
    num_head = len(order) - int(round(tail_share * len(order)))
    mask = torch.zeros(len(counts), dtype=torch.bool)
    mask[order[num_head:]] = True
    return mask


def frequency_buckets(counts: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Bucket id (V,) per type: types seen in training sorted by count and cut into
    ``num_buckets`` groups of (nearly) equal *number of types*; 0 = most frequent. Unseen
    types get the rarest bucket."""
    counts = torch.as_tensor(counts)
    order = torch.argsort(counts, descending=True, stable=True)
    seen = int((counts > 0).sum())
    bucket = torch.full((len(counts),), num_buckets - 1, dtype=torch.long)
    bucket[order[:seen]] = torch.arange(seen) * num_buckets // max(seen, 1)
    return bucket


@dataclass
class RankingAccumulator:
    """Accumulates per-type hit counts over batches; ``compute`` returns the metric dict."""

    num_types: int
    ks: tuple[int, ...] = (1, 5, 10)
    tail_mask: torch.Tensor | None = None
    hits: torch.Tensor = field(init=False)  # (len(ks), V) hits per target type
    totals: torch.Tensor = field(init=False)  # (V,) predictions per target type
    dcg: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.hits = torch.zeros(len(self.ks), self.num_types, dtype=torch.float64)
        self.totals = torch.zeros(self.num_types, dtype=torch.float64)

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """scores (N, V) and targets (N,) for N real (non-padding) predictions."""
        scores, targets = scores.detach().float(), targets.detach()
        target_score = scores.gather(1, targets[:, None])  # (N, 1)
        # rank = 1 + number of types scored strictly higher (ties favour the target)
        rank = (scores > target_score).sum(dim=1) + 1  # (N,)
        rank, targets = rank.cpu(), targets.cpu()
        self.totals.index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        for i, k in enumerate(self.ks):
            self.hits[i].index_add_(0, targets, (rank <= k).double())
        self.dcg += float(torch.where(rank <= 10, 1.0 / torch.log2(rank.double() + 1), 0.0).sum())

    def compute(self) -> dict[str, float]:
        n = float(self.totals.sum())
        if n == 0:
            return {}
        seen = self.totals > 0
        out: dict[str, float] = {}
        for i, k in enumerate(self.ks):
            out[f"recall_at_{k}_weighted"] = float(self.hits[i].sum()) / n
            out[f"recall_at_{k}_macro"] = float((self.hits[i][seen] / self.totals[seen]).mean())
        if self.tail_mask is not None and 10 in self.ks:
            i10 = self.ks.index(10)
            for name, mask in (("head", ~self.tail_mask), ("tail", self.tail_mask)):
                total = float(self.totals[mask].sum())
                if total > 0:
                    out[f"recall_at_10_{name}"] = float(self.hits[i10][mask].sum()) / total
        out["ndcg_at_10"] = self.dcg / n
        return out

    def per_type_recall(self, k: int = 10) -> torch.Tensor:
        """(V,) recall@k per target type (NaN where a type never was a target)."""
        hits = self.hits[self.ks.index(k)]
        return torch.where(self.totals > 0, hits / self.totals.clamp(min=1), torch.nan)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2) between two count or probability vectors."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_divergence needs two non-empty distributions")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def transition_counts(sequences: list[np.ndarray], num_types: int) -> np.ndarray:
    """(V, V) counts of consecutive (previous, next) behavior pairs over the sequences."""
    counts = np.zeros((num_types, num_types), dtype=np.float64)
    for seq in sequences:
        seq = np.asarray(seq)
        if len(seq) > 1:
            np.add.at(counts, (seq[:-1], seq[1:]), 1.0)
    return counts


def generation_divergences(
    generated: list[np.ndarray], real: list[np.ndarray], num_types: int
) -> dict[str, float]:
    """JS divergence of behavior histograms and of transition (bigram) distributions."""
    hist_gen = np.bincount(np.concatenate(generated), minlength=num_types)
    hist_real = np.bincount(np.concatenate(real), minlength=num_types)
    return {
        "histogram_jsd": js_divergence(hist_gen, hist_real),
        "transition_jsd": js_divergence(
            transition_counts(generated, num_types), transition_counts(real, num_types)
        ),
    }
