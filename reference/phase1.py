"""Phase 1 of the reference: softmax in compiled float64 with a rigorous per-output error bound.

As CRlibm and CORE-MATH do for libm, the reference runs in two phases. Phase 1 (here) computes
every output of a row in float64 together with an enclosure ``[lo, hi]`` of the exact value; when
both ends round to the same number of the target format, that number is the correctly rounded
result (rounding is monotone). Outputs whose enclosure holds a rounding boundary (rare: about
``2 r / 2**-t`` of them, ``r`` the relative width below, ``t`` the target's precision) send their
row to phase 2, the mpmath Ziv loop of :mod:`.correctly_rounded`. Phase 1 serves targets of at
most 24 bits (float32, float16, bfloat16, float8): its enclosures are a few float64 ULPs wide,
too wide to round into float64 except by luck. It shares no code with ``kernels/``: libm's exp
(through numba), its own summation.

Derivation (``u = 2**-53``; a row of float64 values ``x_j`` taken exactly, with no NaN and no
``+inf`` and at least one finite entry: other rows go to phase 2, which answers them at once)
---------------------------------------------------------------------------------------------
1. ``m = max_j x_j`` (exact). ``d̂_j = fl(x_j - m) = d_j (1 + a_j)``, ``|a_j| <= u``; TwoSum
   gives the subtraction's exact error, so ``a_j = 0`` is known whenever the difference is exact
   (always for inputs of the narrow formats within 2**29 of each other).
2. ``ê_j = exp(d̂_j)`` by libm (glibc: within 1 ULP, its documented bound, so a relative ``2u``
   for a normal result). With ``t_j = |d̂_j| u (1 + 2u)`` (0 when exact; ``|d_j a_j| <= t_j``):
   ``ê_j = e_j (1 + eps_j)``, ``|eps_j| <= A_j = t_j (1 + t_j) + 2u (1 + t_j (1 + t_j))``
   (``exp(t) - 1 <= t (1 + t)`` for ``t <= 1``). Terms with ``d̂_j < -708`` (masked ``-inf``
   included) are dropped: ``e_j < 2**-1021`` (``d_j < -708 / (1 + u)``), so each moves the sum
   ``S >= 1`` by a relative ``2**-1021`` at most, and the output itself lies in ``[0, 2**-1021]``,
   which rounds to 0 in every target here.
3. ``Ŝ`` = Sum2 of the kept ``ê_j`` (Ogita, Rump & Oishi, "Accurate sum and dot product", SIAM J.
   Sci. Comput. 26(6), 2005, Alg. 4.4 and Prop. 4.5: TwoSum along the row, the errors summed
   and added at the end): ``|Ŝ - sum ê_j| <= u |sum ê_j| + gamma_(n-1)^2 sum |ê_j|``, so
   ``Ŝ = (sum ê_j)(1 + sigma)``, ``|sigma| <= u + gamma_(n-1)^2``. And ``sum ê_j = S (1 + ebar)``,
   ``|ebar| <= W = (sum_j ê_j A_j / sum_j ê_j)(1 + 2**-40)`` (the weights ``e_j / S`` and
   ``ê_j / sum ê`` differ by a factor within ``1 +- 2**-42``, as every ``A_j < 2**-43``), plus
   the dropped terms' ``n 2**-1021``.
4. ``ŷ_i = fl(ê_i / Ŝ) = (ê_i / Ŝ)(1 + delta)``, ``|delta| <= u``, or an absolute ``2**-1075``
   when the quotient is subnormal. So ``ŷ_i / y_i = (1 + eps_i)(1 + delta) / ((1 + ebar)(1 +
   sigma))`` and ``|ŷ_i - y_i| <= r_i ŷ_i + 2**-1074`` with
   ``r_i = (A_i + W + sigma + u + n 2**-1021)(1 + 2**-20)``: every term is below ``2**-40``, so the
   products' second-order terms (``< 2**-80``) are covered by the factor ``2**-20 r_i >= 2**-73``,
   which also covers this formula's own float64 evaluation.
5. The enclosure is ``[ŷ_i (1 - r_i - 4u) - 2**-1073, ŷ_i (1 + r_i + 4u) + 2**-1073]`` (the
   ``4u`` absorbs the roundings of evaluating it), clamped at 0; dropped outputs get ``[0,
   2**-1020]``. :func:`softmax_bounds` returns ``ŷ`` and ``r``; :func:`softmax` rounds both ends.

Typical width: ``r_i`` is about ``5u`` for inputs of the narrow formats, so a float32 output is
undecided with probability about ``2**-26``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numba
import numpy as np

from softmax_bench.formats import Format
from softmax_bench.jit import numba_cache

__all__ = ["MAX_TARGET_PRECISION", "softmax_bounds", "enclosure", "softmax"]

_, _cached_njit = numba_cache(Path(__file__).parent)

#: Phase 1 decides targets of at most this many significand bits (float32 and narrower).
MAX_TARGET_PRECISION = 24
_U = 2.0**-53
_DROP = -708.0  # exp of anything below is < 2**-1021 (subnormal territory): dropped
_SAFETY = 1.0 + 2.0**-20
_ABS = 2.0**-1073


@_cached_njit
def _row(x, y, r):
    """Phase 1 on one row (module docstring): fills ``y`` (ŷ) and ``r`` (relative bound; -1 for
    a dropped output, whose value is in [0, 2**-1021]). Returns False for a row phase 1 does not
    take (NaN, +inf, or no finite entry)."""
    n = x.size
    m = -np.inf
    for j in range(n):
        v = x[j]
        if v != v or v == np.inf:
            return False
        m = max(m, v)
    if m == -np.inf:
        return False
    s = 0.0  # Sum2: s + c is the sum
    c = 0.0
    weighted = 0.0  # sum ê_j A_j
    for j in range(n):
        d = x[j] - m
        if d < _DROP:
            y[j] = 0.0
            r[j] = -1.0
            continue
        bp = d - x[j]  # TwoSum(x_j, -m): err is the subtraction's exact error
        err = (x[j] - (d - bp)) + (-m - bp)
        t = 0.0 if err == 0.0 else abs(d) * _U * (1.0 + 2.0 * _U)
        tt = t * (1.0 + t)
        a = tt + 2.0 * _U * (1.0 + tt)
        e = np.exp(d)
        y[j] = e
        r[j] = a
        weighted += e * a
        hi = s + e  # TwoSum(s, e)
        bb = hi - s
        c += (s - (hi - bb)) + (e - bb)
        s = hi
    total = s + c
    g = (n - 1) * _U / (1.0 - (n - 1) * _U)
    sigma = _U + g * g
    w = weighted / total * (1.0 + 2.0**-40)
    common = w + sigma + _U + n * 2.0**-1021
    for j in range(n):
        if r[j] >= 0.0:
            y[j] = y[j] / total
            r[j] = (r[j] + common) * _SAFETY
    return True


@_cached_njit
def _round(v, p, emin, top, has_inf):
    """``v >= 0`` rounded to nearest-even in the format (p, emin, largest finite ``top``): the
    arithmetic of ``formats.round_float64`` (tested equal to it), compiled, as the decision runs
    on every output and numpy's temporaries cost 30 times the arithmetic."""
    if v == 0.0:
        return 0.0
    e = max(math.frexp(v)[1] - 1, emin)
    q = math.ldexp(1.0, e - p + 1)
    r = np.rint(v / q) * q
    if r > top:
        return np.inf if has_inf else np.nan
    return r


@_cached_njit
def enclosure(y, r):
    """``(lo, hi)`` around the exact output from phase 1's ``ŷ`` and relative bound ``r``
    (module docstring, 5.; ``r < 0``: a dropped output, ``[0, 2**-1020]``)."""
    if r < 0.0:
        return 0.0, 2.0**-1020
    pad = r + 4.0 * _U
    return max(y * (1.0 - pad) - _ABS, 0.0), y * (1.0 + pad) + _ABS


@_cached_njit
def _decide_row(y, r, out, p, emin, top, has_inf):
    """Rounds both ends of every enclosure of a row into ``out``; False when some output is
    undecided."""
    for j in range(y.size):
        lo, hi = enclosure(y[j], r[j])
        a = _round(lo, p, emin, top, has_inf)
        if a != _round(hi, p, emin, top, has_inf):
            return False
        out[j] = a
    return True


@_cached_njit(parallel=True)
def _bounds_rows(x, y, r, taken):
    for i in numba.prange(x.shape[0]):
        taken[i] = _row(x[i], y[i], r[i])


@_cached_njit(parallel=True)
def _softmax_rows(x, out, decided, p, emin, top, has_inf):
    for i in numba.prange(x.shape[0]):
        y = np.empty(x.shape[1])
        r = np.empty(x.shape[1])
        decided[i] = _row(x[i], y, r) and _decide_row(y, r, out[i], p, emin, top, has_inf)


def softmax_bounds(rows: np.ndarray):
    """``(ŷ, r, taken)`` for float64 ``rows`` (2-D): per output the float64 value and its
    relative bound (-1: dropped, value in [0, 2**-1021]), per row whether phase 1 took it."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    y = np.empty_like(rows)
    r = np.empty_like(rows)
    taken = np.empty(rows.shape[0], dtype=np.bool_)
    if rows.size:
        _bounds_rows(rows, y, r, taken)
    return y, r, taken


def softmax(rows: np.ndarray, fmt: Format):
    """``(values, decided_rows)`` of phase 1 for float64 ``rows`` (2-D) into ``fmt`` (precision at
    most :data:`MAX_TARGET_PRECISION`): ``values`` holds the correctly rounded outputs of every
    row where ``decided_rows`` is True; the other rows are left to phase 2."""
    if fmt.precision > MAX_TARGET_PRECISION:
        raise ValueError(f"phase 1 decides targets of at most {MAX_TARGET_PRECISION} bits, not {fmt.name}")
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    out = np.zeros_like(rows)
    decided = np.zeros(rows.shape[0], dtype=np.bool_)
    if rows.size:
        _softmax_rows(rows, out, decided, fmt.precision, fmt.emin, fmt.max_finite, fmt.has_inf)
    return out, decided
