"""kernels/log.py: ``log_of_float32`` against libm on every float32 input and against mpmath on a
sample; its specials; and that a loop over it vectorises (no libm call).

Tolerance: 2**-49 relative. The algorithm's own budget (module docstring): the series' tail below
2**-50 of the result plus a few float64 roundings of terms that are at most 0.41 of it; the
exhaustive sweep found 2**-49.9 against libm, whose own error is below 2**-52."""
from __future__ import annotations

import math
import platform
import re

import mpmath
import numpy as np
import pytest
from numba import njit, prange

from softmax_bench.kernels.float16 import bits_float, float_bits
from softmax_bench.kernels.log import log_of_float32

REL = 2.0**-49


@njit(parallel=True)
def _sweep(lo, hi, step):
    """(largest relative distance to libm's log, count of float32 results that differ from the
    float32 rounding of libm's, count of NaN results where libm gives none or the reverse) over
    the float32 bit patterns ``lo, lo + step, ... < hi``."""
    n = (hi - lo + step - 1) // step
    chunks = 64
    worst = np.zeros(chunks)
    differ = np.zeros(chunks, np.int64)
    nans = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        for j in range(c * n // chunks, (c + 1) * n // chunks):
            x = bits_float(np.uint32(lo + j * step), np.float32(0))
            d = np.float64(x)
            a = log_of_float32(d)
            b = math.log(d)
            if (a != a) != (b != b):
                nans[c] += 1
            if b == b and a == a and b != 0.0 and abs(b) != np.inf:
                worst[c] = max(worst[c], abs(a - b) / abs(b))
            a32 = float_bits(np.float32(a))
            b32 = float_bits(np.float32(b))
            if a32 != b32 and not (a != a and b != b):
                differ[c] += 1
    return worst.max(), differ.sum(), nans.sum()


@pytest.mark.slow
def test_equals_libm_rounded_to_float32_on_every_float32():
    """Every float32 from +0 to +inf and the NaNs above them (2**31 inputs): within REL of
    libm's float64 log, and the same float32 after rounding (so the float32 and 16-bit
    log-softmax / logsumexp kernels keep their bits); the sign-set half, whose log is a NaN
    (or -inf for -0), every 97th pattern. About 30 s on 2 cores."""
    worst, differ, nans = _sweep(0, 1 << 31, 1)
    print(f"\nlog_of_float32 on all float32 >= +0: max relative distance to libm "
          f"2**{math.log2(worst):.1f}")
    assert worst <= REL
    assert differ == 0 and nans == 0
    worst, differ, nans = _sweep(1 << 31, 1 << 32, 97)
    assert differ == 0 and nans == 0


def test_within_rel_of_mpmath_on_a_sample():
    """Independent of libm: 4,000 float32 inputs over the whole range (subnormals included)."""
    rng = np.random.default_rng(11)
    bits = rng.integers(1, 0x7F800000, 4000, dtype=np.uint32)
    x = np.concatenate([bits.view(np.float32), np.float32([1.0, 2.0, 0.5, 1e-45, 3.4e38,
                                                           np.nextafter(np.float32(1), 2),
                                                           np.nextafter(np.float32(1), 0)])])
    mpmath.mp.prec = 120
    for v in x.tolist():
        a = log_of_float32(v)
        t = mpmath.log(mpmath.mpf(v))
        if t == 0:
            assert a == 0.0
        else:
            assert abs((mpmath.mpf(a) - t) / t) <= REL, v


def test_specials():
    nan_payload = np.array([0x7FC12345], np.uint32).view(np.float32)[0]
    assert log_of_float32(np.inf) == np.inf
    assert log_of_float32(0.0) == -np.inf and log_of_float32(-0.0) == -np.inf
    for v in (-1.0, -np.inf, -1e-45):
        assert np.isnan(log_of_float32(v))
    out = log_of_float32(np.float64(nan_payload))
    assert np.isnan(out)
    # the payload survives, as through libm (float32 -> float64 -> float32 round trip)
    assert np.float32(out).view(np.uint32) == np.float32(math.log(np.float64(nan_payload))).view(np.uint32)


@njit
def _log_loop(x, out):
    for i in range(x.size):
        out[i] = log_of_float32(x[i])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 asm check")
def test_loop_vectorises():
    """A loop over it compiles to packed divisions and calls no libm ``log``."""
    x = np.linspace(0.5, 50, 64)
    _log_loop(x, np.empty_like(x))
    sig = _log_loop.signatures[0]
    assert re.search(r"vdivpd\s+[^\n]*%[yz]mm", _log_loop.inspect_asm(sig))
    assert not re.search(r"call [^\n]*@(log|logf)\(", _log_loop.inspect_llvm(sig))
