"""exp that LLVM vectorises: Cody-Waite range reduction, a minimax polynomial, scaling by 2**k
built from exponent bits. Scalar numba functions, meant to be called from kernel loops.

numba's ``math.exp`` / ``np.exp`` inside a loop is a call to the scalar libm (pip builds of numba
have no SVML), so such a loop does not vectorise and runs several times slower than numpy's own
exp. The functions here are straight-line code (selects, no branches, no calls except to LLVM
intrinsics that lower to single instructions), so a loop calling them vectorises.

Public functions (``@cached_njit``, see cache.py; call them from any njit function, or from Python):

- ``exp32(x) -> float32``: float32 in and out, all arithmetic in float32. Exhaustive over all
  2**32 inputs against the float64 libm exp: max error 0.7644 ULP (at x = -87.71553, a subnormal
  result); 0.6546 ULP over results in the normal range; 99.890 % of the 2.24e9 inputs with a
  finite non-zero result correctly rounded; +0 below the underflow threshold and +inf above the
  overflow threshold exactly where correct rounding gives them.
- ``exp64(x) -> float64``: float64 in and out. On 10**6 inputs over the whole range against
  mpmath: max 0.747 ULP (subnormal result), 0.636 ULP over normal-range results, 98.8 %
  correctly rounded.
- ``exp16(x) -> float32``: ``x`` a float32 holding a binary16 value; the result is a float32
  holding the correctly rounded binary16 exp(x), for all 65,536 inputs (exhaustive check).
- ``exp_shifted32(d)``, ``exp_shifted64(d)``: ``exp32`` / ``exp64`` of ``d <= 0`` or a NaN
  (what a shifted softmax exponentiates: ``x - max``, NaN when the row holds a NaN), the same
  bits with two fewer vector operations (checked on every such float32 and 10**6 float64).

Specials (all three): NaN -> NaN (quiet), +inf -> +inf, -inf -> +0, exp(+-0) = 1, overflow to +inf,
gradual underflow to subnormals and then +0.

Algorithm (one generic body, :func:`_exp_core`, specialised by the types of its constant tuples;
t = 24 or 53 is the precision):

1. Specials by selects: x > ``hi`` clamps to ``hi`` (gives +inf; so +inf -> +inf), x < ``lo`` to
   ``lo`` (gives +0; so -inf -> +0), NaN is clamped to ``hi`` for the computation and returned as
   ``x + x`` at the end. ``hi``/``lo`` lie just beyond the overflow threshold ln(max + ulp/2) and
   the underflow threshold ln(min_subnormal/2).
2. k = floor(x * log2(e) + 1/2) (one FMA, then ``llvm.floor``; the magic-number add/subtract
   rounding trick is *not* used: it breaks under ``reassoc``). r_hi = x - k*ln2_hi by one FMA is
   exact (ln2_hi = ln 2 rounded to the format: x - k*ln2_hi is a multiple of 2**-(t+1) below 1/2
   in magnitude), and the reduced argument is r_hi + d with d = -k*ln2_lo (|r_hi + d| <= ln2/2
   + tiny; ln2_hi + ln2_lo = ln 2 to ~2**-2t relative, and k <= 1077).
3. exp(r) = 1 + r + r**2 P(r), P a minimax polynomial for (exp(r) - 1 - r)/r**2 on
   [-0.3467, 0.3467] with P(0) = 1/2 exactly, fitted (weighted Remez in mpmath, 300 bits) to
   minimise the relative error of the whole 1 + r + r**2 P(r), then rounded to the format:
   float32 degree 5 (relative approximation error 2**-32.3 with the rounded coefficients),
   float64 degree 10 (2**-60.2). Evaluated as t = 1 + r_hi, e1 = r_hi - (t - 1) (exact,
   Fast2Sum), y = t + (r**2 P(r) + (e1 + d)) with r = r_hi + d rounded and Horner with FMA: the
   rounding of the reduced argument and of 1 + r is carried exactly into the small term, so only
   the final addition (1/2 ULP) and the small term's own rounding errors (~0.15 ULP) remain.
4. Scale by 2**k as two multiplications by 2**(k>>1) and 2**(k - (k>>1)), each built from
   exponent bits (always a normal number; k is converted to int32 because AVX2 has no vector
   float -> int64 conversion). y * 2**(k>>1) is exact; the second multiplication is exact for
   normal results and rounds once to the subnormal grid otherwise (gradual underflow; that is a
   second rounding after the one of y, hence the larger figure for subnormal results), and
   k = 128 / 1024 overflows to inf cleanly. On AVX-512 targets one ``llvm.ldexp`` (``vscalef``)
   does the same single rounding of y * 2**k in one instruction (:data:`SCALEF`).

Compilation: no fastmath anywhere (every operation happens in the order written, which the error
analysis assumes); the FMAs are explicit (``llvm.fma``, one instruction on x86-64 with FMA3;
without FMA hardware LLVM calls the correctly rounded libm ``fma``: still right, only slow).
Every function carries LLVM's ``alwaysinline`` attribute (:func:`.float16.always_inline`), so
LLVM inlines it into the caller's loop whatever its size (without it, ``exp16`` was not inlined
and its loop ran 5x slower, unvectorised), while the body keeps its own strict flags: a caller
compiled with ``fastmath=True`` gets the same results (tested). Do not use numba's
``inline='always'`` on a caller chain that would re-lower these bodies under fastmath flags.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .cache import cached_njit
from .bfloat16 import round64_to_bf16
from .float16 import always_inline, bits_float, round64_to_half, target_has

__all__ = ["exp32", "exp64", "exp16", "expbf16", "exp_shifted32", "exp_shifted64", "fma",
           "exp_parts32", "exp_parts64", "scale_down32", "scale_down64", "PARTS_LIMIT32",
           "PARTS_LIMIT64", "SCALEF"]


# ---------------------------------------------------------------------------------------------
# LLVM intrinsics
# ---------------------------------------------------------------------------------------------
@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with one rounding (llvm.fma) for three float32 or three float64 arguments."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@intrinsic
def _floor(typingctx, a):
    """llvm.floor for float32/float64 (numba's math.floor returns an integer)."""
    if a not in (types.float32, types.float64):
        return None
    sig = a(a)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.floor", [args[0].type])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _ldexp(typingctx, y, k):
    """``y * 2**k`` rounded once (llvm.ldexp) for float32/float64 ``y`` and int32 ``k``; on
    AVX-512 one ``vscalefps``/``vscalefpd`` per vector (only there: elsewhere LLVM calls libm's
    scalar ldexp)."""
    if y not in (types.float32, types.float64) or k != types.int32:
        return None
    sig = y(y, k)

    def codegen(context, builder, signature, args):
        ftype = context.get_value_type(signature.args[0])
        name = f"llvm.ldexp.{'f32' if signature.args[0] == types.float32 else 'f64'}.i32"
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ftype, [ftype, ir.IntType(32)]), name)
        return builder.call(fn, args)

    return sig, codegen


#: True where the target has AVX-512 (:func:`..float16.target_has`): ``exp`` scales by ``2**k``
#: with one ``llvm.ldexp`` (``vscalefps``: one instruction for the eight of step 4, 20% less exp
#: time); elsewhere by the two multiplications. Both round ``y 2**k`` once, so the bits are the
#: same (tests/kernels/test_exp.py checks the two against each other).
SCALEF = target_has("avx512f")


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------
#: ln 2 to 136 bits (error < 2**-136), far more than a float64 lo part needs (also kernels/log.py's)
LN2 = Fraction(0xB17217F7D1CF79ABC9E3B39803F2F6AF40, 1 << 136)


def _split_ln2(ftype):
    """ln 2 = hi + lo + O(2**-2t): hi = ln 2 rounded to ``ftype``, lo = the rest, rounded."""
    hi = ftype(float(LN2))
    lo = ftype(float(LN2 - Fraction(float(hi))))
    return hi, lo


def _constants(ftype, lo, hi, coeffs, mant_bits, bias):
    f = ftype
    ln2_hi, ln2_lo = _split_ln2(ftype)
    return (
        f(lo),  # 0: clamp below: exp(lo) rounds to 0
        f(hi),  # 1: clamp above: exp(hi) rounds to inf
        f(1.4426950408889634),  # 2: log2(e), rounded to the format
        ln2_hi,  # 3
        ln2_lo,  # 4
        f(0.5),  # 5
        f(1.0),  # 6
    ), tuple(f(c) for c in coeffs), (mant_bits, bias)


# Minimax coefficients of P(r) ~ (exp(r) - 1 - r) / r**2 on [-0.3467, 0.3467], P(0) = 1/2 exactly;
# weighted Remez in mpmath (300 bits) minimising max |r**2 (P(r) - Q(r)) / exp(r)|, then rounded
# to the format. Relative error of 1 + r + r**2 P(r) against exp(r), with the rounded
# coefficients: float32 2**-32.3, float64 2**-60.2. Written as hex floats (exact).
_P32_HEX = (
    "0x1.0000000000000p-1",
    "0x1.5555540000000p-3",
    "0x1.5554e60000000p-5",
    "0x1.1113300000000p-7",
    "0x1.6d4df00000000p-10",
    "0x1.9dd6e80000000p-13",
)
_P64_HEX = (
    "0x1.0000000000000p-1",
    "0x1.555555555555ap-3",
    "0x1.5555555555530p-5",
    "0x1.111111110efaap-7",
    "0x1.6c16c16c270a9p-10",
    "0x1.a01a01b273261p-13",
    "0x1.a01a0152509cbp-16",
    "0x1.71ddf255e90b0p-19",
    "0x1.27e58d281e248p-22",
    "0x1.af68905695a70p-26",
    "0x1.1e66f99c223a9p-29",
)

# Clamp limits: beyond the thresholds (float32: overflow 88.7228, underflow -103.9721; float64:
# 709.7827, -745.1332) by a margin, and close enough that k stays in [-150, 128] / [-1077, 1025]
# (both halves of the 2**k scale are then normal numbers).
_C32, _P32, _I32 = _constants(
    np.float32, -104.0, 89.0, [float.fromhex(h) for h in _P32_HEX], 23, 127
)
_C64, _P64, _I64 = _constants(
    np.float64, -746.0, 710.0, [float.fromhex(h) for h in _P64_HEX], 52, 1023
)


# ---------------------------------------------------------------------------------------------
# the generic body
# ---------------------------------------------------------------------------------------------
@cached_njit
def _exp_reduced(x, C, P):
    """(y, k) with exp(x) = y * 2**k: ``k = floor(x log2(e) + 1/2)`` (a float holding an integer),
    ``y`` = exp(r) for the reduced argument ``r = x - k ln 2`` (steps 2-3 of the module docstring),
    in [0.7, 1.42]. ``x`` finite, and small enough for ``|r| <= 0.3467`` (the polynomial's
    interval): ``exp`` passes its clamped input, :func:`exp_parts32` / :func:`exp_parts64` state
    their own limits."""
    always_inline()
    log2e, ln2_hi, ln2_lo, half, one = C[2], C[3], C[4], C[5], C[6]
    kf = _floor(fma(x, log2e, half))
    r_hi = fma(-kf, ln2_hi, x)  # exact
    d = -kf * ln2_lo  # r = r_hi + d (+ the error of ln2_hi + ln2_lo, ~2**-2t relative)
    r = r_hi + d  # rounded: used only inside the small term r**2 P(r)
    t = one + r_hi  # exp(r) = t + e1 + d + r**2 P(r), e1 exact (Fast2Sum, |1| > |r_hi|):
    e1 = r_hi - (t - one)
    p = P[len(P) - 1]
    for i in range(len(P) - 2, -1, -1):  # Horner, unrolled by LLVM (P is a constant tuple)
        p = fma(p, r, P[i])
    return t + fma(r * r, p, e1 + d), kf


@cached_njit
def times_pow2_mul(y, k, I):
    """``y * 2**k`` (``k`` int32, ``2 - bias <= k >> 1`` and ``k - (k >> 1) <= bias``: both halves
    normal) by two multiplications by powers of two built from exponent bits. For ``y = 0`` or
    ``y >= 1/2`` (every caller: exp's ``y`` in [0.7, 1.42], the two-pass sums and terms) the first
    is exact and the second rounds once (exact unless the result is subnormal or overflows), as
    :func:`times_pow2_scalef` does; a tinier ``y`` could round twice."""
    always_inline()
    mant_bits, bias = I
    k1 = k >> 1
    k2 = k - k1
    return (y * bits_float((k1 + bias) << mant_bits, y)) * bits_float((k2 + bias) << mant_bits, y)


@cached_njit
def times_pow2_scalef(y, k, I):
    """:func:`times_pow2_mul` by one ``llvm.ldexp`` (AVX-512 ``vscalef``): the same rounding."""
    always_inline()
    return _ldexp(y, k)


#: ``y * 2**k`` rounded once, as the target does it best (:data:`SCALEF`).
times_pow2 = times_pow2_scalef if SCALEF else times_pow2_mul


@cached_njit
def _exp_of_clamped(x, C, P, I):
    """exp(x) for ``lo <= x <= hi`` (steps 2-4 of the module docstring)."""
    always_inline()
    y, kf = _exp_reduced(x, C, P)
    # int32, not int64: AVX2 has no vector float -> int64 conversion (LLVM would scalarise it)
    return times_pow2(y, np.int32(kf), I)


@cached_njit
def _exp_core(x, C, P, I):
    """exp(x) in the precision of ``x`` (float32 or float64); ``C`` float constants, ``P`` the
    polynomial coefficients, ``I`` = (mantissa bits, exponent bias); see the module docstring."""
    always_inline()
    lo, hi = C[0], C[1]
    is_nan = x != x
    # clamps that turn a NaN into hi (keeping the float -> int conversion below defined) with no
    # select of their own: x < hi is false for NaN (vminps(x, hi) returns hi), one vector op
    # fewer than clamping and then replacing a NaN (float32 batches ~2% faster, same bits)
    xc = x if x < hi else hi
    xc = xc if xc > lo else lo
    y = _exp_of_clamped(xc, C, P, I)
    return x + x if is_nan else y


@cached_njit
def _exp_core_shifted(d, C, P, I):
    """:func:`_exp_core` for ``d <= 0`` or a NaN (a difference ``x - max``), in three vector
    operations instead of five around the same reduction: the clamp below (``d > lo`` is false
    for NaN, which becomes ``lo``: a defined float -> int conversion), and the NaN returned as
    ``d + d`` (quiet, as :func:`_exp_core` returns it) by ``y > d + d``, false only for NaN
    (otherwise ``exp(d) >= 0 >= d + d``, never both 0: ``exp(+-0) = 1``), which x86 does in one
    ``vmaxps`` after the addition. For those inputs the same operations on the same values as
    :func:`_exp_core`: no clamp above, which ``d <= 0`` never reaches. (Returning ``d`` itself
    would save the addition, but then the loop ``e[i] = exp(e[i])`` needs to store only where
    ``y > d``, and LLVM makes it a masked store: cheap with AVX-512, a microcoded ``vmaskmovps``
    with AVX2, where that loop took 1.4-1.6x the time of exp32's.) A ``d`` above the overflow
    threshold, or so large that ``k`` leaves int32, is outside the domain."""
    always_inline()
    lo = C[0]
    nan = d + d
    y = _exp_of_clamped(d if d > lo else lo, C, P, I)
    return y if y > nan else nan


@cached_njit
def _scale_down(y, j, lowest, I):
    """``y * 2**j`` for ``j <= 0`` (a float holding an integer, of ``y``'s type) and ``y = 0`` or
    ``y >= 1/2``, rounded once (exact unless the result is subnormal); ``j`` below the clamp
    ``lowest`` (``4 - 2 bias``, so that both halves of ``2**j`` stay normal; a float of ``y``'s
    type: an int would make numba clamp in float64) gives 0 for any ``y < 2``
    (:data:`times_pow2`, as in :func:`_exp_core`)."""
    always_inline()
    return times_pow2(y, np.int32(j if j > lowest else lowest), I)


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------
@cached_njit
def exp32(x):
    """exp for float32, computed in float32; returns np.float32. Max error 0.7644 ULP over all
    float32 inputs (0.6546 ULP for normal-range results), 99.89 % correctly rounded."""
    always_inline()
    return _exp_core(np.float32(x), _C32, _P32, _I32)


@cached_njit
def exp64(x):
    """exp for float64; returns np.float64. Max error 0.747 ULP on 10**6 inputs against mpmath
    (0.636 ULP for normal-range results), 98.8 % correctly rounded."""
    always_inline()
    return _exp_core(np.float64(x), _C64, _P64, _I64)


@cached_njit
def exp_shifted32(d):
    """:func:`exp32` of ``d <= 0`` or a NaN (a shifted softmax's ``x - max``): the same bits,
    faster (:func:`_exp_core_shifted`). Not for other inputs."""
    always_inline()
    return _exp_core_shifted(np.float32(d), _C32, _P32, _I32)


@cached_njit
def exp_shifted64(d):
    """:func:`exp64` of ``d <= 0`` or a NaN: the same bits (:func:`_exp_core_shifted`)."""
    always_inline()
    return _exp_core_shifted(np.float64(d), _C64, _P64, _I64)


@cached_njit
def exp16(x):
    """exp of a binary16 value held in a float32, correctly rounded to binary16, returned as a
    float32 holding that binary16 value (``float_to_half`` stores it exactly).

    Computed as ``exp64`` of the (exact) float64 input, rounded once to binary16
    (``round64_to_half``). ``round_to_half(exp32(x))`` is *not* enough: the float32 result can
    land exactly on a binary16 midpoint while exp(x) lies just below it (two inputs, e.g.
    x = 0.0072975 (0x1f79): exp = 1.00732420763, midpoint 1.00732421875). With exp64's error
    below one float64 ULP the rounding is right for every one of the 65,536 inputs (checked
    exhaustively against mpmath in the tests)."""
    always_inline()
    return round64_to_half(exp64(np.float64(x)))


@cached_njit
def expbf16(x):
    """exp of a bfloat16 value held in a float32, correctly rounded to bfloat16 (returned as a
    float32 holding it): ``exp64`` of the exact input rounded once to bfloat16, as ``exp16``
    (checked against mpmath on all 65,536 inputs in the tests)."""
    always_inline()
    return round64_to_bf16(exp64(np.float64(x)))


# ---------------------------------------------------------------------------------------------
# exp with an extended exponent (the two-pass softmax)
# ---------------------------------------------------------------------------------------------
#: Largest |x| :func:`exp_parts32` takes. Its reduction is exp32's (steps 2-3) without the clamp:
#: ``k = floor(fl(x log2e_32 + 1/2))`` misses ``round(x / ln 2)`` by at most
#: ``|x| (2**-26 + 2**-24) log2(e) <= 1.1e-7 |x|``, so ``|r| <= ln2 (1/2 + 1.1e-7 |x|)``, inside the
#: polynomial's [-0.3467, 0.3467] for ``|x| <= 1733``; ``r_hi = x - k ln2_hi`` stays exact (a
#: multiple of 2**-25 below 1/2; ``k |ln 2 - ln2_hi| <= 3e-6``) and ``k ln2_lo`` adds at most 2**-46
#: relative. So y keeps exp32's error: 0.6610 ULP max over every float32 with |x| <= 1024
#: (exhaustive, tests/kernels/test_exp.py, 27 s; |r| <= 0.346629 there).
PARTS_LIMIT32 = 1024.0
#: The same for :func:`exp_parts64`: ``|r| <= 0.3467`` needs ``|x| <= 7e11``; 2**30 keeps ``k``
#: an int32.
PARTS_LIMIT64 = 2.0**30


@cached_njit
def exp_parts32(x):
    """(y, k), float32, with exp(x) = y * 2**k, y in [0.7, 1.42] carrying exp32's error (steps 2-3
    of the module docstring without the clamp), for finite |x| <= :data:`PARTS_LIMIT32`."""
    always_inline()
    return _exp_reduced(np.float32(x), _C32, _P32)


@cached_njit
def exp_parts64(x):
    """(y, k), float64, as :func:`exp_parts32`, for finite |x| <= :data:`PARTS_LIMIT64`."""
    always_inline()
    return _exp_reduced(np.float64(x), _C64, _P64)


@cached_njit
def scale_down32(y, j):
    """``y * 2**j`` in float32 for ``j <= 0`` (an integer-valued float32), one rounding (only for
    a subnormal result; ``j < -250`` gives 0 for ``y < 2``)."""
    always_inline()
    return _scale_down(np.float32(y), np.float32(j), np.float32(4 - 2 * _I32[1]), _I32)


@cached_njit
def scale_down64(y, j):
    """``y * 2**j`` in float64 for ``j <= 0``, as :func:`scale_down32` (clamp at -2042)."""
    always_inline()
    return _scale_down(np.float64(y), np.float64(j), np.float64(4 - 2 * _I64[1]), _I64)
