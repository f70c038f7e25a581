"""bfloat16 inside numba, with integer bit operations.

numba has no bfloat16 type, so kernels take a bfloat16 array (ml_dtypes) as its ``int16`` view:
the view's type tells the storage format apart from float16, which travels as ``uint16``.
bfloat16 is the upper half of a float32 (sign, 8 exponent bits, 7 fraction bits), so widening is
a shift, and narrowing is round-to-nearest-even on the lower 16 bits: the same exponent range as
float32, gradual underflow included, overflow to inf, NaN kept NaN (quiet).

Public scalar functions (``@cached_njit``; call them from any njit function, or from Python):

- ``bf16_to_float(b)``: int16 bits -> float32 (exact);
- ``float_to_bf16(f)``: float32 -> int16 bits, round-to-nearest-even (as ml_dtypes' astype);
- ``round_to_bf16(f)``: float32 -> float32 holding the nearest bfloat16 value;
- ``round64_to_bf16(d)``: float64 -> float32 holding ``d`` rounded once to bfloat16 (through
  float32 rounded to odd: 24 >= 8 + 2 bits makes the double rounding innocuous, Boldo & Melquiond
  2008, as ``float16.round64_to_half``).
"""
from __future__ import annotations

import numpy as np

from .cache import cached_njit
from .float16 import always_inline, bits_float, float_bits

__all__ = ["bf16_to_float", "float_to_bf16", "round_to_bf16", "round64_to_bf16", "decode_bf16", "encode_bf16"]

_F32_ONE = np.float32(1.0)  # type witness for bits_float


@cached_njit
def bf16_to_float(b):
    """int16 bits of a bfloat16 -> float32, exact (NaN payloads kept)."""
    always_inline()
    return bits_float((np.int64(b) & 0xFFFF) << 16, _F32_ONE)


@cached_njit
def float_to_bf16(f):
    """float32 -> int16 bits of the nearest bfloat16 (ties to even; overflow to inf; NaN -> a
    quiet NaN of the same sign)."""
    always_inline()
    f = np.float32(f)
    u = np.int32(float_bits(f))
    # int32 throughout (each result cast back: numba widens int32 arithmetic to int64, and int64
    # lanes made the vector loop 2.5x slower); the carry of the rounding may run into the sign
    # bit's neighbours, never past them for a non-NaN input, and the low 16 bits are kept
    rounded = np.int32(np.int32(u + 0x7FFF) + np.int32((u >> 16) & 1)) >> 16
    quiet = (u >> 16) | 0x40
    r = quiet if f != f else rounded  # a float compare: cheaper in a vector loop than bit tests
    return np.int16(r & 0xFFFF)


@cached_njit
def round_to_bf16(f):
    """float32 -> float32 holding the nearest bfloat16 value (the rounding of bfloat16
    arithmetic after each operation done in float32, exact for + - * / of bfloat16 operands)."""
    always_inline()
    return bf16_to_float(float_to_bf16(f))


@cached_njit
def round64_to_bf16(d):
    """float64 -> float32 holding ``d`` rounded once (RNE) to bfloat16."""
    always_inline()
    d = np.float64(d)
    f = np.float32(d)  # round to nearest; fix it up to round-to-odd below
    back = np.float64(f)
    inexact = back != d
    away = abs(back) > abs(d)
    b = np.int64(float_bits(f))
    b = b - 1 if (inexact and away) else b
    b = b | 1 if inexact else b
    return round_to_bf16(bits_float(b, _F32_ONE))


@cached_njit
def decode_bf16(h):
    """int16 array of bfloat16 bits (1-D) -> float32 array (exact). From Python:
    ``decode_bf16(x.view(np.int16))`` for an ml_dtypes bfloat16 array ``x``."""
    out = np.empty(h.size, dtype=np.float32)
    for i in range(h.size):
        out[i] = bf16_to_float(h[i])
    return out


@cached_njit
def encode_bf16(f):
    """float32 array (1-D) -> int16 array of bfloat16 bits, round-to-nearest-even.
    From Python: ``encode_bf16(y).view(ml_dtypes.bfloat16)``."""
    out = np.empty(f.size, dtype=np.int16)
    for i in range(f.size):
        out[i] = float_to_bf16(f[i])
    return out
