"""The softmax backward-pass kernels' per-element forward error bound (``kernels/softmax_vjp``).

Model (``kernels/softmax_vjp/backward.py``): ``ŷ`` the forward kernel's stored output, within
``a_j`` of the exact ``y_j = softmax(x)_j`` (:func:`.softmax.softmax_bounds` of the forward kernel,
its store included); then, each operation in the compute precision (``u``, ``sub``; ``u_s``,
``sub_s`` of the storage format when the compute is wider, else 0):
``p_j = fl(g_j ŷ_j)``, ``ĉ = sum_j p_j`` (depth ``D = arith.sum_depth(n, compute)``),
``t_i = fl(g_i - ĉ)``, ``ẑ_i = fl(t_i ŷ_i)`` stored. The exact value is ``z_i = y_i (g_i - C)``,
``C = sum_j g_j y_j``.

1. products: ``|p_j - g_j ŷ_j| <= u |g_j ŷ_j| + sub/2``; with ``P = sum_j |g_j| (y_j + a_j)``
   (``>= sum |g_j ŷ_j|``), ``sum_j |p_j| <= P (1 + u) + n sub/2``.
2. the signed sum: ``|ĉ - sum_j p_j| <= ((1 + u)^D - 1) sum_j |p_j|`` (Higham, Lemma 3.1 /
   section 4.2: every term meets at most ``D`` roundings; an exact subnormal sum only helps).
3. so ``|ĉ - C| <= e_c := sum_j |g_j| a_j + u P + n sub/2 + ((1 + u)^D - 1)(P (1 + u) + n sub/2)``.
4. ``t_i = (g_i - ĉ)(1 + delta)`` (a difference of two floats; exact when subnormal),
   ``ẑ_i = t_i ŷ_i (1 + delta') + eta`` (``|eta| <= sub/2``), stored: ``(1 + delta_s) + eta_s``.

Hence, with ``ŷ_i <= y_i + a_i`` and ``|g_i - ĉ| <= |g_i - C| + e_c``:

    |ẑ_i - z_i| <= a_i |g_i - C| + (y_i + a_i) e_c
                   + (y_i + a_i)(|g_i - C| + e_c)((1 + u)^2 (1 + u_s) - 1)
                   + (sub/2)(1 + u_s) + sub_s/2.

To first order, relative to ``y_i (|g_i| + |C|)``: the forward error ``F_i`` of the softmax,
plus ``(D + 1) u sum_j |g_j| y_j / (|g_i| + |C|)`` from the dot product, plus ``2u + u_s``.
Where ``g_i`` is close to ``C`` the output is the small difference of two larger numbers:
the bound is absolute in nature and its ULP count, relative to a tiny ``z_i``, is large. That
is the honest measure of a backward pass (every framework computes it this way); the audit
compares each element with its own bound, never with a fixed ULP budget.

Evaluation in float64: ``y_j`` (from the forward bound) carries a relative error of at most
``(|d_j| + log2 n + 4) 2**-52`` (exp, the pairwise sum, the division), so ``C`` computed from it
errs by at most ``2**-50 sum_j |g_j| y_j (|d_j| + log2 n + 4)``, added to ``e_c`` (for float64
compute this is a few ``u P``, the size of the bound's own terms; far below them otherwise).

Domain: the forward row's (its reasons carry over), ``g`` finite, and no intermediate near the
compute format's largest finite: ``max_i |g_i| + P (1 + u)^(D + 1) < max_finite`` ("overflow").
"""
from __future__ import annotations

import math

import numpy as np

from .common import EVAL_ABS, EVAL_SAFETY, RowBounds, kernel_constants, row_bounds, sum_depth
from .softmax import softmax_bounds

__all__ = ["softmax_vjp_bounds", "forward_kernel"]


def forward_kernel(spec):
    """The softmax kernel whose stored output the backward kernel ``spec`` takes."""
    import importlib

    from softmax_bench.kernels import get_kernel

    module = importlib.import_module(f"softmax_bench.kernels.softmax_vjp.{spec.algorithm}")
    return get_kernel(module.FORWARD, spec.dtype, spec.compute)


def softmax_vjp_bounds(spec, x, g, ref=None) -> RowBounds:
    """The module docstring's bound for backward kernel ``spec`` on ``x`` and cotangent ``g``
    (storage dtype, same shape, along the last axis); ``ref`` the correctly rounded reference
    ``J^T g`` (the ULP unit; without it a lower bound of that ULP)."""
    k = kernel_constants(spec)
    n = np.shape(x)[-1]
    fb = softmax_bounds(forward_kernel(spec), x)
    rows = fb.in_domain.size
    g64 = np.asarray(g).astype(np.float64).reshape(rows, n)
    x64 = np.asarray(x).astype(np.float64).reshape(rows, n)
    D = sum_depth(n, k.compute.name)
    with np.errstate(all="ignore"):
        special = ~fb.in_domain & (fb.reason == "nonfinite_input")
        special |= ~np.isfinite(g64).all(axis=1)
        dom = fb.in_domain & ~special
        y = np.where(dom[:, None], fb.y, 0.0)
        a = np.where(dom[:, None], fb.abs_bound, 0.0)
        gs = np.where(dom[:, None], g64, 0.0)
        ag = np.abs(gs)
        C = (gs * y).sum(axis=1, keepdims=True)
        m = np.where(dom, np.where(np.isfinite(x64), x64, -np.inf).max(axis=1), 0.0)[:, None]
        d = np.where(np.isfinite(x64), np.abs(x64 - m), 0.0)
        slack_c = 2.0**-50 * (ag * y * (d + math.log2(n) + 4)).sum(axis=1, keepdims=True)
        P = (ag * (y + a)).sum(axis=1, keepdims=True)
        grow = (1 + k.u) ** D - 1
        half_sub_n = n * k.sub / 2
        e_c = ((ag * a).sum(axis=1, keepdims=True) + k.u * P + half_sub_n
               + grow * (P * (1 + k.u) + half_sub_n) + slack_c)
        dgc = np.abs(gs - C) + slack_c
        yh = y + a
        abs_bound = (a * dgc + yh * e_c + yh * (dgc + e_c) * ((1 + k.u) ** 2 * (1 + k.u_s) - 1)
                     + 0.5 * k.sub * (1 + k.u_s) + 0.5 * k.sub_s + EVAL_ABS) * EVAL_SAFETY
        reach = ag.max(axis=1) + P[:, 0] * (1 + k.u) ** (D + 1)
        overflow = ~fb.in_domain & (fb.reason == "overflow")
        overflow |= dom & ~(reach < k.compute.max_finite)
        underflow = ~fb.in_domain & (fb.reason == "underflow")
        z = y * (gs - C)
    return row_bounds(k, abs_bound, z, ref, special, overflow & ~special, underflow & ~special & ~overflow)
