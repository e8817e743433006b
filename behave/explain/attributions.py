"""One entry point for Captum attributions of behave models, and a heatmap to show them.

Methods (Captum, https://captum.ai, Kokhlikyan et al. 2020, arXiv 2009.07896):
- Integrated Gradients, Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365
- DeepLift (Rescale rule), Shrikumar et al. 2017, https://arxiv.org/abs/1704.02685
- Saliency (|gradient|), Simonyan et al. 2013, https://arxiv.org/abs/1312.6034
- Input x Gradient, Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713
- Occlusion, Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901; Feature Ablation (Captum)

Where we differ from a plain Captum call, and why:
- Time-series models: occlusion slides a window of ``w`` time steps over ONE channel at a time
  (stride ``w // 2``) and feature ablation removes disjoint (``w``-step chunk, channel) groups,
  so both attribute to (time, channel) cells like the gradient methods; ``w`` defaults to 5.
- BehaveGPT reads integer event fields, which have no gradient: ``attribute_events`` attributes
  to the five field embeddings of each event (embedding-level attribution) and sums over the
  embedding dimension, giving one score per (event, field). The baseline is the all-zero
  embedding: "this field contributes nothing", position embeddings kept. (It is not the <pad>
  row: BehaveGPT's init overwrites that row with random values.)
- DeepLift uses Captum's Rescale rule for the nonlinearities that are modules (ReLU, Tanh,
  Softmax, ...) and, during our calls, for ``nn.GELU`` / ``nn.SiLU`` too (Captum lacks them;
  without them DeepLift on a GELU transformer equals Input x Gradient). LayerNorm, functional
  activations and attention's softmax fall back to plain gradients, so on transformers DeepLift
  is an approximation (no exact summation-to-delta). Captum's warnings become one log line per
  distinct message per process.
- BehaveGPT sums the five field embeddings before its first layer, so the gradient is the same
  for all five fields of an event: Saliency (|gradient| summed over E) ranks events, not fields.
  Use Integrated Gradients, Input x Gradient, DeepLift or occlusion to compare fields.
- Every call runs with gradients enabled (even inside ``torch.no_grad`` / inference mode), the
  model in eval mode and its parameters frozen; training flags and ``requires_grad`` are
  restored afterwards. DeepLift registers hooks on the model during the call, so do not run
  attributions concurrently on one shared model instance.

Axis glossary: B batch, T time steps, D channels, C classes, L events, E d_model, V behaviors.
"""

from __future__ import annotations

import base64
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    Saliency,
)
from captum.attr._core import deep_lift as captum_deep_lift
from matplotlib.figure import Figure
from torch import nn

from behave.models.behavegpt import PAD_ID, BehaveGPT, EventBatch

__all__ = [
    "CAPTUM_METHODS",
    "EVENT_FEATURES",
    "attribute",
    "attribute_events",
    "attribution_heatmap",
    "figure_png_base64",
]

log = logging.getLogger(__name__)

CAPTUM_METHODS = (
    "integrated_gradients",
    "deeplift",
    "saliency",
    "input_x_gradient",
    "occlusion",
    "feature_ablation",
)
EVENT_FEATURES = ("behavior", "weekday", "time_slot", "location", "domain")
DEFAULT_WINDOW = 5  # time steps per occlusion window / ablation chunk

_seen_warnings: set[str] = set()


def _check_method(method: str) -> str:
    if method not in CAPTUM_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {CAPTUM_METHODS}")
    return method


@contextmanager
def _captum_warnings(method: str) -> Iterator[None]:
    """Collect the warnings Captum raises (hooks set, grads required, ...) into one log line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = sorted({" ".join(str(w.message).split()) for w in caught} - _seen_warnings)
    if messages:
        _seen_warnings.update(messages)
        log.info("captum %s: %s", method, " | ".join(messages))


@contextmanager
def _deeplift_rules() -> Iterator[None]:
    """Give GELU / SiLU Captum's Rescale rule for the duration of one DeepLift call.

    Captum only knows ReLU-like modules; the rule ``grad * delta_out / delta_in`` holds for any
    elementwise nonlinearity. Without it DeepLift on our GELU transformers is exactly
    Input x Gradient. Scoped (and undone) so Captum's table is not changed for anyone else.
    """
    table = getattr(captum_deep_lift, "SUPPORTED_NON_LINEAR", None)
    rule = getattr(captum_deep_lift, "nonlinear", None)
    added = (
        [] if table is None or rule is None else [m for m in (nn.GELU, nn.SiLU) if m not in table]
    )
    for module_type in added:
        table[module_type] = rule
    try:
        yield
    finally:
        for module_type in added:
            table.pop(module_type, None)


@contextmanager
def _attribution_mode(model: nn.Module, method: str) -> Iterator[None]:
    """Eval mode, frozen parameters, gradients on; everything restored on exit."""
    training = [(m, m.training) for m in model.modules()]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    # only input gradients are needed; frozen weights keep autograd from recording their grads
    for p, _ in requires_grad:
        p.requires_grad_(False)
    try:
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            _captum_warnings(method),
            _deeplift_rules(),
        ):
            yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires_grad:
            p.requires_grad_(flag)


class _Logits(nn.Module):
    """A model returning a tensor (B, C): DeepLift hooks the top module's output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if isinstance(out, torch.Tensor) else out.logits


def _perturbations_per_eval(internal_batch_size: int | None, batch: int) -> int:
    return 1 if internal_batch_size is None else max(1, internal_batch_size // batch)


def _as_target(target: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    target = torch.as_tensor(target, device=device).long().reshape(-1)
    if target.numel() == 1:
        target = target.expand(batch)
    if target.shape != (batch,):
        raise ValueError(
            f"target must hold one class id per sample ({batch}), got {tuple(target.shape)}"
        )
    return target


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    method: str,
    baselines: torch.Tensor | None = None,
    n_steps: int = 50,
    window: int | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Attributions (B, T, D) of ``model(inputs)[b, target[b]]`` to each input cell.

    model: maps float inputs (B, T, D) to logits (B, C) (or an output with ``.logits``).
    target: (B,) class ids (a scalar is broadcast). baselines: (B, T, D) or broadcastable,
    default zeros. ``n_steps``: Integrated Gradients steps. ``window``: time steps per
    occlusion window / ablation chunk (default 5, at most T). ``internal_batch_size``: rows per
    forward pass for IG, and for occlusion / ablation how many perturbed copies of the batch
    go through one forward (``internal_batch_size // B``).
    """
    _check_method(method)
    if inputs.ndim != 3 or not inputs.is_floating_point():
        raise ValueError(f"inputs must be a float tensor (B, T, D), got {tuple(inputs.shape)}")
    B, T, D = inputs.shape
    target = _as_target(target, B, inputs.device)
    forward = _Logits(model)
    w = max(1, min(window or DEFAULT_WINDOW, T))
    per_eval = _perturbations_per_eval(internal_batch_size, B)
    with _attribution_mode(model, method):
        x = inputs.detach().clone()  # a normal tensor, even if the caller's is an inference one
        base = (
            torch.zeros_like(x)
            if baselines is None
            else baselines.detach().to(x).expand_as(x).clone()
        )  # (B, T, D)
        if method == "integrated_gradients":
            attr = IntegratedGradients(forward).attribute(
                x,
                baselines=base,
                target=target,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
            )
        elif method == "deeplift":
            attr = DeepLift(forward).attribute(x, baselines=base, target=target)
        elif method == "saliency":
            attr = Saliency(forward).attribute(x, target=target, abs=True)
        elif method == "input_x_gradient":
            attr = InputXGradient(forward).attribute(x, target=target)
        elif method == "occlusion":
            attr = Occlusion(forward).attribute(
                x,
                sliding_window_shapes=(w, 1),
                strides=(max(1, w // 2), 1),
                baselines=base,
                target=target,
                perturbations_per_eval=per_eval,
            )
        else:  # feature_ablation: disjoint (w-step chunk, channel) groups
            chunk = torch.arange(T, device=x.device) // w  # (T,)
            mask = chunk[:, None] * D + torch.arange(D, device=x.device)[None, :]  # (T, D)
            attr = FeatureAblation(forward).attribute(
                x,
                baselines=base,
                target=target,
                feature_mask=mask[None],
                perturbations_per_eval=per_eval,
            )
    return attr.detach()  # (B, T, D)


class _EventEmbeddingForward(nn.Module):
    """BehaveGPT's forward from the five field embeddings: the logits (B, V) at ``position``.

    Mirrors ``BehaveGPT.embed`` + ``forward`` (read from behave/models/behavegpt.py): sum the
    field embeddings, add position embeddings, dropout, blocks, final LayerNorm, tied head.
    The test ``test_event_forward_matches_model`` guards that the two stay equal.
    """

    def __init__(self, model: BehaveGPT) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        behavior: torch.Tensor,
        weekday: torch.Tensor,
        time_slot: torch.Tensor,
        location: torch.Tensor,
        domain: torch.Tensor,
        position: torch.Tensor,
    ) -> torch.Tensor:
        m = self.model
        B, L, _ = behavior.shape
        positions = torch.arange(L, device=behavior.device)
        x = behavior + weekday + time_slot + location + domain + m.position_embedding(positions)
        x = m.drop(x)  # (B, L, E)
        for block in m.blocks:
            x = block(x)  # (B, L, E)
        # LayerNorm and head act per position: read out only the predicted one
        h = x[torch.arange(B, device=x.device), position]  # (B, E)
        return m.head(m.ln_final(h))  # (B, V)


def _field_embeddings(model: BehaveGPT, events: EventBatch) -> tuple[torch.Tensor, ...]:
    tables = (
        model.behavior_embedding,
        model.weekday_embedding,
        model.time_slot_embedding,
        model.location_embedding,
        model.domain_embedding,
    )
    return tuple(
        table(getattr(events, name)).detach()
        for table, name in zip(tables, EVENT_FEATURES, strict=True)
    )  # 5 x (B, L, E)


def attribute_events(
    model: BehaveGPT,
    events: EventBatch,
    position: torch.Tensor,
    target: torch.Tensor,
    method: str,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Attributions (B, L, 5) of BehaveGPT's next-behavior logit to each event's five fields.

    position: (B,) index of the event after which the next behavior is predicted (the last
    real event for "what comes next"); target: (B,) behavior ids whose logit is explained.
    Fields follow ``EVENT_FEATURES``. Attributions are taken on the field embeddings against an
    all-zero embedding baseline and summed over the embedding dimension (gradient methods), or
    are the logit change when one event's field embedding is zeroed (occlusion and feature
    ablation, one (event, field) at a time). Padding events and events after ``position``
    (which the causal model cannot see) are exactly 0.
    """
    _check_method(method)
    behavior = events.behavior
    B, L = behavior.shape
    device = behavior.device
    if L > model.config.context_length:
        raise ValueError(
            f"sequence length {L} exceeds context_length {model.config.context_length}; "
            "truncate the history to its most recent events"
        )
    position = torch.as_tensor(position, device=device).long().reshape(-1)
    if position.shape != (B,) or bool(((position < 0) | (position >= L)).any()):
        raise ValueError(f"position must be (B,) = ({B},) indices in [0, {L}), got {position}")
    target = _as_target(target, B, device)
    forward = _EventEmbeddingForward(model)
    E = model.config.d_model
    per_eval = _perturbations_per_eval(internal_batch_size, B)
    with _attribution_mode(model, method):
        inputs = _field_embeddings(model, events)  # 5 x (B, L, E)
        baselines = tuple(torch.zeros_like(t) for t in inputs)
        extra = (position,)
        if method == "integrated_gradients":
            attrs = IntegratedGradients(forward).attribute(
                inputs,
                baselines=baselines,
                target=target,
                additional_forward_args=extra,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
            )
        elif method == "deeplift":
            attrs = DeepLift(forward).attribute(
                inputs, baselines=baselines, target=target, additional_forward_args=extra
            )
        elif method == "saliency":
            attrs = Saliency(forward).attribute(
                inputs, target=target, abs=True, additional_forward_args=extra
            )
        elif method == "input_x_gradient":
            attrs = InputXGradient(forward).attribute(
                inputs, target=target, additional_forward_args=extra
            )
        elif method == "occlusion":
            attrs = Occlusion(forward).attribute(
                inputs,
                sliding_window_shapes=((1, E),) * 5,
                strides=((1, E),) * 5,
                baselines=baselines,
                target=target,
                additional_forward_args=extra,
                perturbations_per_eval=per_eval,
            )
        else:  # feature_ablation: one group per (field, event), unique across the 5 inputs
            ids = torch.arange(L, device=device)[:, None].expand(L, E)  # (L, E)
            masks = tuple((f * L + ids)[None] for f in range(5))  # 5 x (1, L, E)
            attrs = FeatureAblation(forward).attribute(
                inputs,
                baselines=baselines,
                target=target,
                additional_forward_args=extra,
                feature_mask=masks,
                perturbations_per_eval=per_eval,
            )
    if method in ("occlusion", "feature_ablation"):
        # every embedding element of an occluded (event, field) carries the whole logit change
        per_field = [a.mean(dim=-1) for a in attrs]  # 5 x (B, L)
    else:
        per_field = [a.sum(dim=-1) for a in attrs]  # 5 x (B, L)
    out = torch.stack(per_field, dim=-1).detach()  # (B, L, 5)
    visible = (behavior != PAD_ID) & (torch.arange(L, device=device)[None, :] <= position[:, None])
    return out * visible[..., None]  # (B, L, 5)


def attribution_heatmap(values: np.ndarray, inputs: np.ndarray, title: str) -> Figure:
    """The series (T, D) drawn per channel over its attributions (T, D) as a colored background.

    Signed attributions use a diverging map centered on 0, non-negative ones a sequential map;
    one color scale is shared by all channels so they can be compared.
    """
    values = np.asarray(values, dtype=np.float64)
    inputs = np.asarray(inputs, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if inputs.ndim == 1:
        inputs = inputs[:, None]
    if values.shape != inputs.shape or values.ndim != 2:
        raise ValueError(
            f"values and inputs must both be (T, D); got {values.shape} and {inputs.shape}"
        )
    T, D = values.shape
    if values.min() < 0:
        cmap, vmax = "RdBu_r", max(float(np.abs(values).max()), 1e-12)
        vmin = -vmax
    else:
        cmap, vmin, vmax = "Reds", 0.0, max(float(values.max()), 1e-12)
    # Figure without pyplot: no global figure registry, safe inside a server thread
    fig = Figure(figsize=(9, 0.6 + 1.6 * D), layout="constrained")
    axes = fig.subplots(D, 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for d, ax in enumerate(axes):
        low, high = float(inputs[:, d].min()), float(inputs[:, d].max())
        pad = 0.1 * (high - low) or 0.5
        low, high = low - pad, high + pad
        image = ax.imshow(
            values[:, d][None, :],
            aspect="auto",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(-0.5, T - 0.5, low, high),
            interpolation="nearest",
            zorder=0,
        )
        ax.plot(np.arange(T), inputs[:, d], color="black", linewidth=1.0, zorder=1)
        ax.set_ylim(low, high)
        ax.set_ylabel(f"channel {d}")
    axes[-1].set_xlabel("time step")
    axes[-1].set_xlim(-0.5, T - 0.5)
    fig.colorbar(image, ax=list(axes), label="attribution", shrink=0.9)
    fig.suptitle(title)
    return fig


def figure_png_base64(fig: Figure, dpi: int = 100) -> str:
    """PNG bytes of ``fig`` as base64 text (for JSON responses); closes the figure."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        # a pyplot-made figure would otherwise stay in pyplot's registry; never import pyplot
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
