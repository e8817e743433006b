"""Probing and measuring one behavior family in BehaveGPT (what model surgery must remove).

The behavior is "the next event belongs to family F" (e.g. ``churn``: downgrade, cancel,
unsubscribe, delete account). A probe reads the hidden state at the position that predicts the
next event; surgery is judged by how often the model still *predicts* (top-1, top-10) and
*generates* F, against its recall@10 on every other behavior (the capability it must keep).

Axis glossary: W windows, L window length (events), D d_model, V behavior vocabulary, N samples.
"""

from __future__ import annotations

import torch

from behave.evaluation import split_batch
from behave.metrics import RankingAccumulator
from behave.models.behavegpt import PAD_ID, BehaveGPT, EventBatch, exclude_special_tokens

__all__ = [
    "family_token_mask",
    "collect_probe_data",
    "behavior_rates",
    "generation_rate",
]

CAPABILITY_METRIC = "recall_at_10_other"  # what an edit must keep
TARGET_METRIC = "family_top10_rate"  # what an edit must cut


def family_token_mask(behaviors: list[str], family: str) -> torch.Tensor:
    """(V,) True for behavior names ``"<family>.<verb>.<nnn>"``; ValueError naming the known
    families when none matches."""
    mask = torch.tensor([name.split(".", 1)[0] == family for name in behaviors])
    if not mask.any():
        known = sorted({n.split(".", 1)[0] for n in behaviors if "." in n})
        raise ValueError(f"behavior family {family!r} is not in the vocabulary; known: {known}")
    return mask


def _batches(windows: dict[str, torch.Tensor], batch_size: int):
    """Windows of L+1 events -> (inputs, next-behavior targets), ``batch_size`` windows at once."""
    for start in range(0, len(windows["behavior"]), batch_size):
        yield split_batch({k: v[start : start + batch_size] for k, v in windows.items()})


@torch.inference_mode()
def collect_probe_data(
    model: BehaveGPT,
    windows: dict[str, torch.Tensor],
    family_mask: torch.Tensor,
    *,
    max_positions: int = 50_000,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Hidden states at every layer (0 = embeddings) of up to ``max_positions`` real positions,
    sampled uniformly with ``seed``, and whether each position's next event is in the family."""
    model.eval()
    device = next(model.parameters()).device
    real = windows["behavior"][:, 1:] != PAD_ID  # (W, L)
    chosen = torch.zeros_like(real)
    flat = real.flatten().nonzero().flatten()
    g = torch.Generator().manual_seed(seed)
    pick = flat[torch.randperm(len(flat), generator=g)[:max_positions]]
    chosen.view(-1)[pick] = True
    features: dict[int, list[torch.Tensor]] = {}
    labels = []
    for start, (inputs, targets) in zip(
        range(0, len(real), batch_size), _batches(windows, batch_size), strict=True
    ):
        keep = chosen[start : start + batch_size]  # (B, L)
        if not keep.any():
            continue
        out = model(inputs.to(device), output_hidden_states=True)
        for layer, hidden in enumerate(out.hidden_states):
            features.setdefault(layer, []).append(hidden[keep.to(device)].float().cpu())  # (n, D)
        labels.append(family_mask[targets[keep]])
    if not labels:
        raise ValueError("no real positions to probe: the split has no events")
    return {k: torch.cat(v) for k, v in features.items()}, torch.cat(labels)


@torch.inference_mode()
def behavior_rates(
    model: BehaveGPT,
    windows: dict[str, torch.Tensor],
    family_mask: torch.Tensor,
    *,
    batch_size: int = 256,
) -> dict[str, float]:
    """How often the model predicts the family, and how well it ranks everything else.

    - ``family_top1_rate``: share of positions whose top-1 prediction is in the family.
    - ``family_top10_rate``: share whose top-10 (a recommendation list) contains one.
    - ``family_prob``: mean probability mass on the family.
    - ``recall_at_10_other``: recall@10 of real next events outside the family (capability).
    - ``recall_at_10_family``: recall@10 of real next events inside it.
    """
    model.eval()
    device = next(model.parameters()).device
    mask = family_mask.to(device)
    other = RankingAccumulator(len(family_mask), ks=(1, 10))
    fam = RankingAccumulator(len(family_mask), ks=(1, 10))
    top1 = top10 = prob = 0.0
    n = 0
    for inputs, targets in _batches(windows, batch_size):
        inputs, targets = inputs.to(device), targets.to(device)
        real = targets != PAD_ID
        scores = exclude_special_tokens(model(inputs).logits[real].float())  # (N, V)
        t = targets[real]
        top = scores.topk(10, dim=1).indices  # (N, 10)
        top1 += float(mask[top[:, 0]].sum())
        top10 += float(mask[top].any(dim=1).sum())
        prob += float(scores.softmax(-1)[:, mask].sum())
        n += len(t)
        in_family = mask[t]
        if (~in_family).any():
            other.update(scores[~in_family], t[~in_family])
        if in_family.any():
            fam.update(scores[in_family], t[in_family])
    if n == 0:
        raise ValueError("no real positions to evaluate: the split has no events")
    result = {
        "family_top1_rate": top1 / n,
        "family_top10_rate": top10 / n,
        "family_prob": prob / n,
        "positions": float(n),
    }
    result["recall_at_10_other"] = other.compute().get("recall_at_10_weighted", float("nan"))
    result["recall_at_10_family"] = fam.compute().get("recall_at_10_weighted", float("nan"))
    return result


@torch.no_grad()
def generation_rate(
    model: BehaveGPT,
    windows: dict[str, torch.Tensor],
    family_mask: torch.Tensor,
    *,
    histories: int = 64,
    steps: int = 16,
    seed: int = 0,
) -> float:
    """Share of sampled future events (seeded, top-k 50) that fall in the family, continuing
    the first half of ``histories`` windows."""
    model.eval()
    device = next(model.parameters()).device
    half = windows["behavior"].shape[1] // 2
    lengths = (windows["behavior"] != PAD_ID).sum(1)
    candidates = torch.nonzero(lengths > half).flatten()[:histories]
    generator = torch.Generator().manual_seed(seed)
    hits = total = 0
    for i in candidates.tolist():
        events = EventBatch(**{k: v[i : i + 1, :half] for k, v in windows.items()}).to(device)
        sampled = model.generate(events, half, steps, generator=generator)
        hits += int(family_mask[sampled].sum())
        total += len(sampled)
    return hits / max(total, 1)
