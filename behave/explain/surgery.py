"""Model surgery: shift the MLP rows most (anti-)aligned with a behavior probe's direction.

Paper: Wang et al. 2024, "Model Surgery: Modulating LLM's Behavior Via Simple Parameter
Editing" (arXiv 2407.08770). Official code: github.com/lucywang720/model-surgery
(``modification/modify.py``).

The published edit: every row ``w_i`` of every layer's MLP input projection (LLaMA's
``gate_proj``) is scored by ``cos(w_i, v)`` with the probe's behavior direction ``v``; the
``top_k`` rows with the most *negative* cosine across all layers get ``w_i += alpha * v``.
No gradients flow through the model: the cost is one pass over the chosen weight matrices.

Where we differ from the official code, and why:
- ``v`` is the probe's unit direction times the mean norm of the candidate rows, so ``alpha``
  reads "shift by alpha typical row lengths" on any model (the official code adds the raw probe
  weight, whose norm depends on how that probe was regularized).
- Variants worth comparing, off by default: ``select="aligned"`` (edit the most aligned rows),
  ``sign=-1`` (shift away from the behavior), and ``mode="remove"`` (remove ``alpha`` times each
  selected row's component along ``v`` instead of shifting it).
- ``layers`` restricts the candidates to a block range (the official code scans all 32).
- ``per_block`` takes ``top_k // blocks`` rows from every block instead of one global ranking
  (with per-block directions the global ranking piles the rows into the few blocks whose
  direction happens to be most anti-aligned; measured on SmolLM2 in ``benchmarks/surgery_llm.py``).
- ``direction`` may be one vector (the paper: the last layer's probe, for every block) or one
  per block (``{block: (D,)}``): block ``l``'s MLP reads the residual stream entering it
  (``hidden_states[l]``), so its rows are scored against, and shifted along, that layer's own
  direction; the top-k stays global over all blocks' cosines. Measured on SmolLM2
  (``benchmarks/surgery_llm.py``), per-block class-mean differences were the only directions
  that met the toxicity target.

Supported projections: LLaMA/Mistral/Qwen-style ``mlp.gate_proj``, ``fc_in``/``fc1`` linear
layers, and BehaveGPT's ``blocks.<i>.mlp.0`` (its fc_in). Each is an ``nn.Linear`` whose weight is
(out, D): a row is one hidden unit's input direction in D-dimensional hidden-state space.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = [
    "SurgeryConfig",
    "SurgeryPlan",
    "mlp_input_projections",
    "plan_surgery",
    "apply_surgery",
    "operate",
]

SELECTIONS = ("anti_aligned", "aligned")
MODES = ("shift", "remove")

# parameter names of MLP input projections, with the block index as group 1
_PROJECTION_PATTERNS = (
    re.compile(r"(?:^|\.)layers\.(\d+)\.mlp\.gate_proj\.weight$"),  # LLaMA, Mistral, Qwen
    re.compile(
        r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.mlp\.(?:fc_in|fc1)\.weight$"
    ),  # GPT-J, OPT-like
    re.compile(r"(?:^|\.)blocks\.(\d+)\.mlp\.0\.weight$"),  # BehaveGPT
)


@dataclass(frozen=True)
class SurgeryConfig:
    alpha: float = 1.0  # shift size, in mean candidate-row norms (mode="remove": fraction removed)
    top_k: int = 64  # rows edited across all candidate layers
    layers: tuple[int, int] | None = None  # [first, last) block indices; None = every block
    select: str = "anti_aligned"  # "anti_aligned" (paper) | "aligned"
    sign: int = 1  # +1 adds the behavior direction (paper), -1 subtracts it
    mode: str = "shift"  # "shift" (paper) | "remove" (projection removal)
    per_block: bool = False  # top_k // blocks rows from each block, instead of one global top-k

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign}")
        if self.layers is not None:
            first, last = self.layers
            if not 0 <= first < last:
                raise ValueError(
                    f"layers must be [first, last) with 0 <= first < last, got {self.layers}"
                )


@dataclass
class SurgeryPlan:
    """Which rows an edit touches, and the vector it adds (deterministic for a model + probe)."""

    config: SurgeryConfig
    rows: dict[str, list[int]]  # parameter name -> edited row indices (sorted)
    cosines: dict[str, list[float]]  # cos(row, v) of each edited row, same order
    shifts: dict[str, torch.Tensor]  # parameter name -> (D,) vector added to its edited rows
    candidates: int = 0  # rows that were scored
    layer_counts: dict[int, int] = field(default_factory=dict)  # block -> rows edited

    def summary(self) -> dict:
        return {
            **asdict(self.config),
            "rows_edited": sum(len(r) for r in self.rows.values()),
            "rows_scored": self.candidates,
            "rows_per_layer": {str(k): v for k, v in sorted(self.layer_counts.items())},
            "shift_norm": max((float(v.norm()) for v in self.shifts.values()), default=0.0),
        }


def mlp_input_projections(model: nn.Module) -> list[tuple[int, str, nn.Parameter]]:
    """(block index, parameter name, weight) of every MLP input projection, by block."""
    found = []
    for name, param in model.named_parameters():
        for pattern in _PROJECTION_PATTERNS:
            match = pattern.search(name)
            if match:
                found.append((int(match.group(1)), name, param))
                break
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no MLP input projection behave knows "
            "(mlp.gate_proj, mlp.fc_in/fc1, or BehaveGPT's blocks.<i>.mlp.0)"
        )
    return sorted(found, key=lambda item: item[0])


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v.detach().float().cpu().flatten()
    return v / v.norm().clamp_min(1e-12)


def plan_surgery(
    model: nn.Module, direction: torch.Tensor | dict[int, torch.Tensor], config: SurgeryConfig
) -> SurgeryPlan:
    """Scores every candidate row by cosine with its block's direction (one shared vector, or
    ``{block: vector}``) and picks the global top-k."""
    projections = mlp_input_projections(model)
    if config.layers is not None:
        first, last = config.layers
        projections = [p for p in projections if first <= p[0] < last]
        if not projections:
            raise ValueError(
                f"layers {list(config.layers)} select no block; the model has blocks "
                f"0..{max(b for b, _, _ in mlp_input_projections(model))}"
            )
    if isinstance(direction, dict):
        missing = sorted({b for b, _, _ in projections} - set(direction))
        if missing:
            raise ValueError(f"no direction for block(s) {missing}: give one per edited block")
        units = {b: _unit(direction[b]) for b, _, _ in projections}
    else:
        units = {b: _unit(direction) for b, _, _ in projections}
    hidden = projections[0][2].shape[1]
    for v in units.values():
        if v.numel() != hidden:
            raise ValueError(
                f"probe direction has {v.numel()} dims but the MLP rows have {hidden}: "
                "the probe was trained on another model"
            )
    scores, owners, norms = [], [], []
    for block, name, weight in projections:
        w = weight.detach().float().cpu()  # (out, D)
        cos = torch.nn.functional.cosine_similarity(w, units[block].unsqueeze(0), dim=1)  # (out,)
        scores.append(cos)
        owners.extend((block, name, i) for i in range(w.shape[0]))
        norms.append(w.norm(dim=1))
    cos_all = torch.cat(scores)
    if config.top_k > len(cos_all):
        raise ValueError(f"top_k {config.top_k} exceeds the {len(cos_all)} candidate rows")
    key = -cos_all if config.select == "anti_aligned" else cos_all
    # stable sort: ties break by parameter order, so the plan is reproducible
    if config.per_block:
        per = config.top_k // len(projections)
        if per < 1:
            raise ValueError(
                f"top_k {config.top_k} is less than one row per block ({len(projections)} blocks)"
            )
        chosen, start = [], 0
        for score in scores:
            block_key = key[start : start + len(score)]
            chosen.append(start + torch.sort(block_key, descending=True, stable=True).indices[:per])
            start += len(score)
        chosen = torch.cat(chosen)
    else:
        chosen = torch.sort(key, descending=True, stable=True).indices[: config.top_k]
    rows: dict[str, list[int]] = {}
    cosines: dict[str, list[float]] = {}
    layer_counts: dict[int, int] = {}
    for index in sorted(chosen.tolist()):
        block, name, row = owners[index]
        rows.setdefault(name, []).append(row)
        cosines.setdefault(name, []).append(float(cos_all[index]))
        layer_counts[block] = layer_counts.get(block, 0) + 1
    scale = config.sign * config.alpha * float(torch.cat(norms).mean())
    block_of = {name: block for block, name, _ in projections}
    shifts = {name: scale * units[block_of[name]] for name in rows}
    return SurgeryPlan(config, rows, cosines, shifts, len(cos_all), layer_counts)


@torch.no_grad()
def apply_surgery(model: nn.Module, plan: SurgeryPlan) -> nn.Module:
    """Edits ``model`` in place as planned; every other parameter stays bit-identical."""
    params = dict(model.named_parameters())
    for name, rows in plan.rows.items():
        weight = params[name]
        idx = torch.tensor(rows, device=weight.device)
        selected = weight[idx].float()  # (k, D)
        shift = plan.shifts[name].to(weight.device)
        if plan.config.mode == "shift":
            edited = selected + shift
        else:  # remove alpha x the component along v (sign is irrelevant to a projection)
            v = shift / shift.norm().clamp_min(1e-12)
            edited = selected - plan.config.alpha * (selected @ v).unsqueeze(1) * v
        weight[idx] = edited.to(weight.dtype)
    return model


def operate(
    model: nn.Module, direction: torch.Tensor | dict[int, torch.Tensor], config: SurgeryConfig
) -> SurgeryPlan:
    """Plans and applies the edit in place; returns the plan (what changed, for the record)."""
    plan = plan_surgery(model, direction, config)
    apply_surgery(model, plan)
    return plan
