"""Selective scan: the input-dependent linear recurrence at the heart of Mamba-1 (S6).

Paper: "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752
(https://arxiv.org/abs/2312.00752), Algorithm 2 and Section 3.5.
Official implementation: https://github.com/state-spaces/mamba (``mamba_ssm.ops.
selective_scan_interface.selective_scan_fn`` is the fused CUDA kernel; ``selective_scan_ref``
is its PyTorch reference, which cannot be imported without CUDA).

For every batch row and channel d, with state x_t of size N (zero before t = 0):

    delta_t   = softplus(delta_t + delta_bias)      (bias and softplus optional)
    x_t       = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t
    y_t       = <x_t, C_t> + D * u_t                (skip optional)
    out_t     = y_t * silu(z_t)                     (gate optional)

Four entry points; the full-sequence ones take ``selective_scan_fn``'s arguments in its order,
with its conventions, so the kernel swaps in unchanged:
- ``selective_scan_reference``: a plain loop over time, the obviously correct version;
- ``selective_scan_parallel``: a chunked scan in pure PyTorch (CPU, GPUs without the kernel),
  with a hand-written backward; O(sqrt(L)) Python steps per direction instead of L;
- ``selective_scan_step``: one recurrent step for inference, O(1) in context length;
- ``selective_scan``: picks the kernel, the parallel scan or the reference at run time
  (``BEHAVE_SCAN_IMPL=reference|parallel|kernel`` forces one) and logs the choice once.

Where we differ from mamba-ssm, and why:
- B and C must be input-dependent: (B, N, L), or grouped (B, G, N, L) where channel d reads group
  d // (D / G). Mamba-1 always uses this form; the kernel's constant (D, N) and complex variants
  are not supported.
- Arithmetic runs in float32, or float64 when the inputs are float64 (mamba-ssm's reference
  always uses float32), so tests can compare in double precision. The output has u's dtype; the
  last state is returned in the arithmetic dtype, as mamba-ssm does.
- The returned last state is differentiable here (the kernel's backward ignores it).
- The arguments keep mamba-ssm's paper symbols (A, B, C, D), not descriptive names, so calls
  are interchangeable with the kernel's.

Axis glossary: B batch, D channels (d_inner), L sequence length, N state size (d_state),
G groups of B/C, H channels per group (D / G), K number of chunks, T chunk length.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "SCAN_IMPL_ENV",
    "selective_scan",
    "selective_scan_impl",
    "selective_scan_parallel",
    "selective_scan_reference",
    "selective_scan_step",
]

log = logging.getLogger(__name__)

SCAN_IMPL_ENV = "BEHAVE_SCAN_IMPL"
SCAN_IMPLS = ("reference", "parallel", "kernel")


# --------------------------------------------------------------------------------------------
# shared preparation
# --------------------------------------------------------------------------------------------


def _compute_dtype(u: Tensor) -> torch.dtype:
    """float32 arithmetic, float64 when the inputs are float64."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _discretization_step(
    delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool, dtype: torch.dtype
) -> Tensor:
    """delta (B, D, ...) -> softplus(delta + delta_bias) in `dtype`, bias broadcast over D."""
    delta = delta.to(dtype)
    if delta_bias is not None:
        bias = delta_bias.to(dtype)  # (D,)
        delta = delta + bias.view(-1, *([1] * (delta.dim() - 2)))
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> int:
    """Validate the (B, D, L) / (D, N) / (B, [G,] N, L) layout; return the number of groups G."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must both be (B, D, L), got {tuple(u.shape)}, {tuple(delta.shape)}"
        )
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (D, N) with D={dim}, got {tuple(A.shape)}")
    state = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        grouped = M.dim() == 4
        if M.dim() not in (3, 4) or M.shape[0] != batch or M.shape[-2:] != (state, length):
            raise ValueError(
                f"{name} must be (B, N, L) or (B, G, N, L) with B={batch}, N={state}, L={length};"
                f" got {tuple(M.shape)} (constant (D, N) B/C are not supported)"
            )
        if grouped and dim % M.shape[1]:
            raise ValueError(f"{name} has {M.shape[1]} groups, which do not divide D={dim}")
    groups_b = B.shape[1] if B.dim() == 4 else 1
    groups_c = C.shape[1] if C.dim() == 4 else 1
    if groups_b != groups_c:
        raise ValueError(f"B and C must have the same number of groups, got {groups_b}, {groups_c}")
    return groups_b


def _per_channel(M: Tensor, dim: int, grouped: bool) -> Tensor:
    """(B, N, ...) or grouped (B, G, N, ...) -> (B, D, N, ...): channel d reads group d // H."""
    if not grouped:
        return M.unsqueeze(1).expand(M.shape[0], dim, *M.shape[1:])
    return M.repeat_interleave(dim // M.shape[1], dim=1)


def _skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """y (B, D, ...) + D * u, then * silu(z); D is (D,), broadcast over the trailing axes."""
    if D is not None:
        y = y + u * D.to(y.dtype).view(-1, *([1] * (u.dim() - 2)))
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


# --------------------------------------------------------------------------------------------
# 1. reference: a plain loop over time
# --------------------------------------------------------------------------------------------


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan as a sequential loop over L (mirrors mamba-ssm's ``selective_scan_ref``).

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L) or (B, G, N, L); D, delta_bias: (D,).
    Returns out (B, D, L) in u's dtype, and with ``return_last_state`` the state x_{L-1}
    (B, D, N) in the arithmetic dtype.
    """
    _check_shapes(u, delta, A, B, C)
    dtype = _compute_dtype(u)
    dim = u.shape[1]
    delta = _discretization_step(delta, delta_bias, delta_softplus, dtype)  # (B, D, L)
    u_c = u.to(dtype)  # (B, D, L)
    A = A.to(dtype)  # (D, N)
    B = _per_channel(B.to(dtype), dim, grouped=B.dim() == 4)  # (B, D, N, L)
    C = _per_channel(C.to(dtype), dim, grouped=C.dim() == 4)  # (B, D, N, L)

    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))  # (B, D, L, N)
    deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u_c)  # (B, D, L, N)
    x = u_c.new_zeros(u.shape[0], dim, A.shape[1])  # (B, D, N)
    ys = []
    steps = zip(deltaA.unbind(2), deltaB_u.unbind(2), C.unbind(3), strict=True)
    for deltaA_t, deltaB_u_t, C_t in steps:  # (B, D, N) each
        x = deltaA_t * x + deltaB_u_t  # (B, D, N)
        ys.append((x * C_t).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=2)  # (B, D, L)
    out = _skip_and_gate(y, u_c, D, z).to(u.dtype)  # (B, D, L)
    return (out, x) if return_last_state else out


# --------------------------------------------------------------------------------------------
# 2. recurrent step (inference)
# --------------------------------------------------------------------------------------------


def selective_scan_step(
    state: Tensor,
    u_t: Tensor,
    delta_t: Tensor,
    A: Tensor,
    B_t: Tensor,
    C_t: Tensor,
    D: Tensor | None = None,
    z_t: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[Tensor, Tensor]:
    """One step of the recurrence: returns (y_t (B, D) in u_t's dtype, new state (B, D, N)).

    state: (B, D, N), zeros before the first step; u_t, delta_t, z_t: (B, D); A: (D, N);
    B_t, C_t: (B, N) or (B, G, N); D, delta_bias: (D,). Feeding a sequence step by step gives
    the same outputs and final state as the full scan.
    """
    dtype = _compute_dtype(u_t)
    dim = u_t.shape[1]
    delta_t = _discretization_step(delta_t, delta_bias, delta_softplus, dtype)  # (B, D)
    u = u_t.to(dtype)  # (B, D)
    B_t = _per_channel(B_t.to(dtype), dim, grouped=B_t.dim() == 3)  # (B, D, N)
    C_t = _per_channel(C_t.to(dtype), dim, grouped=C_t.dim() == 3)  # (B, D, N)
    deltaA = torch.exp(delta_t.unsqueeze(-1) * A.to(dtype))  # (B, D, N)
    new_state = deltaA * state.to(dtype) + (delta_t * u).unsqueeze(-1) * B_t  # (B, D, N)
    y = (new_state * C_t).sum(-1)  # (B, D)
    return _skip_and_gate(y, u, D, z_t).to(u_t.dtype), new_state


# --------------------------------------------------------------------------------------------
# 3. parallel: chunked scan with a hand-written backward
# --------------------------------------------------------------------------------------------
#
# Everything runs time-major, (L, B, D, N), so one time step is one contiguous slice. The
# recurrence h_t = a_t * h_{t-1} + b_t over L = K * T (+ a tail shorter than T) is solved in
# three passes, each a short Python loop of whole-tensor operations:
#   1. every chunk scans its own T steps from a zero state, all K chunks at once, keeping only
#      its end state and its total decay prod(a) (T steps);
#   2. the true state entering each chunk is carried across chunks (K steps);
#   3. every chunk re-scans its T steps from its true entering state, writing h (T steps).
# Only products of decays a = exp(delta * A) <= 1 ever appear, so nothing overflows however
# long L is or however fast a channel decays (a cumulative-sum-of-logs formulation needs
# exp(-cumsum), which overflows float32 after a few steps of a fast-decaying channel).
# The backward pass is the same scan run backwards in time (g_t = dL/dh_t):
#   g_t = dL/dh_t|direct + a_{t+1} * g_{t+1},   dL/db_t = g_t,   dL/d(log a_t) = g_t a_t h_{t-1}.


def _default_chunk_size(length: int) -> int:
    """About sqrt(L), a power of two in [8, 128]: ~2*sqrt(L) Python steps per scan."""
    return int(min(128, max(8, 2 ** round(math.log2(max(1.0, math.sqrt(length)))))))


def _scan_forward_(a: Tensor, h: Tensor, decay: Tensor, chunk: int) -> None:
    """In place: h (L, M) holds b on entry and h_t = a_t * h_{t-1} + b_t (h_{-1} = 0) on exit.

    decay (K, M): each chunk's prod(a_t), K = L // chunk; a tail of L % chunk steps follows.
    """
    length = a.shape[0]
    num_chunks, main = length // chunk, (length // chunk) * chunk
    prev = None  # state before the tail
    if num_chunks > 0:
        a_t = a[:main].view(num_chunks, chunk, -1).unbind(1)  # T x (K, M)
        h_t = h[:main].view(num_chunks, chunk, -1).unbind(1)  # T x (K, M)
        end = h_t[0]  # (K, M): each chunk's end state from a zero start
        for t in range(1, chunk):
            end = torch.addcmul(h_t[t], a_t[t], end)
        ends, decays = end.unbind(0), decay.unbind(0)  # K x (M,)
        carries = [torch.zeros_like(ends[0])]  # true state entering each chunk
        for k in range(1, num_chunks):
            carries.append(torch.addcmul(ends[k - 1], decays[k - 1], carries[-1]))
        carry = torch.stack(carries)  # (K, M)
        h_t[0].addcmul_(a_t[0], carry)
        for t in range(1, chunk):
            h_t[t].addcmul_(a_t[t], h_t[t - 1])
        prev = h[main - 1]
    for t in range(main, length):  # tail: plain steps
        if prev is not None:
            h[t].addcmul_(a[t], prev)
        prev = h[t]


def _scan_backward_(a: Tensor, g: Tensor, decay: Tensor, chunk: int) -> None:
    """In place: g (L, M) holds c on entry and g_t = c_t + a_{t+1} * g_{t+1} (g_L = 0) on exit.

    The mirror image of ``_scan_forward_`` with the same chunks (tail first); decay (K, M) is
    each chunk's prod(a_t) over all but its first step.
    """
    length = a.shape[0]
    num_chunks, main = length // chunk, (length // chunk) * chunk
    for t in range(length - 2, main - 1, -1):  # tail: plain steps
        g[t].addcmul_(a[t + 1], g[t + 1])
    if num_chunks == 0:
        return
    a_t = a[:main].view(num_chunks, chunk, -1).unbind(1)  # T x (K, M)
    g_t = g[:main].view(num_chunks, chunk, -1).unbind(1)  # T x (K, M)
    start = g_t[-1]  # (K, M): each chunk's g at its first step, from a zero end
    for t in range(chunk - 2, -1, -1):
        start = torch.addcmul(g_t[t], a_t[t + 1], start)
    starts, decays, firsts = start.unbind(0), decay.unbind(0), a_t[0].unbind(0)  # K x (M,)
    carries = [a[main] * g[main] if main < length else torch.zeros_like(starts[0])]
    for k in range(num_chunks - 2, -1, -1):  # carries[j]: a * g arriving at chunk K-1-j's end
        entering = torch.addcmul(starts[k + 1], decays[k + 1], carries[-1])  # g at chunk start
        carries.append(firsts[k + 1] * entering)
    carry = torch.stack(carries[::-1])  # (K, M)
    g_t[-1].add_(carry)
    for t in range(chunk - 2, -1, -1):
        g_t[t].addcmul_(a_t[t + 1], g_t[t + 1])


def _outer(v: Tensor, w: Tensor, groups: int) -> Tensor:
    """v (L, B, D), w (L, B, G, N) -> (L, B, D, N) with v[.., d] * w[.., d // H, :]."""
    length, batch, dim = v.shape
    out = v.view(length, batch, groups, dim // groups, 1) * w.unsqueeze(3)  # (L, B, G, H, N)
    return out.view(length, batch, dim, -1)


def _contract_state(h: Tensor, w: Tensor, groups: int) -> Tensor:
    """h (L, B, D, N), w (L, B, G, N) -> (L, B, D): sum_n h[.., d, n] * w[.., d // H, n]."""
    length, batch, dim, state = h.shape
    rows = length * batch * groups
    h_rows = h.view(rows, dim // groups, state).transpose(1, 2)  # (LBG, N, H)
    out = torch.bmm(w.reshape(rows, 1, state), h_rows)  # (LBG, 1, H); faster than h @ w
    return out.view(length, batch, dim)


def _contract_channels(v: Tensor, h: Tensor, groups: int) -> Tensor:
    """v (L, B, D), h (L, B, D, N) -> (L, B, G, N): sum over the H channels of each group."""
    length, batch, dim, state = h.shape
    rows = length * batch * groups
    out = torch.bmm(v.reshape(rows, 1, dim // groups), h.view(rows, dim // groups, state))
    return out.view(length, batch, groups, state)  # (L, B, G, N)


def _chunk_decay(delta: Tensor, A: Tensor, chunk: int, skip_first: bool) -> Tensor:
    """prod(a_t) over each whole chunk (or all but its first step) = exp(A * sum delta_t).

    The exponent is floored at log(smallest normal): exp underflows there anyway (the change is
    below the dtype's smallest normal number), and vectorized exp takes a ~15x slower path for
    results that would be subnormal, which whole-chunk decays of fast channels hit constantly.
    """
    length, batch, dim = delta.shape
    num_chunks = length // chunk
    chunks = delta[: num_chunks * chunk].view(num_chunks, chunk, batch, dim)  # (K, T, B, D)
    total = chunks.sum(1) - chunks[:, 0] if skip_first else chunks.sum(1)  # (K, B, D)
    log_decay = (total.unsqueeze(-1) * A).clamp_min_(math.log(torch.finfo(A.dtype).tiny))
    return log_decay.exp_().view(num_chunks, batch * A.numel())  # (K, B*D*N)


class _ChunkedSelectiveScan(torch.autograd.Function):
    """(delta, A, delta*u, B, C) time-major -> (y (L, B, D) without skip/gate, last state)."""

    @staticmethod
    def forward(ctx, delta, A, x, Bt, Ct, chunk):  # (L,B,D), (D,N), (L,B,D), (L,B,G,N) x2
        groups = Bt.shape[2]
        length = delta.shape[0]
        a = (delta.unsqueeze(-1) * A).exp_()  # (L, B, D, N): exp(delta_t * A)
        h = _outer(x, Bt, groups)  # (L, B, D, N): b_t = delta_t * u_t * B_t, becomes h in place
        decay = _chunk_decay(delta, A, chunk, skip_first=False)  # (K, B*D*N)
        _scan_forward_(a.view(length, -1), h.view(length, -1), decay, chunk)
        y = _contract_state(h, Ct, groups)  # (L, B, D)
        ctx.save_for_backward(delta, A, x, Bt, Ct, a, h)
        ctx.chunk = chunk
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        return y, h[-1].clone()  # (L, B, D), (B, D, N)

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx, grad_y, grad_last):
        delta, A, x, Bt, Ct, a, h = ctx.saved_tensors
        groups = Bt.shape[2]
        length, batch, dim, state = h.shape
        if grad_y is None:
            grad_y = torch.zeros_like(x)
        grad_y = grad_y.reshape(length, -1).contiguous().view(length, batch, dim)  # (L, B, D)
        g = _outer(grad_y, Ct, groups)  # (L, B, D, N): dL/dh_t through y_t only
        if grad_last is not None:
            g[-1] += grad_last
        decay = _chunk_decay(delta, A, ctx.chunk, skip_first=True)  # (K, B*D*N)
        _scan_backward_(a.view(length, -1), g.view(length, -1), decay, ctx.chunk)  # dL/dh_t
        grad_C = _contract_channels(grad_y, h, groups)  # (L, B, G, N)
        grad_x = _contract_state(g, Bt, groups)  # (L, B, D)
        grad_B = _contract_channels(x, g, groups)  # (L, B, G, N)
        g.mul_(a)  # reuse g: dL/d(delta_t * A) = g_t * a_t * h_{t-1}
        g[1:].mul_(h[:-1])
        g[0].zero_()
        per_channel = g.view(length * batch, dim, state).transpose(0, 1)  # (D, LB, N)
        grad_A = torch.bmm(delta.view(-1, dim).t().unsqueeze(1), per_channel).squeeze(1)  # (D, N)
        grad_delta = g.mul_(A).sum(-1)  # (L, B, D)
        return grad_delta, grad_A, grad_x, grad_B, grad_C, None


def _time_major(v: Tensor) -> Tensor:
    """(..., L) -> contiguous (L, ...), as one 2-D transpose (PyTorch's fast copy path)."""
    return v.reshape(-1, v.shape[-1]).t().contiguous().view(v.shape[-1], *v.shape[:-1])


def _time_last(v: Tensor) -> Tensor:
    """(L, ...) -> contiguous (..., L), as one 2-D transpose."""
    return v.reshape(v.shape[0], -1).t().contiguous().view(*v.shape[1:], v.shape[0])


def selective_scan_parallel(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan as a chunked parallel scan; same arguments and results as the reference.

    ``chunk_size`` (T) trades Python steps (~2T + L/T per pass) against slice size; the
    default is about sqrt(L). Memory: keeps two (B, D, L, N) tensors for the backward pass (as
    mamba-ssm's reference does; its kernel keeps none) and allocates one more during it.
    """
    groups = _check_shapes(u, delta, A, B, C)
    dtype = _compute_dtype(u)
    chunk = _default_chunk_size(u.shape[2]) if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk}")
    delta = _discretization_step(delta, delta_bias, delta_softplus, dtype)  # (B, D, L)
    u_c = u.to(dtype)  # (B, D, L)
    batch, dim, length = u.shape
    B = B.to(dtype).reshape(batch, groups, -1, length)  # (B, G, N, L)
    C = C.to(dtype).reshape(batch, groups, -1, length)  # (B, G, N, L)
    y, last_state = _ChunkedSelectiveScan.apply(
        _time_major(delta),  # (L, B, D)
        A.to(dtype),  # (D, N)
        _time_major(delta * u_c),  # (L, B, D): delta_t * u_t
        _time_major(B),  # (L, B, G, N)
        _time_major(C),  # (L, B, G, N)
        chunk,
    )  # (L, B, D), (B, D, N)
    out = _skip_and_gate(_time_last(y), u_c, D, z).to(u.dtype)  # (B, D, L)
    return (out, last_state) if return_last_state else out


# --------------------------------------------------------------------------------------------
# 4. dispatcher
# --------------------------------------------------------------------------------------------


@functools.cache
def _mamba_kernel() -> tuple[Callable | None, str]:
    """mamba-ssm's fused kernel, or None and why not (imported once, lazily)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:  # ImportError, or its CUDA extension failing to load
        return None, f"mamba_ssm does not import ({type(err).__name__}: {err})"
    return selective_scan_fn, "mamba_ssm imports"


def selective_scan_impl(u: Tensor) -> tuple[str, str]:
    """Which path ``selective_scan`` takes for inputs like `u`, and why: (impl, reason)."""
    forced = os.environ.get(SCAN_IMPL_ENV, "").strip().lower()
    if forced:
        if forced not in SCAN_IMPLS:
            raise ValueError(f"{SCAN_IMPL_ENV}={forced!r}: expected one of {', '.join(SCAN_IMPLS)}")
        if forced == "kernel":
            kernel, why = _mamba_kernel()
            if kernel is None:
                raise RuntimeError(f"{SCAN_IMPL_ENV}=kernel but {why}")
            if not u.is_cuda:
                raise RuntimeError(f"{SCAN_IMPL_ENV}=kernel needs CUDA tensors, got {u.device}")
        return forced, f"forced by {SCAN_IMPL_ENV}={forced}"
    if not u.is_cuda:
        return "parallel", f"{u.device.type} tensors (the mamba-ssm kernel needs CUDA)"
    kernel, why = _mamba_kernel()
    if kernel is None:
        return "parallel", f"CUDA tensors but {why}"
    return "kernel", f"CUDA tensors and {why}"


@functools.cache  # one line per distinct choice and process: normally exactly one
def _log_choice(impl: str, reason: str) -> None:
    log.info("selective scan: %s path (%s)", impl, reason)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan on the fastest available path (see ``selective_scan_impl``).

    Arguments and results as ``selective_scan_reference`` / mamba-ssm's ``selective_scan_fn``.
    The first call with a given choice logs one INFO line naming the path and the reason.
    """
    impl, reason = selective_scan_impl(u)
    _log_choice(impl, reason)
    if impl == "kernel":
        fn = _mamba_kernel()[0]
    elif impl == "parallel":
        fn = selective_scan_parallel
    else:
        fn = selective_scan_reference
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
