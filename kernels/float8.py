"""float8 (e4m3fn and e5m2, as ml_dtypes defines them) inside numba, with integer and exact float
operations.

numba has no 8-bit float type, so kernels take a float8 array as an integer view: e4m3fn as
``uint8``, e5m2 as ``int8`` (the view's type tells the two formats apart, as ``uint16``/``int16``
do for float16/bfloat16). Kernels compute in float32 and round once when they store.

The two formats (sign, ``w`` exponent bits, ``p - 1`` fraction bits, bias ``1 - emin``):

======== = === ===== ==================================== ===============================
format   w  p  emin  specials                             largest finite
======== = === ===== ==================================== ===============================
e4m3fn   4  4    -6  NaN = S.1111.111; no infinity         448 = 1.110b * 2**8
e5m2     5  3   -14  inf = S.11111.00, NaN = S.11111.xx    57344 = 1.11b * 2**15
======== = === ===== ==================================== ===============================

Rounding float32 -> float8 (:func:`float_to_e4m3`, :func:`float_to_e5m2`), bit-identical to
ml_dtypes' ``astype`` (tested on every float32): round-to-nearest-even with gradual underflow by
the magic-number addition ``(|f| + M) - M``, ``M = 2**(e - p + 24)``, ``e = max(E, emin)`` the
exponent of ``|f|`` (clamped to ``emax + 1`` above the range): the sum lies in ``[M, 2M)``, where
float32's spacing is the float8 spacing at ``|f|``, so the one float32 rounding of the addition
*is* the float8 rounding, and the subtraction is exact (Sterbenz). A result above the largest
finite value overflows: to inf in e5m2, to NaN in e4m3fn (ml_dtypes' rule: 464, the tie between
448 and the missing 480, rounds to even 448; anything larger, inf included, is NaN; saturation
would hide the overflow, see formats.py). NaN -> a NaN of the same sign (ml_dtypes' patterns:
e4m3fn S.1111.111, e5m2 S.11111.10). No rounding mode or FTZ setting is assumed but the default
round-to-nearest-even, the only one numba runs in.

Public scalar functions (``@cached_njit``, inlined into callers' loops): ``e4m3_to_float(b)``,
``e5m2_to_float(b)`` (bits -> float32, exact), ``float_to_e4m3(f)``, ``float_to_e5m2(f)``
(float32 -> bits). Array helpers ``decode_e4m3``, ``encode_e4m3``, ``decode_e5m2``,
``encode_e5m2`` (1-D; from Python ``decode_e4m3(x.view(np.uint8))``,
``encode_e5m2(y).view(ml_dtypes.float8_e5m2)``).
"""
from __future__ import annotations

import numpy as np

from .cache import cached_njit
from .float16 import always_inline, bits_float, float_bits

__all__ = ["e4m3_to_float", "float_to_e4m3", "e5m2_to_float", "float_to_e5m2",
           "decode_e4m3", "encode_e4m3", "decode_e5m2", "encode_e5m2"]

_F32_ONE = np.float32(1.0)  # type witness for bits_float
_F32_NAN = 0x7FC00000


@cached_njit
def _decode(b, p, emin, has_inf):
    """float8 bits (low 8 bits of ``b``) of the format (p, emin, has_inf) -> float32, exact."""
    always_inline()
    b = np.int64(b) & 0xFF
    sign = (b & 0x80) << 24
    mag = b & 0x7F
    field = mag >> (p - 1)  # biased exponent
    frac = mag & ((1 << (p - 1)) - 1)
    top = 0x7F >> (p - 1)  # all-ones exponent field
    if has_inf and field == top:  # e5m2: inf or NaN, as float32 with the same sign
        return bits_float(sign | (0x7F800000 if frac == 0 else _F32_NAN), _F32_ONE)
    if not has_inf and mag == 0x7F:  # e4m3fn's only NaN pattern
        return bits_float(sign | _F32_NAN, _F32_ONE)
    if field == 0:  # zero or subnormal: frac * 2**(emin - p + 1), exact in float32
        v = np.float32(frac) * bits_float((emin - p + 1 + 127) << 23, _F32_ONE)
        return -v if sign else v
    return bits_float(sign | ((field + emin - 1 + 127) << 23) | (frac << (24 - p)), _F32_ONE)


@cached_njit
def _encode(f, p, emin, emax, max_finite, has_inf):
    """float32 -> float8 bits (as int64, 0..255) of the format, ties to even (module docstring)."""
    always_inline()
    f = np.float32(f)
    u = np.int64(float_bits(f))
    sign = (u >> 24) & 0x80
    if (u & 0x7FFFFFFF) > 0x7F800000:  # NaN
        return sign | (0x7E if has_inf else 0x7F)
    a = abs(f)
    e = min(max(((u >> 23) & 0xFF) - 127, emin), emax + 1)
    magic = bits_float((e - p + 24 + 127) << 23, _F32_ONE)
    r = (a + magic) - magic  # the float8 rounding of |f| (exact subtraction)
    if r > max_finite:  # overflow (inf included)
        return sign | (0x7F - (1 << (p - 1)) + 1 if has_inf else 0x7F)
    if r < bits_float((emin + 127) << 23, _F32_ONE):  # subnormal or zero: the frac * 2**(emin-p+1)
        return sign | np.int64(r * bits_float((p - 1 - emin + 127) << 23, _F32_ONE))
    rb = np.int64(float_bits(r))
    field = ((rb >> 23) & 0xFF) - 127 - emin + 1
    return sign | (field << (p - 1)) | ((rb >> (24 - p)) & ((1 << (p - 1)) - 1))


@cached_njit
def e4m3_to_float(b):
    """e4m3fn bits (uint8) -> float32 (exact; NaN -> a quiet NaN of the same sign)."""
    always_inline()
    return _decode(b, 4, -6, False)


@cached_njit
def e5m2_to_float(b):
    """e5m2 bits (int8) -> float32 (exact)."""
    always_inline()
    return _decode(b, 3, -14, True)


@cached_njit
def float_to_e4m3(f):
    """float32 -> e4m3fn bits (uint8): ties to even, overflow (inf included) and NaN to NaN."""
    always_inline()
    return np.uint8(_encode(f, 4, -6, 8, np.float32(448.0), False))


@cached_njit
def float_to_e5m2(f):
    """float32 -> e5m2 bits (int8): ties to even, overflow to inf, NaN to NaN."""
    always_inline()
    return np.int8(_encode(f, 3, -14, 15, np.float32(57344.0), True) & 0xFF)  # wraps, as bfloat16's


@cached_njit
def decode_e4m3(b):
    """uint8 array of e4m3fn bits (1-D) -> float32 array."""
    out = np.empty(b.size, dtype=np.float32)
    for i in range(b.size):
        out[i] = e4m3_to_float(b[i])
    return out


@cached_njit
def encode_e4m3(f):
    """float32 array (1-D) -> uint8 array of e4m3fn bits."""
    out = np.empty(f.size, dtype=np.uint8)
    for i in range(f.size):
        out[i] = float_to_e4m3(f[i])
    return out


@cached_njit
def decode_e5m2(b):
    """int8 array of e5m2 bits (1-D) -> float32 array."""
    out = np.empty(b.size, dtype=np.float32)
    for i in range(b.size):
        out[i] = e5m2_to_float(b[i])
    return out


@cached_njit
def encode_e5m2(f):
    """float32 array (1-D) -> int8 array of e5m2 bits."""
    out = np.empty(f.size, dtype=np.int8)
    for i in range(f.size):
        out[i] = float_to_e5m2(f[i])
    return out
