"""IEEE binary16 inside numba, with integer bit operations.

numba has no float16 type on the CPU target, so kernels take a float16 array as its ``uint16``
view (``x.view(np.uint16)``), widen each element to float32 with :func:`half_to_float`, compute,
and narrow back with :func:`float_to_half` (or :func:`round_to_half` when the value stays in a
float32 register, as in the "fp16 arithmetic" mode).

Public scalar functions (numba ``@njit``; call them from any njit function, or from Python):

- ``half_to_float(h) -> float32``: binary16 bits (uint16, or any integer; the low 16 bits are used)
  to the float32 of the same value. Exact for all 65,536 patterns (every binary16 value is a
  float32); NaN payloads are kept as numpy's ``astype(np.float32)`` keeps them (payload shifted
  left by 13, quiet bit not forced).
- ``float_to_half(f) -> uint16``: float32 to binary16 bits, round-to-nearest-even, bit-identical to
  numpy's ``astype(np.float16)``: overflow to inf at and above 65520 (= max 65504 + ulp/2, a tie
  that goes to the even "next" value), gradual underflow with correct rounding into the subnormals
  and to a signed zero, NaN -> NaN (the top 10 payload bits are kept as numpy does; a payload whose
  top bits are all 0 becomes 1 so that the NaN stays a NaN; a quiet NaN stays quiet).
- ``round_to_half(f) -> float32``: ``half_to_float(float_to_half(f))`` in one branch-free step.
- ``round64_to_half(d) -> float32``: a float64 rounded once (no double rounding) to binary16, as
  a float32 (for results computed in float64, e.g. ``exp16``).
- Array helpers ``decode_half(u16) -> float32 array`` and ``encode_half(f32) -> uint16 array``:
  any shape (the result has the input's shape), C order.

Bit-cast intrinsics shared with :mod:`softmax_bench.kernels.exp`: ``float_bits(f)`` (float32 ->
uint32, float64 -> uint64, same bits) and ``bits_float(i, like)`` (integer -> float32/float64 with
the same bits as the low 32/64 bits of ``i``; ``like`` only selects the type).

All integer work is done in int64 (numba widens uint32 arithmetic to 64 bits anyway, and mixing
signed and unsigned 64-bit integers in numba silently gives float64); LLVM narrows it where it
can when it vectorises a loop. Decoding 10**7 halves takes ~6 ms (0.6 ns each, memory-bound),
encoding ~10 ms, ``round_to_half`` ~7 ms on the 2-core AVX2 development machine; numpy's own
``astype`` takes ~30 ms either way.

Compilation: no function here uses ``fastmath``. Each carries LLVM's ``alwaysinline`` attribute
(:func:`always_inline`), so LLVM inlines it into the caller's loop, which can then vectorise,
while the inlined instructions keep their own strict flags (numba's ``inline='always'`` is *not*
used: it inlines numba IR, which is then lowered under the caller's fastmath flags).
Apart from integer operations, only exact float operations are used (int -> float conversion of a
value < 2**11, multiplication by a power of two, float32 <-> float64 conversion of a float32),
plus one rounding addition in the subnormal path (``|f| + 0.5``, see :func:`_tiny_plus_half`),
which relies on round-to-nearest-even, the only rounding mode numba and numpy run in.
Flush-to-zero / denormals-are-zero settings do not change any result.

Why ``round_to_half`` gives correctly rounded binary16 arithmetic: for x, y binary16 values and
op in {+, -, *, /}, computing ``x op y`` in float32 (round-to-nearest-even, p = 24 bits) and then
rounding the float32 result to binary16 (p = 11 bits) gives the same result as rounding the exact
``x op y`` directly to binary16, because 24 >= 2*11 + 2: double rounding is innocuous when the
intermediate precision is at least twice the target precision plus two (Figueroa, "When is double
rounding innocuous?", SIGNUM Newsletter 30(3), 1995; Boldo & Melquiond, "When double rounding is
odd", 2005; for square root 2p + 1 suffices). The exponent range of float32 covers every product
and quotient of binary16 values exactly enough (no float32 overflow or underflow of a binary16
result), so gradual underflow and overflow of the binary16 result are right too. This holds for
single operations only: a float32 fused multiply-add or a longer float32 expression rounded once
at the end is *not* binary16 arithmetic.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .cache import cached_njit

__all__ = [
    "half_to_float",
    "float_to_half",
    "round_to_half",
    "round64_to_half",
    "decode_half",
    "encode_half",
    "float_bits",
    "bits_float",
    "always_inline",
    "F16C",
    "target_has",
    "half_to_float_f16c",
    "float_to_half_f16c",
    "round_to_half_f16c",
    "widen_half",
    "narrow_half",
    "round_half",
]


# ---------------------------------------------------------------------------------------------
# bit casts
# ---------------------------------------------------------------------------------------------
@intrinsic
def float_bits(typingctx, f):
    """float32 -> uint32 / float64 -> uint64 with the same bit pattern (an LLVM bitcast)."""
    if f == types.float32:
        width, rtype = 32, types.uint32
    elif f == types.float64:
        width, rtype = 64, types.uint64
    else:
        return None
    sig = rtype(f)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(width))

    return sig, codegen


@intrinsic
def bits_float(typingctx, i, like):
    """Integer -> float of ``like``'s type (float32 or float64) holding the low 32/64 bits of ``i``
    (truncated or zero-extended first), as an LLVM bitcast."""
    if not isinstance(i, types.Integer):
        return None
    if like == types.float32:
        width, lltype, rtype = 32, ir.FloatType(), types.float32
    elif like == types.float64:
        width, lltype, rtype = 64, ir.DoubleType(), types.float64
    else:
        return None
    sig = rtype(i, like)

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width > width:
            v = builder.trunc(v, ir.IntType(width))
        elif v.type.width < width:
            v = builder.zext(v, ir.IntType(width))
        return builder.bitcast(v, lltype)

    return sig, codegen


@intrinsic
def always_inline(typingctx):
    """Call first thing in an njit function to give its LLVM function the ``alwaysinline``
    attribute, so LLVM inlines it into every caller (and the caller's loop can vectorise) whatever
    the inliner's size heuristics say. Unlike numba's ``inline='always'`` (which inlines numba IR
    and re-lowers it with the *caller's* fastmath flags), this keeps the function's own flags."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        builder.function.attributes.add("alwaysinline")
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------------------------
# constants (int64 unless said otherwise)
# ---------------------------------------------------------------------------------------------
_F32_ONE = np.float32(1.0)  # type witness for bits_float
_TWO_M24 = np.float32(2.0**-24)  # the binary16 subnormal quantum
_REBIAS = (127 - 15) << 23  # binary16 -> binary32 exponent bias change, in float32 bit position
_F32_INF = 0x7F800000
_F32_HALF_OVERFLOW = 0x477FF000  # 65520.0: binary16 rounds to inf at and above this
_F32_HALF_MIN_NORMAL = 0x38800000  # 2**-14
_HALF = np.float32(0.5)
_HALF_BITS = 0x3F000000  # bits of 0.5


# ---------------------------------------------------------------------------------------------
# helpers (int64 in, int64 out)
# ---------------------------------------------------------------------------------------------
@cached_njit
def _tiny_plus_half(a):
    """For a float32 magnitude bit pattern ``a`` below 2**-14 (int64): the float32 sum |f| + 0.5,
    which is 0.5 + k * 2**-24 with k = |f| rounded (RNE) to an integer multiple of 2**-24, the
    binary16 subnormal quantum (0 <= k <= 1024; k = 1024 is the smallest normal 2**-14).

    In [0.5, 1) the float32 quantum is 2**-24, so the float32 addition itself does the rounding
    (round-to-nearest-even, the only rounding mode numba and numpy run in); then
    ``bits(sum) - bits(0.5) = k`` and ``sum - 0.5 = k * 2**-24`` exactly. No fastmath here, so LLVM
    may not fold ``(|f| + 0.5) - 0.5`` away. A float32 subnormal |f| < 2**-126 gives k = 0 with or
    without denormals-are-zero, which is the right answer either way."""
    always_inline()
    return bits_float(a, _F32_ONE) + _HALF


@cached_njit
def _nan_payload(u):
    """The 10 payload bits of the binary16 NaN for the bits ``u`` of a float32 NaN (any integer
    type, signed or not): its top 10 (as numpy), 1 where those are all 0 (so that the NaN stays
    a NaN)."""
    always_inline()
    return max((u >> 13) & 0x3FF, 1)


@cached_njit
def _half_bits_of_magnitude(a):
    """binary16 magnitude bits (int64, 0..0x7fff) for a float32 magnitude bit pattern ``a``."""
    always_inline()
    nan_bits = 0x7C00 | _nan_payload(a)
    # normal binary16: drop 13 bits with round-to-nearest-even; a carry out of the significand
    # bumps the exponent, which is right (and turns 65520 <= |f| < 65536 into inf, 0x7c00).
    normal_bits = (a - _REBIAS + 0xFFF + ((a >> 13) & 1)) >> 13
    sub_bits = np.int64(float_bits(_tiny_plus_half(a))) - _HALF_BITS
    r = normal_bits if a >= _F32_HALF_MIN_NORMAL else sub_bits
    r = 0x7C00 if a >= _F32_HALF_OVERFLOW else r
    return nan_bits if a > _F32_INF else r


# ---------------------------------------------------------------------------------------------
# public scalar functions
# ---------------------------------------------------------------------------------------------
@cached_njit
def half_to_float(h):
    """binary16 bits (low 16 bits of the integer ``h``) -> np.float32 of the same value (exact)."""
    always_inline()
    h = np.int64(h) & 0xFFFF
    sign = (h & 0x8000) << 16
    a = h & 0x7FFF
    normal = (a << 13) + _REBIAS
    special = _F32_INF | ((a & 0x3FF) << 13)  # inf, NaN with its payload
    # zero and subnormals: m * 2**-24 (int -> float exact for m < 2**10; the product is exact)
    tiny = np.int64(float_bits(np.float32(np.int32(a)) * _TWO_M24))
    r = normal if a >= 0x0400 else tiny
    r = special if a >= 0x7C00 else r
    return bits_float(r | sign, _F32_ONE)


@cached_njit
def float_to_half(f):
    """np.float32 -> binary16 bits (np.uint16), round-to-nearest-even, as numpy's astype."""
    always_inline()
    u = np.int64(float_bits(np.float32(f)))
    sign = (u >> 16) & 0x8000
    return np.uint16(_half_bits_of_magnitude(u & 0x7FFFFFFF) | sign)


@cached_njit
def round_to_half(f):
    """np.float32 -> np.float32 rounded to the nearest binary16 value (ties to even, overflow to
    inf, gradual underflow): equal, bit for bit, to ``half_to_float(float_to_half(f))``.

    With it, float32 arithmetic followed by ``round_to_half`` after every single +, -, *, / is
    correctly rounded binary16 arithmetic (float32's 24 bits >= 2*11 + 2; see the module
    docstring)."""
    always_inline()
    u = np.int64(float_bits(np.float32(f)))
    sign = u & 0x80000000
    a = u & 0x7FFFFFFF
    nan_bits = _F32_INF | (_nan_payload(a) << 13)
    normal = (a + 0xFFF + ((a >> 13) & 1)) & 0x7FFFE000
    tiny = np.int64(float_bits(_tiny_plus_half(a) - _HALF))
    r = normal if a >= _F32_HALF_MIN_NORMAL else tiny
    r = _F32_INF if a >= _F32_HALF_OVERFLOW else r
    r = nan_bits if a > _F32_INF else r
    return bits_float(r | sign, _F32_ONE)


@cached_njit
def round64_to_half(d):
    """np.float64 -> np.float32 holding ``d`` rounded (once, RNE) to the nearest binary16 value,
    with overflow to inf and gradual underflow: the same value as numpy's
    ``np.float64(d).astype(np.float16)``.

    A plain ``round_to_half(np.float32(d))`` would round twice (to 24 bits, then to 11) and can
    go wrong when ``d`` is within half a float32 ULP of a binary16 midpoint. Here ``d`` is first
    rounded to float32 *to odd* (truncate, then set the last bit if anything was lost), and that
    double rounding is innocuous: round-to-odd to p >= t + 2 bits followed by round-to-nearest to
    t bits equals direct rounding to t bits (Boldo & Melquiond, "Emulation of FMA and correctly
    rounded sums: proved algorithms using rounding to odd", IEEE TC 2008); 24 >= 11 + 2, and in
    binary16's subnormal range the float32 grid is finer still. NaN -> NaN."""
    always_inline()
    d = np.float64(d)
    f = np.float32(d)  # round to nearest; fix it up to round-to-odd below
    back = np.float64(f)
    inexact = back != d
    away = abs(back) > abs(d)  # rounded away from zero: step back one float32 (magnitude)
    b = np.int64(float_bits(f))
    b = b - 1 if (inexact and away) else b
    b = b | 1 if inexact else b  # a NaN compares unequal: only its low payload bit is set
    return round_to_half(bits_float(b, _F32_ONE))


# ---------------------------------------------------------------------------------------------
# hardware conversions (F16C: vcvtph2ps / vcvtps2ph), chosen at compile time
# ---------------------------------------------------------------------------------------------
def target_has(feature: str) -> bool:
    """Whether numba compiles for a CPU with ``feature`` (an LLVM feature name: "f16c",
    "avx512f"): the features of its own target machine (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES
    respected), which are also part of every numba cache entry's key, so a cached kernel never
    runs on a CPU its instructions do not suit."""
    try:
        from numba.core.registry import cpu_target

        features = cpu_target.target_context.codegen()._tm_features
    except (AttributeError, ImportError):  # another numba: the portable code, always right
        return False
    return f"+{feature}" in features.split(",")


#: True when the kernels convert binary16 with the CPU's F16C instructions (LLVM's ``fpext`` /
#: ``fptrunc`` on ``half``), False when with the integer bit operations above. The two give the
#: same bits on every input except a signalling NaN, which the hardware returns quiet; the
#: kernels never see the difference (see :func:`half_to_float_f16c`).
F16C = target_has("f16c")


@intrinsic
def _fpext_half(typingctx, h):
    """binary16 bits (the low 16 bits of an integer) -> float32, LLVM ``fpext half`` (only where
    the target has F16C: elsewhere LLVM would call a runtime function numba does not link)."""
    if not isinstance(h, types.Integer):
        return None
    sig = types.float32(h)

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width > 16:
            v = builder.trunc(v, ir.IntType(16))
        elif v.type.width < 16:  # as half_to_float's np.int64(h) & 0xFFFF: sign kept
            v = (builder.sext if signature.args[0].signed else builder.zext)(v, ir.IntType(16))
        return builder.fpext(builder.bitcast(v, ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def _fptrunc_half(typingctx, f):
    """float32 -> binary16 bits (uint16), LLVM ``fptrunc`` to ``half`` (round to nearest even)."""
    if f != types.float32:
        return None
    sig = types.uint16(f)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@cached_njit
def half_to_float_f16c(h):
    """:func:`half_to_float` by the F16C conversion (``vcvtph2ps``): the same bits, except that a
    signalling NaN comes back quiet (its quiet bit set, payload and sign kept).

    Why the kernels may use it: they use a loaded value only as an operand of float arithmetic
    (a subtraction, a comparison), never store or bit-test it as it is, and on x86 the NaN
    result of an arithmetic instruction is its first NaN operand *quieted* (Intel SDM vol. 1,
    "Operating on SNaNs and QNaNs"): a signalling NaN quieted here or there gives the same
    result bits. Keeping the bit operations' signalling NaN instead cost a compare and a blend
    per vector (float16 softmax 12-37% slower, AVX2 and AVX-512)."""
    always_inline()
    return _fpext_half(h)


@cached_njit
def float_to_half_f16c(f):
    """:func:`float_to_half` by the F16C conversion (``vcvtps2ph``): the same bits on every float32
    except a signalling NaN, which comes out quiet (the bit operations keep its quiet bit clear).
    On a quiet NaN both keep the sign and the top 10 payload bits (the quiet bit among them, so
    the bit operations' "1 if all 0" never applies). The kernels store only arithmetic results,
    whose NaNs are quiet (:func:`half_to_float_f16c`), so their bits do not depend on it."""
    always_inline()
    return _fptrunc_half(np.float32(f))


@cached_njit
def round_to_half_f16c(f):
    """:func:`round_to_half` by the F16C conversions, with the same exception as
    :func:`float_to_half_f16c`: a signalling NaN comes out quiet."""
    always_inline()
    return _fpext_half(_fptrunc_half(np.float32(f)))


#: The conversions the kernels use (:mod:`.arith`): F16C where the target has it.
widen_half = half_to_float_f16c if F16C else half_to_float
narrow_half = float_to_half_f16c if F16C else float_to_half
round_half = round_to_half_f16c if F16C else round_to_half


# ---------------------------------------------------------------------------------------------
# array helpers
# ---------------------------------------------------------------------------------------------
@cached_njit
def _decode_1d(h, out):
    for i in range(h.size):
        out[i] = half_to_float(h[i])


@cached_njit
def _encode_1d(f, out):
    for i in range(f.size):
        out[i] = float_to_half(f[i])


@cached_njit
def decode_half(h):
    """uint16 array of binary16 bits (any shape) -> float32 array of the same shape (exact).
    From Python: ``decode_half(x.view(np.uint16))`` for a float16 array ``x``."""
    flat = np.ascontiguousarray(h).ravel()
    out = np.empty(flat.size, dtype=np.float32)
    _decode_1d(flat, out)
    return out.reshape(h.shape)


@cached_njit
def encode_half(f):
    """float32 array (any shape) -> uint16 array of binary16 bits, same shape, round-to-nearest-
    even as numpy's astype. From Python: ``encode_half(y).view(np.float16)``."""
    flat = np.ascontiguousarray(f).ravel()
    out = np.empty(flat.size, dtype=np.uint16)
    _encode_1d(flat, out)
    return out.reshape(f.shape)
