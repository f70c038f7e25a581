"""The logsumexp and log_softmax kernels' forward error bounds (naive, shifted, shifted_log1p).

Operations (``kernels/lse.py``): the sum of :mod:`.common` (its lemma gives ``log(ŝ_tot / S)`` in
``[L_lo, L_hi]``), then ``l̂ = log(ŝ)`` or ``log1p(ŝ')`` (``= log(1 + ŝ')``, evaluated
directly), then logsumexp ``l̂`` (naive) or ``fl(m + l̂)``, log_softmax ``fl(x_i - l̂)`` (naive) or
``fl(fl(x_i - m) - l̂)``, each then stored (one more rounding when the compute format is wider).

Absolute errors, with ``y = log S`` (+ ``m``) the exact logsumexp and ``y_i = d_i - log S`` the
exact log_softmax:

1. the sum: ``|log ŝ_tot - log S| <= delta := max(-L_lo, L_hi)``.
2. the logarithm: ``|l̂ - log ŝ_tot| <= eps_L := E_L (2u (|log S| + delta) + sub)`` (``E_L`` ULPs,
   an ULP of a normal value at most ``2u`` of it, ``sub`` for a subnormal one).
   So ``|l̂ - log S| <= a_l := delta + eps_L``.
3. the last operation, a rounded addition (no absolute term: a subnormal sum is exact):
   logsumexp shifted: ``|ŷ - y| <= a_l + u (|y| + a_l)``; naive: ``a_l`` (no addition).
   log_softmax: ``fl(x_i - m) = d_i (1 + alpha)``, so ``|ŷ_i - y_i| <= u |d_i| + a_l +
   u (|y_i| + u |d_i| + a_l)`` (naive: no ``u |d_i|`` terms).
4. the store, when the compute format is wider: ``+ u_s (|y| + a) + sub_s / 2`` for the error
   ``a`` so far.

Against the correctly rounded reference ``r``, in ULPs of ``r``: ``a / ulp(r) + 1/2``.

To first order ``delta = (D + 2E + sum_j y_j |d_j|) u`` (the sum lemma's ``tau + D u``), so
logsumexp shifted errs by at most ``(D + 2E + sum_j y_j |d_j| + 2 E_L |log S| + |y|) u``: with
``sum_j y_j |d_j| <= m - x_min`` and ``D <= n - 1``, ``2E = 1``, ``2 E_L = 1`` for correctly
rounded exp and log, this is ``(|y| + n + m - x_min + log S) u``, BHH's Thm 4.2
``|y + n - x_min| u`` up to the rounding of ``log`` itself, which their model leaves out; naive,
``delta = (D + 2E) u``: BHH's Thm 3.2 ``(|y| + n + 1) u`` likewise (plus ``|log S| u``). shifted_log1p replaces
``delta`` by ``w`` times the others' error, ``w = S'/S``: never larger. log_softmax shifted:
``(|d_i| + delta + 2 E_L |log S| + |y_i|) u``.

Outputs at or near zero: the error is measured, as everywhere, in ULPs of the correctly rounded
output. Near zero that ULP is tiny while the absolute error of ``l̂`` is not (it is at least the
rounding of a sum near 1), so the bound in ULPs grows like ``1 / |y|``: this is the function's
conditioning under these algorithms, not a defect of the measure, and the report marks bounds
above 10**6 ULPs. The log1p form (shifted_log1p) is the one that keeps a relative error there:
for log_softmax of the maximum, ``y_k = -log1p(S')``, ``delta`` is about ``S'(tau' + D u)``.

Domain: ``"nonfinite_input"`` as for softmax (reference NaN, or ``-inf`` for a row of only
``-inf`` for logsumexp); naive: ``"overflow"`` when the sum may overflow (``s_hi >=`` the compute
format's largest finite), ``"underflow"`` when it may vanish (``tau >= 1``); every algorithm:
``"overflow"`` also when an output or ``x_i - m`` may pass the largest finite of the compute or
storage format (``|y| + a`` or ``|d_i|`` at least that): an intermediate infinity, whose outcome
the bound does not describe. ``-inf`` entries (log_softmax) give ``-inf`` exactly: bound 0.

Evaluated in float64 as :mod:`.common`. Every term of the bound is a product of positive
factors, each evaluated with a relative error far below :data:`.common.EVAL_SAFETY` - 1, except
``|y|`` and ``|d_i|``, which float64 evaluates with an absolute error of a few float64 ulps of
``|m| + |log S| + |d_i|`` (cancellation in ``d_i - log S`` or ``m + log S``); they enter the bound
multiplied by ``u`` or ``u_s``, so ``EVAL_REL (u + u_s)`` times those magnitudes is added. All
times :data:`.common.EVAL_SAFETY`.
"""
from __future__ import annotations

import numpy as np

from .common import EVAL_ABS, EVAL_REL, EVAL_SAFETY, RowBounds, kernel_constants, row_bounds, sum_enclosure

__all__ = ["logsumexp_bounds", "log_softmax_bounds", "logsumexp_error", "sum_log_error"]


def sum_log_error(k, rs):
    """Per row: the domain of the sum (``overflow``, ``underflow``: naive only), and ``a_l``, the
    bound on ``|l̂ - log S|`` (steps 1 and 2 of the module docstring), as rows x 1 arrays."""
    rows = rs.S.shape[0]
    special = rs.special
    if k.shifted:
        overflow = np.zeros(rows, bool)
        underflow = np.zeros(rows, bool)
    else:
        overflow = ~special & ~(rs.s_hi < k.compute.max_finite)
        underflow = ~special & ~overflow & ~((rs.tau < 1) & (rs.S > 0) & np.isfinite(rs.L_lo))
    delta = np.maximum(-rs.L_lo, rs.L_hi)[:, None]
    a_l = delta + k.E_L * (2 * k.u * (np.abs(rs.log_S[:, None]) + delta) + k.sub)
    return overflow, underflow, a_l


def logsumexp_error(k, rs):
    """Per row (rows x 1): the exact logsumexp ``y`` (float64), the bound on the error of the
    kernel's value in the compute format, before any storage rounding (steps 1-3), and its
    float64-evaluation slack; with :func:`sum_log_error`'s domain."""
    overflow, underflow, a_l = sum_log_error(k, rs)
    y = rs.m + rs.log_S[:, None]
    a = a_l + k.u * (np.abs(y) + a_l) if k.shifted else a_l
    slack = EVAL_REL * (k.u + k.u_s) * (np.abs(rs.m) + np.abs(rs.log_S[:, None]) + np.abs(y))
    return y, a, slack, overflow, underflow


def _bounds(spec, x, ref, log_softmax: bool) -> RowBounds:
    k = kernel_constants(spec)
    n = np.shape(x)[-1]
    rs = sum_enclosure(k, x, n)
    u, u_s = k.u, k.u_s
    with np.errstate(all="ignore"):
        special = rs.special
        finite_x = np.isfinite(rs.d)
        if log_softmax:
            overflow, underflow, a_l = sum_log_error(k, rs)
            log_S = rs.log_S[:, None]
            d = np.where(finite_x, rs.d, 0.0)
            y = d - log_S
            if k.shifted:
                a = u * np.abs(d) + a_l
                a = a + u * (np.abs(y) + u * np.abs(d) + a_l)
            else:
                a = a_l + u * (np.abs(y) + a_l)
            # d_i = x_i - m is rounded relative to |d_i| only; y_i = d_i - log S to |d_i| + |log S|
            slack = EVAL_REL * (u + u_s) * (np.abs(log_S) + np.abs(d) + np.abs(y))
        else:
            y, a, slack, overflow, underflow = logsumexp_error(k, rs)
        a = a + u_s * (np.abs(y) + a) + 0.5 * k.sub_s
        a = (a + slack + EVAL_ABS) * EVAL_SAFETY
        limit = min(k.compute.max_finite, k.storage.max_finite)
        big = (np.abs(y) + a >= limit) | (np.abs(np.where(finite_x, rs.d, 0.0)) >= limit)
        overflow |= ~special & ~underflow & big.any(axis=1)
        if log_softmax:  # -inf entries give -inf exactly
            a = np.where(finite_x, a, 0.0)
            y = np.where(finite_x, y, -np.inf)
    return row_bounds(k, a, y, ref, special, overflow, underflow)


def logsumexp_bounds(spec, x, ref=None) -> RowBounds:
    """The module docstring's bound for logsumexp kernel ``spec`` on ``x`` (rows along the last
    axis); arrays are rows x 1. ``ref``: the correctly rounded reference (one value per row)."""
    return _bounds(spec, x, ref, log_softmax=False)


def log_softmax_bounds(spec, x, ref=None) -> RowBounds:
    """The module docstring's bound for log_softmax kernel ``spec`` on ``x`` (rows along the last
    axis). ``ref``: the correctly rounded reference (same shape)."""
    return _bounds(spec, x, ref, log_softmax=True)
