"""Double-double ("double-word") arithmetic for phase 1 into float64, with its error bounds.

A double-double is an unevaluated sum ``hi + lo`` of two float64 with ``hi = RN(hi + lo)``
(so ``|lo| <= ulp(hi) / 2``): 106 bits. The operations are the algorithms analysed by Joldes,
Muller & Popescu, "Tight and rigorous error bounds for basic building blocks of double-word
arithmetic", ACM TOMS 44(2), 2017 (JMP below), built on the error-free transformations TwoSum,
Fast2Sum and the FMA product; ``u = 2**-53``, relative errors of the results:

=================  ==================================  ============================
function           JMP algorithm                       relative error (JMP)
=================  ==================================  ============================
``add_fp``         DWPlusFP (Alg. 4)                   ``2u^2`` (Thm 2.2)
``add``            AccurateDWPlusDW (Alg. 6)           ``3u^2 + 13u^3`` (Thm 3.1)
``mul_fp``         DWTimesFP3 (Alg. 9, FMA)            ``2u^2`` (Thm 4.3)
``_mul_fp1``       DWTimesFP1 (Alg. 7)                 ``1.5u^2 + 4u^3`` (Thm 4.1)
``mul``            DWTimesDW3 (Alg. 12, FMA)           ``5u^2`` (Thm 5.3)
``div``            DWDivDW2 (Alg. 18, on DWTimesFP1)   ``15u^2 + 56u^3`` (Thm 7.3)
=================  ==================================  ============================

(barring underflow, which phase 1 bounds where it can occur: an absolute ``2**-1074`` per
word of a result below ``2**-1022``). The bounds used
below round these up (``2.01u^2``, ``3.01u^2``, ``5.01u^2``, ``15.01u^2``); the tests check every
operation against mpmath on random operands, and :func:`exp` on a million arguments.

``exp(d)`` for a double-double ``d = dh + dl`` in ``[-1100, 800]`` (:func:`exp`)
---------------------------------------------------------------------------------
1. ``k = rint(dh / ln 2)``, ``r = d - k ln 2`` with ``ln 2 = L1 + L2 + L3`` (L1 of 42 bits, so
   ``k L1`` is exact for ``|k| < 2**11``; ``k L2`` by an exact FMA product; ``k L3`` rounded,
   ``|k L3| < 2**-90``, error ``< 2**-143``; ``|ln 2 - L1 - L2 - L3| < 2**-156``). ``TwoSum(dh,
   -k L1)`` is exact and the four small remainders (``dl``, the two words of ``k L2``, ``k L3``;
   each ``< 2**-33``) are added by ``add_fp``: ``|r| <= ln(2)/2 + 2**-32 < 0.34658`` and the
   absolute error ``delta_r <= 4 * 2.01u^2 * 0.3466 + 2**-142 < 2.8u^2``; 0 when ``k = 0``
   (then ``r = d`` exactly).
2. ``s = r / 2**10`` (exact), ``|s| < 3.385e-4 < 2**-11.5``; ``T0 = expm1(s)`` by the Taylor
   polynomial of degree 8, Horner: ``1/120 + s(1/720 + s(1/5040 + s/40320))`` in float64 from
   ``sh`` (relative error below ``6u``; it enters ``T0`` multiplied by ``|s|^4/120 < 2**-52.9``),
   then four double-double steps with the coefficients ``1/24``, ``1/6`` (double-doubles within
   ``u^2/2`` relative), ``1/2`` and ``1``. Truncation: ``|s|^8 / 9! < 2**-110``. Each step's error
   enters ``T0`` attenuated by ``|s|`` per level, so ``|T0 / expm1(s) - 1| <= eps0 = 2.01u^2 (the
   last add) + 5.01u^2 (the last product) + 5.91u^2 (the float64 tail: 6u times ``|s|^4/120 <
   0.985u``) + 0.03u^2 (deeper levels, truncation, coefficients) < 13.0u^2``.
3. Ten squarings in the ``expm1`` form ``T_(i+1) = T_i (2 + T_i)`` (``add_fp`` then ``mul``:
   ``7.02u^2`` each), so ``T10 = expm1(r)``. A relative error ``eps_i`` of ``T_i`` becomes
   ``eps_i (1 + |T_i| / (2 - |T_i|)) + 7.02u^2`` (to first order; second-order terms are below
   ``2**-200``). With ``|T_i| <= expm1(0.3466 / 2**(10 - i))`` the factors multiply to at most
   ``e^0.198 < 1.22``: ``eps10 <= 1.22 (eps0 + 70.2u^2) < 101.5u^2``.
4. ``exp(r) = 1 + T10`` by ``add_fp``: ``|T10| / (1 + T10) <= 0.4143`` for ``|r| <= 0.3466``, so
   the relative error is below ``0.4143 eps10 + 2.01u^2 < 44.1u^2``, and with ``delta_r``
   (``|e^delta - 1| <= 1.0001 delta``) below ``47u^2``. :data:`EXP_REL` is ``256u^2 = 2**-98``,
   a factor 5.4 above that.
5. ``expm1(d)`` (:func:`expm1`) is ``T10`` when ``k = 0`` (relative ``101.5u^2``; ``delta_r =
   0``), and ``(2**k - 1) + 2**k (1 + T10) - 2**k``, formed as ``add_fp(2**k T10, 2**k - 1)``,
   when ``k >= 1``: the absolute error ``2**k (1 + T10) 47u^2`` over the result ``>= 0.2929 2**k
   (1 + T10)`` (``k = 1``, ``r = -0.3466``) is ``160.5u^2`` relative, plus ``2.01u^2``.
   :data:`EXPM1_REL` is ``512u^2 = 2**-97`` (factor 3.2). ``expm1`` serves ``d = 0`` and ``d`` in
   ``[2**-1000, 36]`` (``k <= 52``: ``2**k - 1`` exact; below ``2**-1000`` the Taylor steps
   underflow), all phase 1 needs (``log1p(S')`` for ``2**-60 <= S'`` below ``2**52``).

The result of :func:`exp` is ``(k, eh, el)`` with ``e^d = 2**k (eh + el)``, ``eh + el`` in
``[0.7071, 1.4143]``: the scale apart, so ``e^-1000`` keeps its 106 bits where ``2**-1442``
would underflow.
"""
from __future__ import annotations

from pathlib import Path

import llvmlite.ir as llvm_ir
import numpy as np
from numba import types
from numba.extending import intrinsic

from softmax_bench.jit import numba_cache

__all__ = ["EXP_REL", "EXPM1_REL", "ADD_REL", "ADD_FP_REL", "MUL_REL", "MUL_FP_REL", "DIV_REL",
           "fma", "two_sum", "fast_two_sum", "two_prod", "add_fp", "add", "mul_fp", "mul", "div",
           "exp", "expm1"]

_, _cached_njit = numba_cache(Path(__file__).parent)

U = 2.0**-53
U2 = U * U
#: Relative error bounds of the operations (JMP's, rounded up; module docstring).
ADD_FP_REL = 2.01 * U2
ADD_REL = 3.01 * U2
MUL_FP_REL = 2.01 * U2
MUL_REL = 5.01 * U2
DIV_REL = 15.01 * U2
#: Relative error bound of :func:`exp`'s ``2**k (eh + el)`` (module docstring, 4.).
EXP_REL = 256.0 * U2
#: Relative error bound of :func:`expm1` (module docstring, 5.).
EXPM1_REL = 512.0 * U2

# ln 2 = _L1 + _L2 + _L3: _L1 has 42 significant bits (k * _L1 exact for |k| < 2**11)
_L1 = 0.6931471805598903
_L2 = 5.497923018708371e-14
_L3 = 1.94704509238075e-31
_INV_LN2 = 1.4426950408889634
# 1/6 and 1/24 as double-doubles
_C6H, _C6L = 0.16666666666666666, 9.25185853854297e-18
_C24H, _C24L = 0.041666666666666664, 2.3129646346357427e-18


@intrinsic
def fma(typingctx, a, b, c):
    """``RN(a * b + c)`` with one rounding (LLVM's ``llvm.fma.f64``: the FMA instruction where
    the CPU has one, libm's correctly rounded ``fma`` elsewhere)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        double = llvm_ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [double],
                                              llvm_ir.FunctionType(double, [double] * 3))
        return builder.call(fn, args)

    return sig, codegen


@_cached_njit
def two_sum(a, b):
    """``(s, e)``: ``s = RN(a + b)``, ``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_cached_njit
def fast_two_sum(a, b):
    """``(s, e)`` as :func:`two_sum`, for ``|a| >= |b|`` (or ``a = 0``) (Dekker)."""
    s = a + b
    return s, b - (s - a)


@_cached_njit
def two_prod(a, b):
    """``(p, e)``: ``p = RN(a b)``, ``a b = p + e`` exactly (FMA)."""
    p = a * b
    return p, fma(a, b, -p)


@_cached_njit
def add_fp(xh, xl, y):
    """``x + y`` for a double-double ``x`` and a float64 ``y`` (DWPlusFP)."""
    sh, sl = two_sum(xh, y)
    return fast_two_sum(sh, xl + sl)


@_cached_njit
def add(xh, xl, yh, yl):
    """``x + y`` for double-doubles (AccurateDWPlusDW)."""
    sh, sl = two_sum(xh, yh)
    th, tl = two_sum(xl, yl)
    vh, vl = fast_two_sum(sh, sl + th)
    return fast_two_sum(vh, tl + vl)


@_cached_njit
def mul_fp(xh, xl, y):
    """``x y`` for a double-double ``x`` and a float64 ``y`` (DWTimesFP3)."""
    ch, cl1 = two_prod(xh, y)
    return fast_two_sum(ch, fma(xl, y, cl1))


@_cached_njit
def _mul_fp1(xh, xl, y):
    """``x y`` for a double-double ``x`` and a float64 ``y`` (DWTimesFP1: the product inside
    JMP's proof of DWDivDW2)."""
    ch, cl1 = two_prod(xh, y)
    th, tl1 = fast_two_sum(ch, xl * y)
    return fast_two_sum(th, tl1 + cl1)


@_cached_njit
def mul(xh, xl, yh, yl):
    """``x y`` for double-doubles (DWTimesDW3)."""
    ch, cl1 = two_prod(xh, yh)
    tl1 = fma(xh, yl, xl * yl)
    cl2 = fma(xl, yh, tl1)
    return fast_two_sum(ch, cl1 + cl2)


@_cached_njit
def div(xh, xl, yh, yl):
    """``x / y`` for double-doubles (DWDivDW2)."""
    th = xh / yh
    rh, rl = _mul_fp1(yh, yl, th)
    d = (xh - rh) + (xl - rl)
    return fast_two_sum(th, d / yh)


@_cached_njit
def _expm1_reduced(dh, dl):
    """``(k, th, tl)`` with ``e^d = 2**k (1 + t)`` (module docstring, 1. to 3.)."""
    k = np.rint(dh * _INV_LN2)
    a, b = two_sum(dh, -k * _L1)  # exact: k * _L1 is
    p2, e2 = two_prod(k, _L2)
    rh, rl = add_fp(a, b, dl)
    rh, rl = add_fp(rh, rl, -p2)
    rh, rl = add_fp(rh, rl, -e2)
    rh, rl = add_fp(rh, rl, -k * _L3)
    sh, sl = rh * 2.0**-10, rl * 2.0**-10
    p = 1.0 / 120.0 + sh * (1.0 / 720.0 + sh * (1.0 / 5040.0 + sh * (1.0 / 40320.0)))
    qh, ql = mul_fp(sh, sl, p)
    qh, ql = add(qh, ql, _C24H, _C24L)
    qh, ql = mul(qh, ql, sh, sl)
    qh, ql = add(qh, ql, _C6H, _C6L)
    qh, ql = mul(qh, ql, sh, sl)
    qh, ql = add_fp(qh, ql, 0.5)
    qh, ql = mul(qh, ql, sh, sl)
    qh, ql = add_fp(qh, ql, 1.0)
    th, tl = mul(qh, ql, sh, sl)
    for _ in range(10):
        vh, vl = add_fp(th, tl, 2.0)
        th, tl = mul(th, tl, vh, vl)
    return int(k), th, tl


@_cached_njit
def exp(dh, dl):
    """``(k, eh, el)``: ``e^(dh + dl) = 2**k (eh + el)`` within :data:`EXP_REL` relative, for
    ``dh`` in ``[-1100, 800]``."""
    k, th, tl = _expm1_reduced(dh, dl)
    eh, el = add_fp(th, tl, 1.0)
    return k, eh, el


@_cached_njit
def expm1(dh, dl):
    """``e^(dh + dl) - 1`` as a double-double within :data:`EXPM1_REL` relative, for ``dh = 0``
    and ``dh`` in ``[2**-1000, 36]``."""
    k, th, tl = _expm1_reduced(dh, dl)
    if k == 0:
        return th, tl
    scale = 2.0**k
    return add_fp(th * scale, tl * scale, scale - 1.0)
