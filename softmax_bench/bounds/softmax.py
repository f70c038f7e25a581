"""The softmax kernels' per-element forward error bound (naive, shifted, shifted_log1p; the
division-free kernels: :func:`division_free_bounds`).

Steps 1-3 (shift, exp, sum) are the sum lemma of :mod:`.common`; this module adds the quotient.

Model of the kernels (``kernels/arith.py``, ``kernels/passes.py``)
------------------------------------------------------------------
Notation: ``u`` unit roundoff of the compute precision, ``sub`` its smallest subnormal; ``u_s``,
``sub_s`` those of the storage format when the compute precision is wider (else 0: the quotient is
already a storage value); ``E`` the exp error in ULPs of the compute format (:data:`EXP_ULPS`);
``D = arith.sum_depth(n, compute)``: the largest number of rounded additions on the path of any
one term into the row sum, for the summation order the kernel really runs (16 lanes, depth-4
tree, leftovers, blocks of 2048 in order for float32/float64 compute; recursive, ``D = n - 1``,
in float16 arithmetic). ``m = max_j x_j`` (shifted; exact: a float max), ``d_j = x_j - m``
(naive: ``d_j = x_j``), ``e_j = exp(d_j)``, ``S = sum_j e_j``, ``y_i = e_i / S`` (exact values).

1. shift: ``fl(x_j - m) = d_j (1 + alpha_j)``, ``|alpha_j| <= u`` (a difference of two floats that
   lands in the subnormal range is exact, so no absolute term; naive: ``alpha_j = 0``).
2. exp: ``ê_j = exp(d_j (1 + alpha_j)) (1 + eta_j) + zeta_j``, ``|eta_j| <= 2 E u`` (E ULPs of a
   normal result, an ULP being at most 2u relative), ``|zeta_j| <= E sub`` (subnormal result).
   With ``|exp(d_j alpha_j) - 1| <= expm1(|d_j| u)``:
   ``|ê_j - e_j| <= t_j := e_j rho_j + E sub``, ``rho_j = exp(|d_j| u)(1 + 2 E u) - 1``
   (naive: ``rho_j = 2 E u``). The rounding of ``x_j - m`` is amplified by ``|d_j|``: the data
   dependence of the shifted bound. ``T = sum_j t_j``.
3. sum: each rounded addition of non-negative floats is ``(a + b)(1 + delta)``, ``|delta| <= u``
   (an addition whose result is subnormal is exact), so with ``k_j <= D`` roundings on term j,
   ``ŝ = sum_j ê_j prod(1 + delta)`` and, **rigorously, without any first-order truncation**,
   ``s_lo := (S - T)(1 - u)^D <= ŝ <= (S + T)(1 + u)^D =: s_hi``. This product form is exact;
   ``gamma_D = D u / (1 - D u)`` is only its usual upper bound for ``(1 + u)^D - 1`` and blows
   up at ``D u >= 1`` (float16 arithmetic, n > 2048), where the product form stays finite.
4. quotient: ``fl(ê_i / ŝ) = (ê_i / ŝ)(1 + delta_q) + zeta_q``, ``|delta_q| <= u``,
   ``|zeta_q| <= sub / 2``; store (compute wider than storage): one more rounding,
   ``(1 + delta_s) + zeta_s``, ``|delta_s| <= u_s``, ``|zeta_s| <= sub_s / 2``.

So, with ``log(s_lo / S) = L_lo`` and ``log(s_hi / S) = L_hi`` from :func:`.common.sum_enclosure`
(for shifted_log1p, the divisor ``fl(1 + ŝ')`` adds one more rounding: ``L_lo + log1p(-u)``,
``L_hi + log1p(u)``):

    ŷ_i <= ((e_i (1 + rho_i) + E sub) / s_lo (1 + u) + sub/2)(1 + u_s) + sub_s/2
    ŷ_i >= ((e_i (1 - rho_i) - E sub) / s_hi (1 - u) - sub/2)(1 - u_s) - sub_s/2

and ``|ŷ_i - y_i| <= y_i F_i + A_i`` with the relative factor
``F_i = max(expm1(log1p(rho_i) + log1p(u) + log1p(u_s) - log(s_lo / S)),
            -expm1(log1p(-rho_i) + log1p(-u) + log1p(-u_s) - log(s_hi / S)))``
(log1p/expm1 form: no cancellation even when F is 1e-16) and the absolute part
``A_i = E sub (1 + u)(1 + u_s) / s_lo + (sub/2)(1 + u_s) + sub_s/2``.
Against the correctly rounded reference ``r_i`` (what ``formats.ulp_error`` measures against),
``|ŷ_i - r_i| <= |ŷ_i - y_i| + ulp(r_i)/2``, so the bound in ULPs of ``r_i`` is
``(y_i F_i + A_i) / ulp(r_i) + 1/2``. To first order ``F_i = rho_i + tau + (D + 1) u + u_s``:
naive ``(D + 1 + 4E) u + u_s``, shifted ``(D + 1 + 4E + |d_i| + sum_j y_j |d_j|) u + u_s``
relative, the shape of Blanchard, Higham & Higham (2021) (their ``(n + 3) u`` for recursive
summation, ``D = n - 1``, and a correctly rounded exp, ``E = 1/2``), here for the real summation
order and the measured exp. shifted_log1p (Alg. 4.1): the sum's part ``tau + D u`` is scaled by
``S'/S = 1 - y_k`` (the share of the terms other than the maximum) and one ``u`` is added for
``1 + s'``: ``(2 + 4E + |d_i| + (1 - y_k)(D + sum_(j != k) y_j |d_j| / (1 - y_k)) ) u + u_s``,
never looser than shifted to first order and tighter whenever the maximum carries weight.
BHH's Thm 4.3 bound for shifted softmax is ``(n + 2 + 2(x_max - x_min)) u``; ours, with
``|d_i| <= x_max - x_min`` and ``sum_j y_j |d_j| <= x_max - x_min``, is at most
``(D + 1 + 4E + 2(x_max - x_min)) u + u_s``, and ``D <= n - 1``, ``4E <= 2`` for a correctly
rounded exp (``E = 1/2``): never looser.

online and two-pass (:mod:`.common`, 5.): the same quotient on the sum of 5. Online, to first
order: shifted's ``F_i`` plus ``(nb - 1)(ceil(2E) + 1) u`` for the moves (``nb`` blocks of 2048;
nothing for rows of one block, where the kernel *is* shifted), so BHH's Thm 4.3 comparison holds
with ``D`` replaced by ``D + (nb - 1)(ceil(2E) + 1) <= n - 1 + 3 n / 2048``: never looser for
``n <= 2048``, and within ``3/2048`` of a ``u`` per term beyond. Two-pass: ``rho_i = 2Eu`` (no
rounded shift), so ``(D + 1 + 4E) u + u_s``: BHH's Thm 3.3 for the basic algorithm, ``(n + 3) u``,
with our ``D <= n - 1`` and ``4E <= 2`` for a correctly rounded exp (16-bit compute; 3.08 with the
float32 exp's 0.77), without the basic algorithm's overflow: the tighter of the two shapes on
wide rows, as the audit measures (a few ULPs where shifted has tens).

Domain (the bound's hypotheses): every partial sum stays below the compute format's largest
finite number, ``s_hi < max_finite``, and the sum cannot vanish, ``s_lo > 0``. Rows outside
are reported with a reason and the predicted outcome, never bounded:

- ``"nonfinite_input"``: NaN or ``+inf`` in the row, or no finite entry. The reference is a NaN row;
  shifted gives a NaN row, naive gives NaN at ``+inf`` entries and 0 elsewhere.
- ``"overflow"``: ``s_hi >= max_finite`` (naive past its exp/sum overflow edge; online and
  two-pass in float16 arithmetic, whose block sums of up to 2048 each add up past 65504 on rows of
  32 blocks and more): an exp or a partial
  sum may be inf; the row is then NaN where a term overflowed and 0 elsewhere, or all 0 when
  only the sum overflowed. Never for shifted and shifted_log1p:
  every term is ``exp(d <= 0) <= 1``, so in float32/float64 a partial sum is at most
  ``n (1 + u)^D``, far below the largest finite; in float16 arithmetic the recursive sum of terms
  ``<= 1`` never exceeds 4096 (from 2048 on, ``s + e`` with ``e <= 1`` rounds to ``s`` or, on a
  tie, ``s + 2``; at 4096 the spacing is 4 and ``s + 1`` rounds back to ``s``), below 65504, even
  when ``s_hi`` (which ignores this stagnation) is larger.
- ``"underflow"``: ``tau >= 1``, i.e. ``s_lo <= 0`` (naive, every term below or near the underflow
  edge): the sum may be 0, giving a 0/0 NaN row, or a few subnormals with errors no relative bound can describe.

Evaluating the bound in float64 (:func:`softmax_bounds`): ``d_j``, ``e_j``, ``S`` and ``y_i`` are
computed in float64 with relative errors below ``1e-12`` wherever they matter (``|d_j| < 800``
whenever ``e_j`` is not negligible, and ``np.sum`` is pairwise), and ``F`` in log1p/expm1 form, so
the computed bound is within a relative ``1e-11`` of the exact one; it is multiplied by
:data:`EVAL_SAFETY` ``= 1 + 2**-20``. Values that float64 itself underflows (``e_j`` or ``y_i``
below 2**-1022) carry an absolute error of up to one float64 subnormal, covered by adding
:data:`EVAL_ABS` (= 4 float64 subnormals, times ``1 + F``) to the absolute part. For float16 and
float32 compute these slacks are far below any ULP; for float64 compute they add at most a few
ULPs on subnormal outputs only.

In the audit (:func:`record_fields`): ``within_bound`` is evaluated on the rows inside the domain;
rows outside are counted in ``outside_bound_domain_rows`` (by reason), with
``outside_domain_failed_rows`` saying how many really failed (NaN, inf or all-zero row). The domain
test is the theory above, never the observed outcome.
"""
from __future__ import annotations

import math

import numpy as np

from .common import (EVAL_ABS, EVAL_SAFETY, TWO_PASS_UNIT, RowBounds, kernel_constants,
                     online_constants, row_bounds, sum_enclosure)

__all__ = ["softmax_bounds", "division_free_bounds"]


def softmax_bounds(spec, x, ref=None) -> RowBounds:
    """Evaluate the module docstring's bound for softmax kernel ``spec`` on input ``x`` (storage
    dtype, along the last axis; any leading shape is flattened to rows).

    ``ref``: the correctly rounded reference (same shape), whose ULP is the unit of ``ulp_bound``;
    without it a lower bound of ``ulp(r_i)`` is used (the ULP of ``y_i`` itself, taken just below
    it: ``r_i = RN(y_i)`` never has a smaller ULP), which only makes ``ulp_bound`` larger."""
    if spec.algorithm.startswith("division_free"):
        return division_free_bounds(spec, x, ref)
    k = kernel_constants(spec)
    if k.streaming == "two_pass":  # rows outside its domain run the online algorithm
        from softmax_bench.kernels.softmax.streaming import PARTS_LIMITS

        limit = PARTS_LIMITS[k.compute.name]
        n = np.shape(x)[-1]
        with np.errstate(invalid="ignore"):
            parts = (np.abs(np.asarray(x).astype(np.float64).reshape(-1, n)) <= limit).all(axis=1)
        if not parts.all():
            tp, on = _bounds(k, x, ref), _bounds(online_constants(k), x, ref)
            return RowBounds(*(np.where(parts.reshape((-1,) + (1,) * (np.ndim(a) - 1)), a, b)
                               for a, b in zip(vars(tp).values(), vars(on).values())))
    return _bounds(k, x, ref)


def _bounds(k, x, ref) -> RowBounds:
    n = np.shape(x)[-1]
    rs = sum_enclosure(k, x, n)
    rows = rs.S.shape[0]
    with np.errstate(all="ignore"):
        log_lo, log_hi = rs.L_lo, rs.L_hi
        if k.leave_out:  # the divisor fl(1 + s') rounds once more
            log_lo, log_hi = log_lo + math.log1p(-k.u), log_hi + math.log1p(k.u)
        special = rs.special
        if k.streaming:  # the sum is >= 1 - u; float16 arithmetic sums across blocks can overflow
            overflow = ~special & ~(rs.s_hi * TWO_PASS_UNIT < k.compute.max_finite)
            underflow = np.zeros(rows, bool)
        elif k.shifted:  # no partial sum can overflow, the sum is >= 1 - u (module docstring)
            overflow = np.zeros(rows, bool)
            underflow = np.zeros(rows, bool)
        else:
            overflow = ~special & ~(rs.s_hi < k.compute.max_finite)
            underflow = ~special & ~overflow & ~((rs.tau < 1) & (rs.S > 0) & np.isfinite(log_lo))
        in_domain = ~(special | overflow | underflow)
        Sg = np.where(in_domain, rs.S, 1.0)[:, None]
        log_lo = np.where(in_domain, log_lo, 0.0)[:, None]
        log_hi = np.where(in_domain, log_hi, 0.0)[:, None]
        y = rs.e / Sg
        rho_i = np.where(rs.e > 0, rs.rho, 0.0)  # a zero (or -inf) entry: error in the absolute part
        f_hi = np.expm1(np.log1p(rho_i) + math.log1p(k.u) + math.log1p(k.u_s) - log_lo)
        small = rho_i < 1
        f_lo = np.where(
            small,
            -np.expm1(np.log1p(-np.where(small, rho_i, 0.0)) + math.log1p(-k.u)
                      + math.log1p(-k.u_s) - log_hi),
            1.0,
        )
        F = np.maximum(f_hi, f_lo)
        s_lo_g = Sg * np.exp(log_lo)
        unit = TWO_PASS_UNIT if k.streaming == "two_pass" else 1.0  # sums in units of 2**K
        A = (
            k.E * k.sub * unit * (1 + k.u) * (1 + k.u_s) / s_lo_g
            + 0.5 * k.sub * (1 + k.u_s)
            + 0.5 * k.sub_s
            + EVAL_ABS * (1 + F)
        )
        abs_bound = (np.where(y > 0, y * F, 0.0) + A) * EVAL_SAFETY
    return row_bounds(k, abs_bound, y, ref, special, overflow, underflow)


def division_free_bounds(spec, x, ref=None) -> RowBounds:
    """The bound of the division-free kernels, ``y_i = exp(fl(x_i - f̂))`` with ``f̂`` the row's
    logsumexp in the compute format (``kernels/softmax/division_free*.py``).

    ``f̂`` errs by at most ``a_f`` (:func:`.logsumexp.logsumexp_error`, steps 1-3 there, before
    any storage rounding), so ``fl(x_i - f̂) = (x_i - f̂)(1 + alpha)`` is within
    ``delta_i = a_f + u (|x_i - f| + a_f)`` of ``t_i = x_i - f``, and exp (``E`` ULPs) gives
    ``ŷ_i`` in ``y_i exp(+-delta_i)(1 +- 2Eu) +- E sub``; the store adds ``(1 +- u_s) +- sub_s/2``.
    Relative factor ``F_i = max(expm1(delta_i + log1p(2Eu) + log1p(u_s)),
    -expm1(-delta_i + log1p(-2Eu) + log1p(-u_s)))``, absolute part ``E sub (1 + u_s) + sub_s/2``.
    To first order ``F_i = (D + 4E + 2E_L |log S| + |f| + |x_i - f|) u + u_s`` for the naive ``f``
    (``D`` from the sum; the ``|f|`` from the rounding of ``f`` itself, the ``|x_i - f|`` from the
    subtraction): BHH's Thm 3.4 ``(|f| + max_j |x_j - f| + n + 2) u`` with our ``D`` and exp,
    plus the rounding of ``log``; for ``f`` by Alg. 4.1 the sum's part is scaled by ``S'/S``
    (their Thm 4.4). Domain: the logsumexp's (naive: its sum's overflow and underflow), and
    ``|x_i - f|`` below the compute format's largest finite."""
    from .logsumexp import logsumexp_error

    k = kernel_constants(spec)
    n = np.shape(x)[-1]
    rs = sum_enclosure(k, x, n)
    u, u_s = k.u, k.u_s
    with np.errstate(all="ignore"):
        f, a_f, slack, overflow, underflow = logsumexp_error(k, rs)
        a_f = (a_f + slack) * EVAL_SAFETY
        # t_i = x_i - f as (x_i - m) - log S: no cancellation of a large m against x_i, so the
        # float64 value is within 2**-52 (|d_i| + |log S|) of t_i, a relative error of y = exp(t)
        # far below EVAL_SAFETY - 1 wherever y is not negligible (|d_i| < 800)
        t = np.where(np.isfinite(rs.d), rs.d - rs.log_S[:, None], -np.inf)
        finite_t = np.isfinite(t)
        ta = np.abs(np.where(finite_t, t, 0.0))
        special = rs.special
        overflow |= ~special & ~underflow & ((np.abs(f[:, 0]) + a_f[:, 0] >= k.compute.max_finite)
                                             | (ta >= k.compute.max_finite).any(axis=1))
        delta = np.where(finite_t, a_f + u * (ta + a_f), 0.0)
        y = np.exp(t)
        two_e = 2 * k.E * u
        F = np.maximum(np.expm1(delta + math.log1p(two_e) + math.log1p(u_s)),
                       -np.expm1(-delta + math.log1p(-two_e) + math.log1p(-u_s)))
        A = k.E * k.sub * (1 + u_s) + 0.5 * k.sub_s + EVAL_ABS * (1 + F)
        abs_bound = (np.where(y > 0, y * F, 0.0) + A) * EVAL_SAFETY
    return row_bounds(k, abs_bound, y, ref, special, overflow, underflow)
