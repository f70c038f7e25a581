"""log that LLVM vectorises, for the float32 and 16-bit compute modes' logarithms.

Those modes take ``log`` of a compute value in float64 and round the result to the compute
format (:func:`.arith.logc`). numba's ``math.log`` is a call to libm, one per row: for rows of
16 to 64 terms it was a fifth of a log-softmax row's time (2.8 of 14 ns, float32 65536 x 16 on
Zen 5), and the loop around it cannot vectorise. :func:`log_of_float32` is straight-line code
(selects, no branches, no calls), so a loop over a bundle's row sums vectorises.

- ``log_of_float32(d) -> float64``: ``log(d)`` for a float64 ``d`` holding a float32 value (every
  float32, subnormals included, is a normal float64, which is all the reduction below needs).
  Checked on every float32 input (all 2**32 once; tests/kernels/test_log.py sweeps the 2**31 of
  sign 0 and every 97th of the rest, whose logs are NaN or -inf): within 2**-49.9 relative of libm's
  ``log`` (itself within 1 float64 ULP), and rounded to float32 it is libm's rounded result on
  every one of them (NaN bits included), so the kernels' bits are those they had with libm; and
  :data:`softmax_bench.bounds.common.LOG_ULPS`' 0.5002 holds (2**-49 relative is 2**-25 of a
  float32 ULP).

Specials: NaN -> NaN (``d + d``: quiet, payload kept, as libm), +inf -> +inf, +-0 -> -inf, a
negative -> NaN.

Algorithm (the classic one of fdlibm's ``log``, with coefficients of our own):

1. ``d = 2**k z`` with ``z`` in [sqrt(1/2), sqrt(2)), from the exponent bits (``k``: the
   exponent of ``d / sqrt(1/2)``); ``f = z - 1`` is exact (Sterbenz).
2. ``log(z) = log1p(f) = 2 atanh(s)`` with ``s = f / (2 + f)``, ``|s| <= 0.1716``; written as
   ``f - (h - s (h + R))`` with ``h = f**2 / 2`` and ``R = sum_{j=1..8} c_j s**(2j)``, the Taylor
   coefficients ``c_j = 2 / (2j + 1)`` rounded to float64 (the identity ``s f = h (1 - s)`` makes
   it equal to ``2s + s R``; ``f``, exact, carries the result). The series' tail after ``j = 8``
   is below ``2/19 s**18 < 2**-50`` of the result.
3. ``log(d) = k ln2_hi + (log1p(f) + k ln2_lo)``, ``ln2_hi`` ln 2 to 44 bits, so that ``k ln2_hi``
   is exact for ``|k| <= 150`` (float32's range).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .cache import cached_njit
from .exp import LN2
from .float16 import always_inline, bits_float, float_bits

__all__ = ["log_of_float32"]

# ln 2 split: hi to 44 bits (k ln2_hi exact for |k| < 2**9), lo the rest
_LN2_HI = float(Fraction(int(LN2 * (1 << 44)), 1 << 44))
_LN2_LO = float(LN2 - Fraction(_LN2_HI))
#: ``2 / (2j + 1)``, j = 1..8, rounded to float64: the series of ``(2 atanh(s) - 2s) / s``.
_C = tuple(2.0 / (2 * j + 1) for j in range(1, 9))
#: The bits of sqrt(1/2) rounded down: ``d``'s bits minus these have ``k`` in their exponent field.
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_EXPONENT_FIELD = -(1 << 52)  # the sign and exponent bits, as an int64 mask


@cached_njit
def log_of_float32(d):
    """``log(d)`` for a float64 ``d`` holding a float32 value (module docstring); float64."""
    always_inline()
    special = not (d > 0.0 and d < np.inf)  # NaN, +-0, negative, +inf
    x = 1.0 if special else d
    ix = np.int64(float_bits(x))
    tmp = ix - _SQRT_HALF_BITS
    z = bits_float(ix - (tmp & _EXPONENT_FIELD), x)  # in [sqrt(1/2), sqrt(2))
    kf = np.float64(np.int32(tmp >> 52))  # (int32: AVX2 converts no int64 vector to float)
    f = z - 1.0
    h = 0.5 * f * f
    s = f / (2.0 + f)
    w = s * s
    r = _C[7]
    for j in range(6, -1, -1):  # Horner, unrolled by LLVM (_C is a constant tuple)
        r = r * w + _C[j]
    r = r * w
    y = kf * _LN2_HI + ((f - (h - s * (h + r))) + kf * _LN2_LO)
    y = -np.inf if d == 0.0 else y
    y = np.nan if d < 0.0 else y
    return d + d if (d != d or d == np.inf) else y  # NaN (quiet, payload kept), +inf
