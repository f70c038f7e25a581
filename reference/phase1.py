"""Phase 1 of the reference: softmax in compiled float64 with a rigorous per-output error bound.

As CRlibm and CORE-MATH do for libm, the reference runs in two phases. Phase 1 (here) computes
every output of a row in float64 together with an enclosure ``[lo, hi]`` of the exact value; when
both ends round to the same number of the target format, that number is the correctly rounded
result (rounding is monotone). Outputs whose enclosure holds a rounding boundary (rare: about
``2 r / 2**-t`` of them, ``r`` the relative width below, ``t`` the target's precision) send their
row to phase 2, the mpmath Ziv loop of :mod:`.correctly_rounded`. In float64 it serves targets
of at most 24 bits (float32, float16, bfloat16, float8): its enclosures are a few float64 ULPs
wide, too wide to round into float64 except by luck; float64 targets go through double-doubles
(last section). It shares no code with ``kernels/``: libm's exp and log1p (through numba), its
own double-double exp, its own summation.

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
   the dropped terms' ``n 2**-1021``; the float64 evaluation of ``W`` (a plain sum: relative
   ``gamma_n``) is covered by the ``1 + 2**-20`` of 4. for rows of fewer than ``2**30``.
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

Log-sum-exp and log-softmax (:func:`logsumexp`, :func:`log_softmax`)
--------------------------------------------------------------------
``L = m + l``, ``l = log1p(S')``, ``S' = sum_(j != k) e_j`` (``k`` the first maximum, whose term
is exactly 1: no cancellation in ``log``, as Blanchard, Higham & Higham's Alg. 4.1). ``Ŝ'`` by
Sum2 as in 3. over the other kept terms: ``Ŝ' = S' (1 + eps)``, ``|eps| <= E' = (W' + sigma')
(1 + 2**-30)`` (``W'`` the weighted ``A_j`` over ``j != k``, ``sigma' = u + gamma_(n-2)^2``).
Then ``|log1p(Ŝ') - l| = |log1p(eps S' / (1 + S'))| <= E' l / (1 - E')`` (as ``S' / (1 + S')
<= l``), libm's ``log1p`` adds 1 ULP (``2u |l̂|``, glibc's documented bound), and dropped terms
an absolute ``n 2**-1021``: ``|l̂ - l| <= delta = (E' |l̂| / (1 - E') + 2u |l̂|)(1 + 2**-20) +
n 2**-1021``. The outputs are formed exactly as double-doubles: ``m + l̂`` by TwoSum, and
``x_i - m - l̂`` as TwoSum(``d̂_i``, ``-l̂``) plus the shift's own TwoSum error, so the exact
output lies within ``delta`` of ``s + t`` (``s`` the float64 sum, ``t`` the sum of the error
terms). Each end ``s + (t -+ delta2)`` is again an exact double-double (TwoSum), rounded as one
(:func:`_decided_dd`): so an output whose exact part is a rounding midpoint (``x_i - m`` often is
one of float32, being a difference of two float32 values) plus a remainder far below a float64
ULP is decided by the remainder's sign, as phase 2's ``_exact_plus_tiny`` does. When nothing is
uncertain (``delta = 0`` and no error term: a row whose other entries are all masked) the output
is ``s`` exactly. Masked entries give ``-inf`` exactly, as phase 2 does.

The VJP (:func:`vjp`): ``z_i = y_i (g_i - c)``, ``c = sum_j g_j y_j``
------------------------------------------------------------------------
From 4.: ``|ŷ_j - y_j| <= rho_j = r_j ŷ_j + 2**-1074`` (dropped outputs: ``ŷ_j = 0``, ``rho_j =
2**-1021``; masked ones are exactly 0 and left out). The difference ``g_i - c`` cancels when one
term dominates (``c`` is then close to ``g_k``), so it is formed around the first maximum ``k``:
``g_i - c = (g_i - g_k) + delta_k``, ``delta_k = g_k - c = sum_(j != k) y_j (g_k - g_j)`` (as
``sum_j y_j = 1``), whose terms are all small when ``y_k`` is close to 1. ``t̂_j = fl(ŷ_j
fl(g_k - g_j))``, ``deltâ`` = Sum2 of the ``t̂_j``: ``|deltâ - delta_k| <= E = (sum_j |g_k -
g_j| rho_j (1 + u) + 2u (1 + u) sum_j |t̂_j| + u |deltâ| + gamma_(n-1)^2 sum_j |t̂_j|)(1 +
2**-20)``, plus ``2**-1074`` per term (a product that underflows; rows whose differences
overflow float64 go to phase 2). ``D̂_i = fl(fl(g_i - g_k) + deltâ)``: ``g_i - c`` lies in ``[D̂_i -+ w_i]``, ``w_i =
(E + u |g_i - g_k| (1 + u) + u |D̂_i|)(1 + 4u) + 2**-1073``, and ``y_i`` in the enclosure of
5.; ``z_i`` lies between the extreme products of the two intervals' ends, each widened by ``2u``
of itself and ``2**-1074`` (underflow included; an end that is an exact zero, from ``y_i``'s
lower end 0, stays a signed zero, -0 ordered below +0: ``z_i`` then has the sign of ``g_i - c``, which a tiny output's rounding to ``-0``
or ``+0`` needs). Masked entries give exactly 0; rows with a non-finite unmasked ``g`` go to
phase 2 (which makes them NaN), as do exact zeros (``g_i`` equal to the mean of ``g`` over every
group of equal ``x``: their interval holds 0).

float64 targets and exact values: double-doubles
------------------------------------------------
A float64 output needs an enclosure far narrower than float64's own ULP, so the same steps run
in double-double arithmetic (:mod:`.double_double`: Joldes, Muller & Popescu's operations, each
with its proven relative bound, ``U2 = u^2``), the scale of every term kept apart.

1. ``d_j = x_j - m`` is exact as the double-double ``(dh, dl)`` of TwoSum; ``e^(d_j) = 2**k_j
   (eh + el)`` within ``EXP_REL = 2**-98`` relative (:func:`.double_double.exp`, its bound
   derived there) for ``dh >= -1100``; below, the term is under ``2**-1586`` and bounded so
   (step 2).
2. Sums (:func:`_sum_dd`), scaled by ``2**-K`` (``2**K`` the largest term's scale; exact, and no
   term's low word underflows): TwoSum along the high words, TwoSum along their errors and the
   low words, a plain sum of those errors (its rounding below ``gamma_2n`` times their
   magnitudes' sum, measured while summing), the three joined by TwoSum plus one rounding
   (``u`` of it). Terms below ``2**(K - 250)`` are left out (each below ``2**-249.5`` of
   ``2**K``), and so are terms below e^-1100 (``2**-1586`` each; ``K = -1086`` when nothing
   else is there). So ``|Ŝ - S| <= (EXP_REL + err / Sh) Ŝ`` with ``err`` the run-time bound,
   in the sum's scale; scaled back (:func:`_unscaled`), ``2**-1073`` more for underflow.
3. Softmax: ``y_j = 2**k_j div(E_j, Ŝ)`` within ``rho = (2 EXP_REL + err/Sh + DIV_REL)(1 +
   2**-20)`` relative (every relative term is below ``2**-90``: their products are covered by the
   ``2**-20``). The ends ``q (1 -+ rho)`` are formed exactly as double-doubles and rounded as
   such (:func:`_decided_dd`) into the format with its exponent range moved by ``-k_j``:
   rounding ``2**k v`` is ``2**k`` times rounding ``v`` there, so outputs down to ``2**-1074``
   keep their 106 bits (:func:`_decided_scaled`; values below half the smallest subnormal are
   signed zeros, the rest is first brought near 1 by a further power of two).
4. ``l = log1p(S')`` (``S'`` by 2. without the maximum's term). For ``S' < 2**-60``: ``l = S' -
   S'^2/2 + r``, ``0 < r < S'^3/3``, formed by ``add_fp`` in the sum's scale ``2**K`` (so ``l``
   keeps its bits far below ``2**-1074``); ``delta`` adds ``S'``'s error, the operation's, the
   rounding of ``S'^2/2`` and ``r``. The maximum's log-softmax ``-l`` and a log-sum-exp ``m +
   l`` with ``m = 0`` are rounded in that scale (a ``-l`` below half the smallest subnormal is
   ``-0``: ``l > 0`` whenever another entry is unmasked); the other outputs take ``l`` scaled
   back (``2**-1073`` more where it underflows). Otherwise
   ``l0 = log1p(Sh)`` (libm) and one Newton step on ``expm1``: with ``E = expm1(l0)``
   (:func:`.double_double.expm1`, ``EXPM1_REL = 2**-97``) the exact ``c = (S' - E) / (1 + E)``
   gives ``l = l0 + log1p(c)``; ``c`` is computed in float64 from the double-double difference
   (``4u`` relative: its high word, the rounding of ``1 + E``, the division) and ``l = l0 + (c -
   c^2/2)`` with ``|log1p(c) - c + c^2/2| <= |c|^3`` for ``|c| < 2**-40`` (checked; otherwise
   phase 2). ``delta = ((eps_S S' + EXPM1_REL E + ADD_REL |S' - E|) / (1 + E) + 4u |c| + u |c -
   c^2/2| + u c^2 + |c|^3)(1 + 2**-20)``. libm's accuracy enters only through ``|c|``, which is
   measured, not assumed. The outputs are formed as in the previous section with the
   double-double ``l`` (its low word joins ``t``, that rounding, ``u |t|``, joins the width).
   A shift that needs 54 bits is a float64 midpoint: when ``0 < l`` (at most ``l̂ + |l̂_lo| +
   delta``) is below a quarter ULP of the shift's low word, no rounding boundary lies in
   ``[d_j - l, d_j)``, so the output is ``d_j`` minus an infinitesimal rounded: the float64
   ``d̂_j``, or the float below it when ``d_j`` is the midpoint just below ``d̂_j``.
5. The VJP, linear in ``g``: ``g`` is first scaled by the power of two ``2**s`` that brings its
   largest magnitude into ``[1/2, 1)`` (when that is exact for every entry; the results are
   scaled back by ``2**-s``), so cotangents near 1e308 or 1e-308 neither overflow nor underflow.
   ``h_j = g_k - g_j`` exact by TwoSum (an overflow goes to phase 2; exact zeros are skipped),
   ``t_j = y_j h_j`` formed at ``y_j``'s scale and summed by ``add`` at the scale ``2**K`` of the
   largest ``y_j`` (``j != k``), so ``delta_k = sum t_j`` keeps its bits when every term is tiny;
   run-time bound ``e = sum_j (|h_j| rho |y_j| + MUL_REL |t̂_j| + ADD_REL |partial sum_j| +
   2**-1072) (1 + 2**-20)`` in that scale (a ``y_j`` below ``2**-1586`` adds ``|h_j| 2**-1585
   + 2**-1074`` instead). An output with ``g_i = g_k`` is ``y_i delta_k``: rounded at scale
   ``2**(k_i + K)``; when every other ``y_j`` is below ``2**-1586`` it is a zero with the sign of
   ``sum_j e^(x_j - x_1) h_j`` (``x_1`` the largest of them; double-doubles with their bound,
   :func:`_tiny_delta_sign`), when that sum's bound excludes 0 and ``|delta|`` is below
   ``2**-1075``. Otherwise ``D_i = add(g_i - g_k, delta_k)`` within ``w_i = e + ADD_REL |D̂_i|``
   (``delta_k`` scaled back, ``2**-1073`` more for underflow); ``z_i = 2**k_i mul(q_i,
   D̂_i)`` within ``(rho q (|D̂| + w) + q (1 + rho) w + MUL_REL |ẑ| + 2**-1071)(1 + 2**-20)`` in
   the scaled units (the last term: the product's underflow where ``D_i`` is tiny), rounded as
   softmax's. An output whose ``y_i`` is below ``2**-1586`` is a zero with the sign of ``D_i``
   when ``D_i``'s interval excludes 0 and ``y_i D_i`` is below half the smallest subnormal.
   ``D_i = 0`` exactly (no term, or every ``h_j`` zero) gives an exact ``+0``; other exact
   zeros leave an interval around 0: phase 2's.
6. :func:`exact` returns these double-doubles, format-free: the exact values the audit measures
   errors against (``formats.exact_ulp_error``).

Rows that the float64 phase 1 leaves undecided in a format of at most 24 bits get a second try
through these double-doubles (``double_double=True``) before phase 2.

The enclosures are rigorous but not tight (the bounds of 1. to 5. are about ``2**-96`` relative);
an output whose enclosure holds a float64 rounding boundary, about one in ``2**43``, goes to
phase 2, as do outputs within ``2**-1070`` of a subnormal boundary (the absolute slacks).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numba
import numpy as np

from softmax_bench.formats import Format
from softmax_bench.jit import numba_cache

from . import double_double as dd

__all__ = ["MAX_TARGET_PRECISION", "softmax_bounds", "enclosures", "enclosure", "softmax", "log_parts",
           "logsumexp", "log_softmax", "vjp", "two_tries", "jacobian", "exact"]

_, _cached_njit = numba_cache(Path(__file__).parent)
#: The same for the functions that only numba code calls (no Python wrappers, compiled in their
#: callers only: less compile time; softmax_bench.jit.CompiledCallersOnly).
_helper_njit = functools.partial(_cached_njit, compiled_callers_only=True)

#: Phase 1 decides targets of at most this many significand bits in float64 (float32 and
#: narrower); wider targets (float64) through double-doubles (module docstring, last section).
MAX_TARGET_PRECISION = 24
_U = 2.0**-53
_DROP = -708.0  # exp of anything below is < 2**-1021 (subnormal territory): dropped
_SAFETY = 1.0 + 2.0**-20
_ABS = 2.0**-1073


_two_sum = dd.two_sum  # (s, e): s = fl(a + b) and its exact error e (Knuth's TwoSum)


@_helper_njit
def _shift(a, m):
    """``(d, err)``: ``d = fl(a - m)`` and its exact error. TwoSum's intermediate ``s - a``
    overflows when both are near float64's largest with opposite signs (its error term is then
    NaN), so there it runs on halves, exact for values of at least ``2**-1021``; ``2 RN(a/2 -
    m/2) = RN(a - m)``, an infinity when the difference itself overflows."""
    big = 2.0**1022
    if (abs(a) >= big or abs(m) >= big) and abs(a) >= 2.0**-1021 and abs(m) >= 2.0**-1021:
        d, err = _two_sum(0.5 * a, -0.5 * m)
        return 2.0 * d, 2.0 * err
    return _two_sum(a, -m)


@_helper_njit
def _term(d, err):
    """``(ê, A)``: libm's ``exp(d̂)`` and the bound on its relative error (module docstring, 2.;
    ``err`` the shift's exact error, 0 when it was exact)."""
    t = 0.0 if err == 0.0 else abs(d) * _U * (1.0 + 2.0 * _U)
    tt = t * (1.0 + t)
    return np.exp(d), tt + 2.0 * _U * (1.0 + tt)


@_helper_njit
def _first_max(x):
    """The index of the row's first maximum, or -1 for a row phase 1 does not take (a NaN, a
    +inf, or no finite entry)."""
    k = -1
    for j in range(x.size):
        v = x[j]
        if v != v or v == np.inf:
            return -1
        if v > -np.inf and (k < 0 or v > x[k]):
            k = j
    return k


@_helper_njit
def _row(x, y, r):
    """Phase 1 on one row (module docstring): fills ``y`` (ŷ) and ``r`` (relative bound; -1 for
    a dropped output, whose value is in [0, 2**-1021]). Returns the index of the row's first
    maximum, or -1 for a row phase 1 does not take (:func:`_first_max`)."""
    n = x.size
    k = _first_max(x)
    if k < 0:
        return k
    m = x[k]
    s = 0.0  # Sum2: s + c is the sum
    c = 0.0
    weighted = 0.0  # sum ê_j A_j
    for j in range(n):
        d, err = _shift(x[j], m)  # d = fl(x_j - m), err its exact error
        if d < _DROP:
            y[j] = 0.0
            r[j] = -1.0
            continue
        e, a = _term(d, err)
        y[j] = e
        r[j] = a
        weighted += e * a
        s, ds = _two_sum(s, e)  # Sum2
        c += ds
    total = s + c
    g = (n - 1) * _U / (1.0 - (n - 1) * _U)
    sigma = _U + g * g
    w = weighted / total * (1.0 + 2.0**-40)
    common = w + sigma + _U + n * 2.0**-1021
    for j in range(n):
        if r[j] >= 0.0:
            y[j] = y[j] / total
            r[j] = (r[j] + common) * _SAFETY
    return k


@_helper_njit
def _quantum(a, p, emin):
    """The format's spacing at ``a > 0`` (exponent ``max(floor(log2 a), emin)``)."""
    return math.ldexp(1.0, max(math.frexp(a)[1] - 1, emin) - p + 1)


@_helper_njit
def _signed(r, v, top, has_inf):
    """The rounded magnitude ``r`` with ``v``'s sign, past ``top`` an overflow: inf, or +NaN in a
    format without infinity (as phase 2's)."""
    if r > top:
        return math.copysign(np.inf, v) if has_inf else np.nan
    return math.copysign(r, v)


@_cached_njit
def _round(v, p, emin, top, has_inf):
    """``v`` rounded to nearest-even in the format (p, emin, largest finite ``top``, infinities or
    not): the arithmetic of ``formats.round_float64`` (tested equal to it), compiled, as the
    decision runs on every output and numpy's temporaries cost 30 times the arithmetic."""
    a = abs(v)
    if a == 0.0 or a != a:
        return v
    if a == np.inf:
        return _signed(a, v, top, has_inf)
    q = _quantum(a, p, emin)
    return _signed(np.rint(a / q) * q, v, top, has_inf)


@_helper_njit
def _round_dd(hi, rem, p, emin, top, has_inf):
    """The double-double ``hi + rem`` (``hi = RN(hi + rem)``, as TwoSum makes it) rounded to
    nearest-even in the format: ``hi``'s rounding, unless ``hi`` is exactly a midpoint of the
    format, where ``rem``'s sign decides. No other boundary lies between ``hi`` and ``hi + rem``:
    the format's boundaries are multiples of half its spacing, which is at least ``ulp(hi)``
    where ``hi`` can be a midpoint, and ``|rem| <= ulp(hi) / 2``; where the format has float64's
    full 53 bits (float64 normal range), ``hi = RN(hi + rem)`` is the rounding itself."""
    a = abs(hi)
    if a == 0.0:  # the value is rem itself
        return _round(rem, p, emin, top, has_inf)
    if rem == 0.0 or a == np.inf or a != a:
        return _round(hi, p, emin, top, has_inf)
    q = _quantum(a, p, emin)
    k = math.floor(a / q)
    if a / q - k != 0.5:
        return _round(hi, p, emin, top, has_inf)
    outward = (rem > 0.0) == (hi > 0.0)  # the remainder moves |hi| up
    return _signed((k + 1.0) * q if outward else k * q, hi, top, has_inf)


@_helper_njit
def _same(a, b, lo, hi):
    """Whether ends ``lo``, ``hi`` rounded to ``a``, ``b`` decide: the same number, the sign of a
    zero included, or both NaN with ``lo`` and ``hi`` numbers on one side of 0 (an overflow of
    e4m3fn, which has no infinity; an interval across 0 whose ends both overflow holds finite
    values). A NaN end (an intermediate overflow, TwoSum's near float64's largest) never
    decides."""
    if a != a:
        return b != b and lo == lo and hi == hi and (lo > 0.0) == (hi > 0.0)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@_helper_njit
def _decided(lo, hi, p, emin, top, has_inf):
    """``(decided, value)``: both ends rounded; decided when they are the same number, sign of a
    zero included (a tiny negative result rounds to -0), or both NaN (e4m3fn's overflow)."""
    a = _round(lo, p, emin, top, has_inf)
    return _same(a, _round(hi, p, emin, top, has_inf), lo, hi), a


@_cached_njit
def enclosure(y, r):
    """``(lo, hi)`` around the exact output from phase 1's ``ŷ`` and relative bound ``r``
    (module docstring, 5.; ``r < 0``: a dropped output, ``[0, 2**-1020]``)."""
    if r < 0.0:
        return 0.0, 2.0**-1020
    pad = r + 4.0 * _U
    return max(y * (1.0 - pad) - _ABS, 0.0), y * (1.0 + pad) + _ABS


@_helper_njit
def _decide_row(y, r, out, p, emin, top, has_inf):
    """Rounds both ends of every enclosure of a row into ``out``; False when some output is
    undecided."""
    for j in range(y.size):
        lo, hi = enclosure(y[j], r[j])
        ok, out[j] = _decided(lo, hi, p, emin, top, has_inf)
        if not ok:
            return False
    return True


@_cached_njit(parallel=True)
def _bounds_rows(x, y, r, taken):
    for i in numba.prange(x.shape[0]):
        taken[i] = _row(x[i], y[i], r[i]) >= 0


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


@_cached_njit(parallel=True)
def _enclosure_rows(x, lo, hi, taken, log):
    for i in numba.prange(x.shape[0]):
        n = x.shape[1]
        if not log:
            y = np.empty(n)
            r = np.empty(n)
            taken[i] = _row(x[i], y, r) >= 0
            if taken[i]:
                for j in range(n):
                    lo[i, j], hi[i, j] = enclosure(y[j], r[j])
            continue
        d = np.empty(n)
        derr = np.empty(n)
        ok, m, ell, delta = _log_parts(x[i], d, derr)
        for j in range(n):
            if not ok:
                break
            if x[i, j] == -np.inf:  # masked: exactly -inf
                lo[i, j] = hi[i, j] = -np.inf
                continue
            if d[j] == -np.inf:  # x_j - m overflowed float64: phase 2's
                ok = False
                break
            # d_j - l = (d̂_j + derr_j) - l with |l - l̂| <= delta: t and t2 each rounded once
            # (u of themselves), the ends t2 -+ w once more (inside 2u |t2| and the 4u on w)
            t = d[j] - ell
            t2 = t + derr[j]
            w = (delta + 2.0 * _U * (abs(t) + abs(t2))) * (1.0 + 4.0 * _U) + _ABS
            lo[i, j] = t2 - w
            hi[i, j] = t2 + w
        taken[i] = ok


def enclosures(function: str, rows: np.ndarray):
    """``(lo, hi, taken)`` for float64 ``rows`` (2-D): per output an interval of float64 values
    holding the exact ``softmax`` or ``log_softmax`` (a few float64 ULPs wide: steps 1-5 above, and
    the last section's ``l̂`` within ``delta``), per row whether phase 1 took it (no NaN, no
    +inf, some finite entry, no shift past float64); ``lo``, ``hi`` are unspecified where not."""
    if function not in ("softmax", "log_softmax"):
        raise ValueError(f"no phase-1 enclosures of {function!r}: 'softmax' or 'log_softmax'")
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    lo = np.zeros_like(rows)
    hi = np.zeros_like(rows)
    taken = np.zeros(rows.shape[0], dtype=np.bool_)
    if rows.size:
        _enclosure_rows(rows, lo, hi, taken, function == "log_softmax")
    return lo, hi, taken


def softmax(rows: np.ndarray, fmt: Format, double_double: bool = False):
    """``(values, decided_rows)`` of phase 1 for float64 ``rows`` (2-D) into ``fmt``: ``values``
    holds the correctly rounded outputs of every row where ``decided_rows`` is True; the other
    rows are left to phase 2. Targets of at most :data:`MAX_TARGET_PRECISION` bits run in float64
    unless ``double_double``; float64 targets always through double-doubles."""
    return _run(_softmax_rows, fmt, False, rows, double_double=double_double)


# ---------------------------------------------------------------------------------------------
# log-sum-exp and log-softmax (module docstring, last section)
# ---------------------------------------------------------------------------------------------
@_cached_njit
def _log_parts(x, d, derr):
    """``(taken, m, l̂, delta)`` of a row; fills ``d`` (``d̂_j``, -inf where masked) and ``derr``
    (the shift's exact error)."""
    n = x.size
    k = _first_max(x)
    if k < 0:
        return False, 0.0, 0.0, 0.0
    m = x[k]
    s = 0.0
    c = 0.0
    weighted = 0.0
    dropped = 0
    for j in range(n):
        if x[j] == -np.inf:
            d[j], derr[j] = -np.inf, 0.0
            continue
        dj, derr[j] = _shift(x[j], m)
        d[j] = dj
        if j == k:
            continue
        if dj < _DROP:
            dropped += 1
            continue
        e, a = _term(dj, derr[j])
        weighted += e * a
        s, ds = _two_sum(s, e)  # Sum2
        c += ds
    total = s + c
    if total == 0.0:  # l in [0, D] (D = 0: every other entry masked), l > 0 when D > 0
        return True, m, 0.0, dropped * 2.0**-1021
    g = max(n - 2, 0) * _U / (1.0 - max(n - 2, 0) * _U)
    rel = (weighted / total * (1.0 + 2.0**-40) + _U + g * g) * (1.0 + 2.0**-30)
    ell = math.log1p(total)
    delta = (rel * ell / (1.0 - rel) + 2.0 * _U * ell) * _SAFETY + dropped * 2.0**-1021
    return True, m, ell, delta


@_helper_njit
def _decided_dd(s, t, below, above, open_lo, open_hi, p, emin, top, has_inf):
    """``(decided, value)`` for an exact output in ``[s + t - below, s + t + above]`` (``s`` a
    float64, ``t`` the rounded sum of the exact error terms; module docstring, last section),
    without its lower (``open_lo``) or upper (``open_hi``) end when that end is ``s`` itself. Each
    end ``s + (t -+ w)`` is formed exactly as a double-double by TwoSum and rounded as one, so an
    exact part on a midpoint plus a tiny remainder is decided by the remainder's sign; ``w``
    widens ``below``/``above`` by the roundings of ``t`` and of ``t -+ w``. An open end equal to
    ``s`` rounds as ``s`` moved into the interval."""
    slack = 2.0 * _U * abs(t)
    lo_w = below + slack
    hi_w = above + slack
    lo_off = t if lo_w == 0.0 else t - (lo_w * (1.0 + 4.0 * _U) + _ABS)
    hi_off = t if hi_w == 0.0 else t + (hi_w * (1.0 + 4.0 * _U) + _ABS)
    got = np.empty(2)
    ends = np.empty(2)
    for i in range(2):
        off = hi_off if i else lo_off
        v, rem = _two_sum(s, off)
        if rem == 0.0 and off == 0.0 and (open_hi if i else open_lo):
            rem = -_ABS if i else _ABS  # just inside the interval
        got[i] = _round_dd(v, rem, p, emin, top, has_inf)
        ends[i] = v
    return _same(got[0], got[1], ends[0], ends[1]), got[0]


@_helper_njit
def _ulp64(v):
    """float64's spacing at ``v != 0`` (normal range)."""
    return math.ldexp(1.0, math.frexp(v)[1] - 53)


@_helper_njit
def _log_row_parts(x, d, derr, wide):
    """``(taken, m, l̂, l̂_lo, delta, scale)``: :func:`_log_parts` (``l̂_lo = 0``, ``scale = 0``),
    or the double-double :func:`_log_parts_dd` when ``wide``."""
    if wide:
        return _log_parts_dd(x, d, derr)
    taken, m, ell, delta = _log_parts(x, d, derr)
    return taken, m, ell, 0.0, delta, 0


@_helper_njit
def _decided_log_scaled(ell, ell_lo, delta, scale, p, emin, top, has_inf):
    """``(decided, value)`` for ``l`` within ``2**scale delta`` of ``2**scale (l̂ + l̂_lo)``;
    ``l̂ = 0`` means ``l`` in ``(0, 2**scale delta]`` (other terms exist, all tiny): +0 when that
    is below half the format's smallest subnormal."""
    if ell == 0.0:
        return math.frexp(delta)[1] + scale <= emin - p, 0.0
    return _decided_scaled(ell, ell_lo, delta, scale, p, emin, top, has_inf)


@_cached_njit(parallel=True)
def _logsumexp_rows(x, out, decided, p, emin, top, has_inf, wide):
    for i in numba.prange(x.shape[0]):
        d = np.empty(x.shape[1])
        derr = np.empty(x.shape[1])
        taken, m, ell, ell_lo, delta, scale = _log_row_parts(x[i], d, derr, wide)
        if taken and m == 0.0 and scale != 0:  # the value is l alone, at its own scale
            decided[i], out[i] = _decided_log_scaled(ell, ell_lo, delta, scale, p, emin, top,
                                                     has_inf)
            continue
        ell, ell_lo, delta = _unscaled(ell, ell_lo, delta, scale)
        s, e = _two_sum(m, ell)
        if not taken or not np.isfinite(s):  # m + l past float64: phase 2's
            decided[i] = False
            continue
        t = e + ell_lo
        # l_hat = 0: l in [0, delta], and l > 0 unless delta = 0 (every other entry masked)
        zero = ell == 0.0
        w = delta + _U * abs(t) * (ell_lo != 0.0)
        decided[i], out[i] = _decided_dd(s, t, 0.0 if zero else w, w, zero and delta > 0.0,
                                         False, p, emin, top, has_inf)


@_cached_njit(parallel=True)
def _log_softmax_rows(x, out, decided, p, emin, top, has_inf, wide):
    for i in numba.prange(x.shape[0]):
        d = np.empty(x.shape[1])
        derr = np.empty(x.shape[1])
        taken, m, ell_s, ell_lo_s, delta_s, scale = _log_row_parts(x[i], d, derr, wide)
        ell, ell_lo, delta = _unscaled(ell_s, ell_lo_s, delta_s, scale)
        ok = taken
        for j in range(x.shape[1]):
            if not ok:
                break
            if x[i, j] == -np.inf:  # masked
                out[i, j] = -np.inf
                continue
            if d[j] == -np.inf:  # x_j - m overflowed: a finite output past float64, phase 2's
                ok = False
                break
            if scale != 0 and d[j] == 0.0:  # a maximum: -l, at l's own scale
                ok, v = _decided_log_scaled(ell_s, ell_lo_s, delta_s, scale, p, emin, top,
                                            has_inf)
                out[i, j] = -v
                continue
            if (p > MAX_TARGET_PRECISION and derr[j] != 0.0 and (ell > 0.0 or delta > 0.0)
                    and ell + abs(ell_lo) + delta < _ulp64(derr[j]) / 4.0):
                # float64 target, 0 < l far below the shift's low word: no boundary lies in
                # [d_j - l, d_j) (d_j itself is one when the shift needs 54 bits: a float64
                # midpoint), so d_j - l rounds as d_j minus an infinitesimal: to d_j's rounding
                # d̂_j, or to the float below it when d_j is the midpoint just below d̂_j
                below = np.nextafter(d[j], -np.inf)
                out[i, j] = below if derr[j] == (below - d[j]) / 2.0 else d[j]
                continue
            s, e = _two_sum(d[j], -ell)
            t1 = e + derr[j]
            t = t1 - ell_lo
            w = delta + _U * abs(t1) * (ell_lo != 0.0)  # the second rounding of t
            zero = ell == 0.0  # as in _logsumexp_rows; the output is minus l
            ok, out[i, j] = _decided_dd(s, t, w, 0.0 if zero else w, False,
                                        zero and delta > 0.0, p, emin, top, has_inf)
        decided[i] = ok


def log_parts(row: np.ndarray):
    """``(taken, m, l̂, delta, d̂, shift errors)`` of one float64 row (for tests: the exact
    ``log1p(S')`` lies within ``delta`` of ``l̂``)."""
    row = np.ascontiguousarray(row, dtype=np.float64)
    d = np.empty_like(row)
    derr = np.empty_like(row)
    return (*_log_parts(row, d, derr), d, derr)


def _run(kernel, fmt, reduces, *operands, double_double=False):
    """``(values, decided_rows)`` from a rows ``kernel`` on float64 ``operands`` (2-D: the rows,
    and the VJP's cotangent rows) into ``fmt``: through double-doubles for float64 targets, or
    for any target when ``double_double`` (the second try of a row float64 left undecided)."""
    wide = double_double or fmt.precision > MAX_TARGET_PRECISION
    operands = [np.ascontiguousarray(a, dtype=np.float64) for a in operands]
    rows = operands[0]
    out = np.zeros(rows.shape[0] if reduces else rows.shape)
    decided = np.zeros(rows.shape[0], dtype=np.bool_)
    if rows.size:
        kernel(*operands, out, decided, fmt.precision, fmt.emin, fmt.max_finite, fmt.has_inf, wide)
    return out, decided


def two_tries(fast, fmt: Format, *operands):
    """``(values, decided_rows, second)``: ``fast`` (:func:`softmax`, :func:`log_softmax`,
    :func:`logsumexp` or :func:`vjp`) on the float64 ``operands`` into ``fmt``, then, for a target
    of at most :data:`MAX_TARGET_PRECISION` bits, its double-double second try on the rows the
    float64 pass left undecided; ``second`` counts the rows that try decided."""
    out, decided = fast(*operands, fmt)
    again = np.flatnonzero(~decided)
    if fmt.precision > MAX_TARGET_PRECISION or again.size == 0:
        return out, decided, 0
    out[again], decided[again] = fast(*(np.asarray(a)[again] for a in operands), fmt,
                                      double_double=True)
    return out, decided, int(decided[again].sum())


def logsumexp(rows: np.ndarray, fmt: Format, double_double: bool = False):
    """``(values, decided_rows)`` as :func:`softmax`, one value per row."""
    return _run(_logsumexp_rows, fmt, True, rows, double_double=double_double)


def log_softmax(rows: np.ndarray, fmt: Format, double_double: bool = False):
    """``(values, decided_rows)`` as :func:`softmax`."""
    return _run(_log_softmax_rows, fmt, False, rows, double_double=double_double)


# ---------------------------------------------------------------------------------------------
# the VJP (module docstring, last section)
# ---------------------------------------------------------------------------------------------
@_helper_njit
def _product_ends(y, d):
    """``(lo, hi)`` around the exact product of ``y >= 0`` and ``d``: the float64 product moved
    outward by ``2u`` of itself and ``2**-1074`` (its rounding, underflow included), except when
    ``y`` is 0: an exact signed zero (the sign of ``d``)."""
    v = y * d
    if y == 0.0:
        return v, v
    w = 2.0 * _U * abs(v) + 2.0**-1074
    return v - w, v + w


@_helper_njit
def _vjp_row(x, g, y, r, out, p, emin, top, has_inf):
    """Phase 1's VJP of one row into ``out``; False when the row is not taken or undecided."""
    n = x.size
    k = _row(x, y, r)
    if k < 0:
        return False
    for j in range(n):
        if x[j] != -np.inf and not np.isfinite(g[j]):
            return False
    gk = g[k]
    s = 0.0
    cc = 0.0
    abs_t = 0.0
    err = 0.0
    for j in range(n):
        if j == k or x[j] == -np.inf:
            continue
        h = gk - g[j]
        if r[j] < 0.0:  # dropped: y_j in [0, 2**-1021]
            err += abs(h) * 2.0**-1021 * (1.0 + _U)
            continue
        err += abs(h) * (r[j] * y[j] + 2.0**-1074) * (1.0 + _U) + 2.0**-1074  # t's underflow
        t = y[j] * h
        abs_t += abs(t)
        s, ds = _two_sum(s, t)  # Sum2
        cc += ds
    delta = s + cc
    gam = (n - 1) * _U / (1.0 - (n - 1) * _U)
    e_delta = (err + 2.0 * _U * (1.0 + _U) * abs_t + _U * abs(delta) + gam * gam * abs_t) * _SAFETY
    if not np.isfinite(e_delta):  # g_k - g_j overflowed (g near the largest float64): phase 2
        return False
    for i in range(n):
        if x[i] == -np.inf:
            out[i] = 0.0
            continue
        h = g[i] - gk
        d = h + delta
        w = (e_delta + _U * abs(h) * (1.0 + _U) + _U * abs(d)) * (1.0 + 4.0 * _U) + _ABS
        if not np.isfinite(w):
            return False
        d_lo, d_hi = d - w, d + w
        y_lo, y_hi = enclosure(y[i], r[i])
        lo, hi = _product_ends(y_lo, d_lo)
        for yy, dv in ((y_lo, d_hi), (y_hi, d_lo), (y_hi, d_hi)):
            a, b = _product_ends(yy, dv)
            lo = a if (a < lo or (a == lo and math.copysign(1.0, a) < 0.0)) else lo  # -0 below +0
            hi = b if (b > hi or (b == hi and math.copysign(1.0, b) > 0.0)) else hi
        ok, out[i] = _decided(lo, hi, p, emin, top, has_inf)
        if not ok:
            return False
    return True


@_cached_njit(parallel=True)
def _vjp_rows(x, g, out, decided, p, emin, top, has_inf, wide):
    for i in numba.prange(x.shape[0]):
        if wide:
            hi = np.empty(x.shape[1])
            lo = np.empty(x.shape[1])
            decided[i] = _vjp_row_dd(x[i], g[i], out[i], hi, lo, p, emin, top, has_inf)[1]
            continue
        y = np.empty(x.shape[1])
        r = np.empty(x.shape[1])
        decided[i] = _vjp_row(x[i], g[i], y, r, out[i], p, emin, top, has_inf)


def vjp(rows: np.ndarray, g_rows: np.ndarray, fmt: Format, double_double: bool = False):
    """``(values, decided_rows)`` as :func:`softmax`, for the VJP with cotangent rows ``g_rows``."""
    return _run(_vjp_rows, fmt, False, rows, g_rows, double_double=double_double)


# ---------------------------------------------------------------------------------------------
# float64 targets and exact values: double-doubles (module docstring, last section)
# ---------------------------------------------------------------------------------------------
_DD_ZERO = -1100.0  # terms below: 0 as far as every format sees (e^-1100 < 2**-1586)
_DD_SPAN = 250  # terms more than 2**250 below a row's largest are left out of its sum


@_helper_njit
def _terms_dd(x, m, dh, dl, kk, eh, el):
    """``d_j = x_j - m`` exactly as ``dh + dl`` and ``e^(d_j) = 2**kk (eh + el)`` (:func:`dd.exp`);
    ``eh = 0`` for masked entries and ``d_j < -1100``."""
    for j in range(x.size):
        if x[j] == -np.inf:
            dh[j], dl[j] = -np.inf, 0.0
            kk[j], eh[j], el[j] = 0, 0.0, 0.0
            continue
        a, b = _shift(x[j], m)
        dh[j], dl[j] = a, b
        if a < _DD_ZERO:  # -inf too: x_j - m overflowed
            kk[j], eh[j], el[j] = 0, 0.0, 0.0
        else:
            kk[j], eh[j], el[j] = dd.exp(a, b)


@_helper_njit
def _sum_dd(x, kk, eh, el, skip):
    """``(Sh, Sl, err, K)``: the terms but ``skip`` summed into ``2**K (Sh + Sl)``, with ``|2**K (Sh
    + Sl) - sum of the computed terms| <= 2**K err`` (the terms' own error, ``EXP_REL`` of the
    sum, apart; :func:`_unscaled` gives it at its own scale). ``2**K`` is the largest term's
    scale, so the scaled sum is exact to form and no low word underflows: three TwoSum chains (the terms' high parts; their errors and the low parts; a
    plain sum of the last errors, whose rounding is below ``gamma_2n`` times their magnitudes'
    sum), terms below ``2**(K - 250)`` left out (each below ``2**-249`` of the largest, those
    below e^-1100 below ``2**-1586``: ``K = -1086`` when they are all there is)."""
    top = np.int64(-(1 << 40))
    for j in range(x.size):
        if j != skip and eh[j] != 0.0:
            top = max(top, kk[j])
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    f_abs = 0.0
    kept = 0
    dropped = 0.0  # bound on the terms left out, in units of 2**top
    tiny = 0  # terms below e^-1100
    for j in range(x.size):
        if j == skip or x[j] == -np.inf:
            continue
        if eh[j] == 0.0:
            tiny += 1
            continue
        if kk[j] < top - _DD_SPAN:
            dropped += 2.0**-249
            continue
        s1, e = _two_sum(s1, math.ldexp(eh[j], kk[j] - top))
        s2, f = _two_sum(s2, e)
        s3 += f
        f_abs += abs(f)
        s2, f = _two_sum(s2, math.ldexp(el[j], kk[j] - top))
        s3 += f
        f_abs += abs(f)
        kept += 1
    if kept == 0:  # nothing but terms below e^-1100 (2**-1586 = 2**-500 2**-1086 each), or none
        return 0.0, 0.0, tiny * 2.0**-500, -1086 if tiny else 0
    a, b = _two_sum(s1, s2)
    c = b + s3
    sh, sl = dd.fast_two_sum(a, c)
    g = 2 * kept * _U / (1.0 - 2 * kept * _U)
    err = (g * f_abs + _U * abs(c)) * _SAFETY + dropped + tiny * math.ldexp(1.0, -1586 - top)
    return sh, sl, err, top


@_helper_njit
def _unscaled(hi, lo, err, scale):
    """A double-double ``2**scale (hi + lo)`` within ``2**scale err`` (a sum of :func:`_sum_dd`,
    ``l`` of :func:`_log_row_parts`, the VJP's delta) at its own scale: exact, but where a word
    or the bound underflows, which ``2**-1073`` covers (three roundings of at most 2**-1075)."""
    if scale == 0:
        return hi, lo, err
    return (math.ldexp(hi, scale), math.ldexp(lo, scale),
            math.ldexp(err, scale) * _SAFETY + 2.0**-1073)


@_helper_njit
def _decided_scaled(vh, vl, w, scale, p, emin, top, has_inf):
    """``(decided, value)`` for an exact value within ``w`` of ``2**scale (vh + vl)``: rounding
    ``2**scale v`` is ``2**scale`` times rounding ``v`` into the format with its exponent range
    moved by ``-scale``; where ``2**scale (|vh| + w)`` is below half the format's smallest
    subnormal (``2**(emin - p)``; compared by exponents, as it may not be a float64) the value
    is a zero of ``vh``'s sign. Otherwise ``vh``, ``vl`` and ``w`` are first moved by a power of
    two so that the larger of ``|vh|`` and ``w`` is near 1 (exact but for a low word far below
    ``w`` that may underflow), so the rounding never works outside float64's normal range."""
    if math.frexp(abs(vh) * (1.0 + 2.0**-40) + w)[1] + scale <= emin - p:
        return w + abs(vl) < abs(vh), math.copysign(0.0, vh)
    # the scaled value and its width near 1, so the moved format's spacing there (at least its
    # smallest subnormal over 2**scale) is a normal float64
    t = -math.frexp(max(abs(vh), w))[1]
    vh, vl, w, scale = math.ldexp(vh, t), math.ldexp(vl, t), math.ldexp(w, t), scale - t
    ok, v = _decided_dd(vh, vl, w, w, False, False, p, emin - scale, math.ldexp(top, -scale),
                        has_inf)
    return ok, math.ldexp(v, scale)


@_helper_njit
def _softmax_parts_dd(x):
    """``(qh, ql, kk, rho)``: softmax of one row through double-doubles, ``y_j = 2**kk (qh +
    ql)`` within a relative ``rho`` (module docstring, last section), ``qh = 0`` where ``y_j`` is
    exactly 0 (masked) or below ``2**-1586`` (``d_j < -1100``); ``rho = -1`` for a row not
    taken."""
    n = x.size
    qh = np.zeros(n)
    ql = np.zeros(n)
    kk = np.zeros(n, dtype=np.int64)
    k = _first_max(x)
    if k < 0:
        return qh, ql, kk, -1.0
    dh = np.empty(n)
    dl = np.empty(n)
    eh = np.empty(n)
    el = np.empty(n)
    _terms_dd(x, x[k], dh, dl, kk, eh, el)
    sh, sl, err, _ = _sum_dd(x, kk, eh, el, -1)  # K = 0: the maximum's term is 1
    for j in range(n):
        if eh[j] == 0.0:
            qh[j] = ql[j] = 0.0
        else:
            qh[j], ql[j] = dd.div(eh[j], el[j], sh, sl)
    return qh, ql, kk, (2.0 * dd.EXP_REL + err / sh + dd.DIV_REL) * _SAFETY


@_helper_njit
def _softmax_row_dd(x, out, hi, lo, p, emin, top, has_inf):
    """Softmax of one row through double-doubles into ``out`` (rounded) and ``hi + lo`` (the
    exact values within ``rho``, ``2**-1074`` where they underflow). Returns ``(taken,
    decided)``."""
    n = x.size
    qh, ql, kk, rho = _softmax_parts_dd(x)
    if rho < 0.0:
        return False, False
    ok = True
    for j in range(n):
        scale = kk[j]
        hi[j] = math.ldexp(qh[j], scale)
        lo[j] = math.ldexp(ql[j], scale)
        if ok:  # y_j = 0 or below 2**-1586: [0, 2**-1074] rounds to +0 in every format
            w = rho * qh[j] if qh[j] != 0.0 else 0.0
            ok, out[j] = _decided_scaled(qh[j], ql[j], w, scale, p, emin, top, has_inf)
    return True, ok


@_helper_njit
def _cotangent_scale(x, g):
    """``s`` with ``max |g_j| 2**s`` in ``[1/2, 1)`` over the unmasked ``g``, when that scaling
    is exact for every one of them (else 0): the VJP is linear in ``g``."""
    top = 0.0
    for j in range(x.size):
        if x[j] != -np.inf:
            top = max(top, abs(g[j]))
    if top == 0.0:
        return 0
    s = -math.frexp(top)[1]
    for j in range(x.size):
        if x[j] != -np.inf and math.ldexp(math.ldexp(g[j], s), -s) != g[j]:
            return 0
    return s


@_helper_njit
def _tiny_delta_sign(x, g, k, sg, gk):
    """The sign (+-1; 0 when undecided) of ``delta = sum_(j != k) y_j (g_k - g_j)`` when every
    ``y_j`` but the maxima's is below ``2**-1586`` (gaps beyond 1100, where phase 1 has no value
    of them): ``delta`` has the sign of ``sum_j e^(x_j - x_1) (g_k - g_j)`` (``x_1`` the largest
    of them), summed as double-doubles with its error bound; and ``|delta|`` is below
    ``2**-1586 (|sum| + bound) 2**-sg``, which must be below ``2**-1075`` (the caller rounds
    ``y_i delta``, at most that, to a signed zero in every format)."""
    x1 = -np.inf
    for j in range(x.size):
        if j != k and x[j] != -np.inf and x[j] < x[k]:
            x1 = max(x1, x[j])
    r_h = 0.0
    r_l = 0.0
    err = 0.0
    for j in range(x.size):
        if j == k or x[j] == -np.inf:
            continue
        hh, hl = _two_sum(gk, -math.ldexp(g[j], sg))
        if hh == 0.0:
            continue
        a, b = _shift(x[j], x1)
        if a < _DD_ZERO:
            err += math.ldexp(abs(hh) * 1.01, -1586) + 2.0**-1074
            continue
        kr, eh, el = dd.exp(a, b)
        th, tl = dd.mul(eh, el, hh, hl)
        err += math.ldexp(abs(th) * (dd.EXP_REL + dd.MUL_REL) * 1.01, kr) + 2.0**-1072
        r_h, r_l = dd.add(r_h, r_l, math.ldexp(th, kr), math.ldexp(tl, kr))
        err += dd.ADD_REL * abs(r_h)
    err *= _SAFETY
    if not err + abs(r_l) < abs(r_h):
        return 0.0
    if math.frexp(abs(r_h) + err)[1] - 1586 - sg > -1075:
        return 0.0
    return math.copysign(1.0, r_h)


@_helper_njit
def _vjp_row_dd(x, g, out, hi, lo, p, emin, top, has_inf):
    """The VJP of one row through double-doubles (module docstring, last section), into ``out``
    and ``hi + lo`` as :func:`_softmax_row_dd`. Returns ``(taken, decided)``."""
    n = x.size
    qh, ql, kk, rho = _softmax_parts_dd(x)
    if rho < 0.0:
        return False, False
    k = _first_max(x)
    for j in range(n):
        if x[j] != -np.inf and not np.isfinite(g[j]):
            return False, False
    sg = _cotangent_scale(x, g)  # work with g 2**sg, scale the results by 2**-sg
    gk = math.ldexp(g[k], sg)
    # delta = sum_(j != k) y_j (g_k - g_j) = 2**big (s_h + s_l) within 2**big e_delta: each
    # product formed at y_j's scale, summed at the scale of the largest y_j (2**big)
    big = np.int64(-(1 << 40))
    tiny = False
    for j in range(n):
        if j != k and x[j] != -np.inf:
            if qh[j] != 0.0:
                big = max(big, kk[j])
            else:
                tiny = True
    if big < -(1 << 39):
        big = -1086 if tiny else 0
    s_h = 0.0
    s_l = 0.0
    e_delta = 0.0
    for j in range(n):
        if j == k or x[j] == -np.inf:
            continue
        hh, hl = _two_sum(gk, -math.ldexp(g[j], sg))
        if hh == 0.0:  # an exact zero term
            continue
        if qh[j] == 0.0:  # y_j < 2**-1586
            e_delta += math.ldexp(abs(hh) * 1.01, -1586 - big) + 2.0**-1074
            continue
        th, tl = dd.mul(qh[j], ql[j], hh, hl)
        shift = kk[j] - big
        e_delta += (math.ldexp(abs(hh) * rho * abs(qh[j]) + dd.MUL_REL * abs(th), shift)
                    + 2.0**-1072)  # the scaling's underflow
        s_h, s_l = dd.add(s_h, s_l, math.ldexp(th, shift), math.ldexp(tl, shift))
        e_delta += dd.ADD_REL * abs(s_h)
    e_delta *= _SAFETY
    sign = _tiny_delta_sign(x, g, k, sg, gk) if big == -1086 and e_delta > 0.0 else 0.0
    # delta at its own scale, for the outputs that add it to g_i - g_k != 0
    u_h, u_l, u_e = _unscaled(s_h, s_l, e_delta, big)
    decided = True
    for i in range(n):
        if x[i] == -np.inf:
            out[i] = hi[i] = lo[i] = 0.0
            continue
        ah, al = _two_sum(math.ldexp(g[i], sg), -gk)
        if ah == 0.0 and sign != 0.0:  # z_i = y_i delta, a zero of the sign of delta
            out[i] = hi[i] = math.copysign(0.0, sign)
            lo[i] = 0.0
            continue
        if ah == 0.0:  # g_i - c = delta: keep its scale
            d_h, d_l, w, scale = s_h, s_l, e_delta, kk[i] + big - sg
        else:
            d_h, d_l = dd.add(ah, al, u_h, u_l)  # g_i - c, within w
            w = u_e + dd.ADD_REL * abs(d_h)
            scale = kk[i] - sg
        q = abs(qh[i])
        if d_h == 0.0 and w == 0.0:  # g_i - c = 0 exactly: an exact zero
            out[i] = hi[i] = lo[i] = 0.0
            continue
        if q == 0.0:  # y_i < 2**-1586: |z_i| < 2**(-1586 + 1 + scale - kk_i), a zero of g_i - c's sign
            out[i] = hi[i] = math.copysign(0.0, d_h)
            lo[i] = 0.0
            decided = (decided and w + abs(d_l) < abs(d_h) < 2.0**500
                       and scale - kk[i] - 1585 < emin - p)
            continue
        # z_i = 2**scale q_i (g_i - c): the product and its bound in the scaled units, rounded
        # with the format's exponent range moved as in _softmax_row_dd
        zh, zl = dd.mul(qh[i], ql[i], d_h, d_l)
        hi[i] = math.ldexp(zh, scale)
        lo[i] = math.ldexp(zl, scale)
        err = (rho * q * (abs(d_h) + w) + q * (1.0 + rho) * w + dd.MUL_REL * abs(zh)
               + 2.0**-1071) * _SAFETY  # the product's underflow where g_i - c is tiny
        if decided:
            ok, out[i] = _decided_scaled(zh, zl, err, scale, p, emin, top, has_inf)
            decided = ok and np.isfinite(err)
    return True, decided


@_helper_njit
def _log_parts_dd(x, d, derr):
    """``(taken, m, l̂, l̂_lo, delta, scale)`` as :func:`_log_parts`: ``l = log1p(S')`` within
    ``2**scale delta`` of ``2**scale (l̂ + l̂_lo)``; ``scale`` is 0 but for ``S' < 2**-60``, where
    the sum's own scale keeps every bit of ``l`` (which may be far below 2**-1074). libm's
    ``log1p(S'h)`` refined by one Newton step on ``expm1`` (module docstring, last section)."""
    n = x.size
    k = _first_max(x)
    if k < 0:
        return False, 0.0, 0.0, 0.0, 0.0, 0
    kk = np.empty(n, dtype=np.int64)
    eh = np.empty(n)
    el = np.empty(n)
    _terms_dd(x, x[k], d, derr, kk, eh, el)
    sh, sl, err, scale = _sum_dd(x, kk, eh, el, k)
    if sh == 0.0:  # no term seen: l in [0, 2**scale err], l > 0 when err > 0 (as _log_parts)
        return True, x[k], 0.0, 0.0, err, scale
    eps_s = dd.EXP_REL + err / sh  # relative error of S' (of sh + sl)
    s_real = math.ldexp(sh, scale)
    if s_real < 2.0**-60:  # l = S' - S'^2/2 + r, 0 < r < S'^3/3, in units of 2**scale
        lh, ll = dd.add_fp(sh, sl, -0.5 * sh * s_real)
        delta = (eps_s * sh * (1.0 + 2.0 * s_real) + dd.ADD_FP_REL * lh + _U * sh * s_real
                 + 2.0 * abs(sl) * s_real + sh * s_real * s_real) * _SAFETY
        return True, x[k], lh, ll, delta, scale
    sh, sl, err = _unscaled(sh, sl, err, scale)
    l0 = math.log1p(sh)
    big_e, big_e_lo = dd.expm1(l0, 0.0)
    nh, _ = dd.add(sh, sl, -big_e, -big_e_lo)  # S' - expm1(l0)
    den = 1.0 + big_e
    c = nh / den  # l = l0 + log1p(c) exactly, for the exact c
    if not abs(c) < 2.0**-40:  # libm's log1p far off (never seen): phase 2's
        return False, 0.0, 0.0, 0.0, 0.0, 0
    step = c - 0.5 * c * c
    lh, ll = dd.fast_two_sum(l0, step)
    delta = ((eps_s * sh + dd.EXPM1_REL * big_e + dd.ADD_REL * abs(nh)) / den
             + 4.0 * _U * abs(c) + _U * abs(step) + _U * c * c + abs(c) ** 3) * _SAFETY
    return True, x[k], lh, ll, delta, 0


@_cached_njit(parallel=True)
def _softmax_rows(x, out, decided, p, emin, top, has_inf, wide):
    for i in numba.prange(x.shape[0]):
        if wide:
            hi = np.empty(x.shape[1])
            lo = np.empty(x.shape[1])
            decided[i] = _softmax_row_dd(x[i], out[i], hi, lo, p, emin, top, has_inf)[1]
            continue
        y = np.empty(x.shape[1])
        r = np.empty(x.shape[1])
        decided[i] = _row(x[i], y, r) >= 0 and _decide_row(y, r, out[i], p, emin, top, has_inf)


@_cached_njit(parallel=True)
def _exact_rows(x, g, kind, hi, lo, taken):
    """Exact values of every row as double-doubles (module docstring, last section); ``kind``
    0 softmax, 1 log_softmax, 2 logsumexp (one value per row, in column 0), 3 the VJP."""
    for i in numba.prange(x.shape[0]):
        n = x.shape[1]
        out = np.empty(n)
        if kind == 0:
            taken[i] = _softmax_row_dd(x[i], out, hi[i], lo[i], 53, -1022, 1.0, True)[0]
        elif kind == 3:
            taken[i] = _vjp_row_dd(x[i], g[i], out, hi[i], lo[i], 53, -1022, 1.0, True)[0]
        else:
            d = np.empty(n)
            derr = np.empty(n)
            ok, m, ell, ell_lo, delta, scale = _log_parts_dd(x[i], d, derr)
            taken[i] = ok
            if not ok:
                continue
            ell, ell_lo, _ = _unscaled(ell, ell_lo, delta, scale)
            if kind == 2:
                s, e = _two_sum(m, ell)
                taken[i] = np.isfinite(s)
                hi[i, 0], lo[i, 0] = dd.fast_two_sum(s, e + ell_lo)
                continue
            for j in range(n):
                if x[i, j] == -np.inf:
                    hi[i, j], lo[i, j] = -np.inf, 0.0
                    continue
                if d[j] == -np.inf:
                    taken[i] = False
                    break
                s, e = _two_sum(d[j], -ell)
                hi[i, j], lo[i, j] = dd.fast_two_sum(s, (e + derr[j]) - ell_lo)


_EXACT_KINDS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2, "vjp": 3}


def exact(function: str, rows: np.ndarray, g_rows: np.ndarray | None = None):
    """``(hi, lo, taken)``: the exact values of ``function`` ('softmax', 'log_softmax',
    'logsumexp', 'vjp') on float64 ``rows`` (2-D; the VJP's cotangent rows ``g_rows``) as
    double-doubles ``hi + lo``, for the rows where ``taken``, within the bounds of the module
    docstring's last section: about ``2**-96`` relative (``2**-1070`` absolute where a value
    underflows; for log-sum-exp ``m + l`` and the VJP ``y_i (g_i - c)``, relative to the terms
    before they cancel); logsumexp gives one column. Rows not taken (NaN, +inf, all masked, non-finite cotangents, values past float64,
    intermediate overflows near float64's largest) are left to the caller."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    g = rows if g_rows is None else np.ascontiguousarray(g_rows, dtype=np.float64)
    width = 1 if function == "logsumexp" else rows.shape[1]
    hi = np.zeros((rows.shape[0], rows.shape[1]))
    lo = np.zeros_like(hi)
    taken = np.zeros(rows.shape[0], dtype=np.bool_)
    if rows.size:
        _exact_rows(rows, g, _EXACT_KINDS[function], hi, lo, taken)
    # a NaN in a taken row is an intermediate overflow (TwoSum near float64's largest), no value
    taken &= ~np.isnan(hi[:, :width]).any(axis=1) & ~np.isnan(lo[:, :width]).any(axis=1)
    return hi[:, :width], lo[:, :width], taken


# ---------------------------------------------------------------------------------------------
# the Jacobian, through double-doubles for every format
# ---------------------------------------------------------------------------------------------
@_helper_njit
def _jacobian_row(x, out, p, emin, top, has_inf):
    """``J = diag(y) - y y^T`` of one row into ``out`` (n x n): ``-y_i y_j`` as a product of
    double-doubles (relative ``rho_i + rho_j + MUL_REL``), ``y_i (1 - y_i)`` with ``1 - y_i`` by
    ``add_fp`` where ``y_i <= 1/2`` (every ``i`` but the first maximum ``k``: the cancellation
    at most doubles ``rho``) and as ``S' / S`` (2., without the maximum's term) for ``k``.
    Returns ``(taken, decided)``."""
    n = x.size
    k = _first_max(x)
    if k < 0:
        return False, False
    dh = np.empty(n)
    dl = np.empty(n)
    kk = np.empty(n, dtype=np.int64)
    eh = np.empty(n)
    el = np.empty(n)
    _terms_dd(x, x[k], dh, dl, kk, eh, el)
    sh, sl, err, _ = _sum_dd(x, kk, eh, el, -1)
    rh, rl, rerr, rscale = _sum_dd(x, kk, eh, el, k)  # S' = 2**rscale (rh + rl)
    rho = (2.0 * dd.EXP_REL + err / sh + dd.DIV_REL) * _SAFETY
    qh = np.empty(n)
    ql = np.empty(n)
    for j in range(n):
        if eh[j] == 0.0:
            qh[j] = ql[j] = 0.0
        else:
            qh[j], ql[j] = dd.div(eh[j], el[j], sh, sl)
    for i in range(n):
        for j in range(n):
            if x[i] == -np.inf or x[j] == -np.inf:  # masked: exactly 0
                out[i, j] = 0.0
                continue
            if qh[i] == 0.0 or qh[j] == 0.0:  # below 2**-1586 in magnitude
                out[i, j] = 0.0 if i == j else -0.0
                continue
            if i != j:
                vh, vl = dd.mul(qh[i], ql[i], qh[j], ql[j])
                vh, vl = -vh, -vl
                rel = 2.0 * rho + dd.MUL_REL
            elif i != k:
                yh, yl = math.ldexp(qh[i], kk[i]), math.ldexp(ql[i], kk[i])
                ch, cl = dd.add_fp(-yh, -yl, 1.0)  # 1 - y_i >= 1/2
                vh, vl = dd.mul(qh[i], ql[i], ch, cl)
                rel = 2.0 * rho + dd.ADD_FP_REL + dd.MUL_REL + 2.0**-1070
            else:
                if rh == 0.0:  # S' = 0, or only terms below 2**-1586 each: J_kk rounds to +0
                    out[i, j] = 0.0
                    continue
                ch, cl = dd.div(rh, rl, sh, sl)  # 1 - y_k = S'/S, scaled by 2**-rscale
                vh, vl = dd.mul(qh[i], ql[i], ch, cl)
                rel = (rho + dd.EXP_REL + rerr / rh + dd.EXP_REL + err / sh + dd.DIV_REL
                       + dd.MUL_REL)
            if i != j:
                scale = kk[i] + kk[j]
            else:  # one scaled factor on the diagonal; S' has its own scale
                scale = kk[i] if i != k else rscale
            ok, out[i, j] = _decided_scaled(vh, vl, rel * _SAFETY * abs(vh), scale, p, emin,
                                            top, has_inf)
            if not ok:
                return True, False
    return True, True


@_cached_njit(parallel=True)
def _jacobian_rows(x, out, decided, p, emin, top, has_inf):
    for i in numba.prange(x.shape[0]):
        decided[i] = _jacobian_row(x[i], out[i], p, emin, top, has_inf)[1]


def jacobian(rows: np.ndarray, fmt: Format):
    """``(values, decided_rows)`` as :func:`softmax`, ``values`` of shape ``(rows, n, n)``
    (always through double-doubles)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    out = np.zeros(rows.shape + (rows.shape[1],))
    decided = np.zeros(rows.shape[0], dtype=np.bool_)
    if rows.size:
        _jacobian_rows(rows, out, decided, fmt.precision, fmt.emin, fmt.max_finite, fmt.has_inf)
    return out, decided
