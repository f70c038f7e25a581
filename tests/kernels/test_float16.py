"""softmax_bench.kernels.float16: binary16 <-> float32 with integer bit operations, inside numba.

The judge is numpy's own float16 conversion (``astype``), bit for bit:

- decoding: all 65,536 binary16 patterns;
- encoding and ``round_to_half``: EVERY float32 bit pattern whose biased exponent lies in
  [127 - 25 - 1, 127 + 16] = [101, 143], both signs (2 * 43 * 2**23 = 721,420,288 values): that is
  every float32 from 2**-26 (below half the smallest binary16 subnormal, so everything under it
  rounds to zero) up to 2**17 (above the overflow threshold 65520), i.e. every input whose binary16
  rounding is not trivially 0 or inf. It runs in chunks of 2**23 values (one exponent, one sign).
  numpy's own conversion is the slow part: about 3 ns/value in the normal range but about 80 ns
  for values that underflow or overflow (it raises the FP status flags per element), so the sweep
  takes roughly 20-30 s of one core; it is therefore marked ``slow`` but kept exhaustive;
- outside that band: all float32 NaN and infinity exponents and a random sample of every other
  exponent (they can only give +-0, +-inf or NaN);
- named boundary cases, checked against literal expected values, not only against numpy;
- ``round64_to_half`` (float64 -> binary16 in one rounding) against numpy's direct float64 ->
  float16 conversion, at and 1..4 float64 ULPs around every binary16 midpoint (where rounding
  through float32 first would go wrong) and on random float64s.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from softmax_bench.formats import FLOAT16
from softmax_bench.kernels import float16
from softmax_bench.kernels.float16 import (
    bits_float,
    decode_half,
    encode_half,
    float_bits,
    float_to_half,
    half_to_float,
    round64_to_half,
    round_to_half,
)

ALL_HALF = np.arange(65536, dtype=np.uint16)


@njit
def _round_1d(f, out):
    for i in range(f.size):
        out[i] = round_to_half(f[i])


def round_half_array(f: np.ndarray) -> np.ndarray:
    f = np.ascontiguousarray(f, dtype=np.float32)
    out = np.empty_like(f)
    _round_1d(f.ravel(), out.ravel())
    return out


def numpy_encode(f: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return f.astype(np.float16).view(np.uint16)


def f32(bits: int) -> np.float32:
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


# ---------------------------------------------------------------------------------------------
# half -> float
# ---------------------------------------------------------------------------------------------
def test_decode_all_65536_patterns():
    ref = ALL_HALF.view(np.float16).astype(np.float32)
    got = decode_half(ALL_HALF)
    assert got.dtype == np.float32 and got.shape == (65536,)
    nan = np.isnan(ref)
    assert np.array_equal(nan, np.isnan(got))
    assert nan.sum() == 2 * 1023
    # every non-NaN value bit-exact (this includes +-0, subnormals, +-inf)
    assert np.array_equal(ref.view(np.uint32)[~nan], got.view(np.uint32)[~nan])
    # NaNs: NaN-ness and sign, and the payload kept as numpy keeps it (shifted left by 13)
    assert np.array_equal(np.signbit(ref[nan]), np.signbit(got[nan]))
    assert np.array_equal(ref.view(np.uint32)[nan], got.view(np.uint32)[nan])


def test_decode_scalar_matches_array_and_literals():
    for h in (0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x3C01, 0x7BFF, 0x7C00, 0xFC00):
        ref = np.array([h], dtype=np.uint16).view(np.float16).astype(np.float32)[0]
        got = half_to_float(np.uint16(h))
        assert isinstance(got, float)  # numba boxes float32 as a Python float
        assert np.float32(got).view(np.uint32) == ref.view(np.uint32), hex(h)
    assert half_to_float(np.uint16(0x0001)) == 2.0**-24
    assert half_to_float(np.uint16(0x03FF)) == 1023 * 2.0**-24
    assert half_to_float(np.uint16(0x0400)) == FLOAT16.smallest_normal
    assert half_to_float(np.uint16(0x7BFF)) == FLOAT16.max_finite == 65504.0
    assert half_to_float(np.uint16(0x3C00)) == 1.0
    assert half_to_float(np.uint16(0xC000)) == -2.0
    assert np.isnan(half_to_float(np.uint16(0x7E00)))
    assert np.signbit(np.float32(half_to_float(np.uint16(0x8000))))


def test_decode_shapes_and_views():
    x = np.arange(24, dtype=np.float16).reshape(2, 3, 4) - 11.5
    got = decode_half(x.view(np.uint16))
    assert got.shape == x.shape and got.dtype == np.float32
    assert np.array_equal(got, x.astype(np.float32))
    y = x[:, ::2, 1:]  # non-contiguous view
    assert np.array_equal(decode_half(y.view(np.uint16)), y.astype(np.float32))
    assert decode_half(np.empty(0, dtype=np.uint16)).shape == (0,)


# ---------------------------------------------------------------------------------------------
# float -> half, and round_to_half
# ---------------------------------------------------------------------------------------------
def _check_chunk(bits: np.ndarray) -> None:
    f = bits.view(np.float32)
    ref16 = numpy_encode(f)
    got16 = encode_half(f)
    nan = np.isnan(f)
    if nan.any():
        # NaN stays NaN with its sign; payload as numpy (top 10 bits, or 1 if those are 0)
        assert np.array_equal(np.isnan(got16[nan].view(np.float16)), np.ones(nan.sum(), bool))
        assert np.array_equal(got16[nan] >> 15, ref16[nan] >> 15)
    bad = np.flatnonzero(ref16 != got16)
    assert bad.size == 0, [(hex(bits[i]), hex(ref16[i]), hex(got16[i])) for i in bad[:8]]
    ref32 = ref16.view(np.float16).astype(np.float32).view(np.uint32)
    got32 = round_half_array(f).view(np.uint32)
    bad = np.flatnonzero(ref32 != got32)
    assert bad.size == 0, [(hex(bits[i]), hex(ref32[i]), hex(got32[i])) for i in bad[:8]]


@pytest.mark.slow
def test_encode_and_round_every_float32_in_the_half_band():
    """Every float32 with biased exponent 101..143, both signs, against numpy (see module doc)."""
    n = 1 << 23
    for sign in (0, 1 << 31):
        for e in range(127 - 25 - 1, 127 + 16 + 1):
            start = sign | (e << 23)
            _check_chunk(np.arange(start, start + n, dtype=np.uint32))


def test_encode_and_round_boundary_exponents():
    """A quick subset of the slow sweep above (for ``-m "not slow"`` runs): for the exponents at the
    underflow edge (2**-26 .. 2**-23), at the subnormal/normal switch (2**-15 .. 2**-14) and at
    the overflow edge (2**15 .. 2**16), both signs, 2**18 random significands plus the first and
    last 2**12; for every other exponent the first and last 2**12 significands."""
    n = 1 << 23
    rng = np.random.default_rng(7)
    for sign in (0, 1 << 31):
        for e in range(256):
            start = sign | (e << 23)
            _check_chunk(np.arange(start, start + 4096, dtype=np.uint32))
            _check_chunk(np.arange(start + n - 4096, start + n, dtype=np.uint32))
            if e in (101, 102, 103, 112, 113, 142, 143):
                sig = rng.integers(0, n, size=1 << 18, dtype=np.uint32)
                _check_chunk(np.uint32(start) | sig)


def test_encode_and_round_random_sample_all_exponents():
    rng = np.random.default_rng(20240601)
    _check_chunk(rng.integers(0, 1 << 32, size=1 << 22, dtype=np.uint64).astype(np.uint32))
    # all NaN and inf patterns of a sparse grid of payloads, both signs
    payload = np.unique(np.concatenate([np.arange(0, 1 << 23, 4093), [1, 2, 0x1FFF, 0x2000,
                                                                      0x400000, 0x7FFFFF]]))
    for sign in (0, 1 << 31):
        _check_chunk((sign | 0x7F800000 | payload).astype(np.uint32))


# (description, float32 input, expected binary16 bits)
NAMED = [
    ("zero", 0.0, 0x0000),
    ("minus zero keeps its sign", -0.0, 0x8000),
    ("one", 1.0, 0x3C00),
    ("max finite", 65504.0, 0x7BFF),
    ("just below the overflow threshold", f32(0x477FEFFF), 0x7BFF),  # 65519.996
    ("overflow threshold 65520 (tie -> inf)", 65520.0, 0x7C00),
    ("2**16", 65536.0, 0x7C00),
    ("float32 max", f32(0x7F7FFFFF), 0x7C00),
    ("-65520", -65520.0, 0xFC00),
    ("inf", np.inf, 0x7C00),
    ("-inf", -np.inf, 0xFC00),
    ("smallest normal 2**-14", 2.0**-14, 0x0400),
    ("largest subnormal", 1023 * 2.0**-24, 0x03FF),
    ("just below the smallest normal rounds up to it", f32(0x387FFFFF), 0x0400),
    ("midway between largest subnormal and smallest normal (tie -> even 0x400)",
     1023.5 * 2.0**-24, 0x0400),
    ("smallest subnormal 2**-24", 2.0**-24, 0x0001),
    ("2**-25 exactly: tie -> even 0", 2.0**-25, 0x0000),
    ("-2**-25: tie -> -0", -(2.0**-25), 0x8000),
    ("just above 2**-25 -> smallest subnormal", f32(0x33000001), 0x0001),
    ("3 * 2**-26 = 0.75 quantum -> smallest subnormal", 3 * 2.0**-26, 0x0001),
    ("1.5 quanta -> 2 (even)", 1.5 * 2.0**-24, 0x0002),
    ("2.5 quanta -> 2 (even)", 2.5 * 2.0**-24, 0x0002),
    ("3.5 quanta -> 4 (even)", 3.5 * 2.0**-24, 0x0004),
    ("2**-26 -> 0", 2.0**-26, 0x0000),
    ("float32 smallest subnormal -> 0", f32(0x00000001), 0x0000),
    ("float32 smallest subnormal, negative -> -0", f32(0x80000001), 0x8000),
    ("1 + 2**-11: tie -> even 1", 1 + 2.0**-11, 0x3C00),
    ("1 + 3 * 2**-11: tie -> even 1 + 2**-9", 1 + 3 * 2.0**-11, 0x3C02),
    ("1 + 2**-11 + 2**-23: above the tie", 1 + 2.0**-11 + 2.0**-23, 0x3C01),
    ("1 + 2**-11 - 2**-23: below the tie", 1 + 2.0**-11 - 2.0**-23, 0x3C00),
    ("2047.5 -> 2048 (carry into the exponent)", 2047.5, 0x6800),
    ("quiet NaN", np.nan, 0x7E00),
    ("NaN with payload in the kept bits", f32(0x7FC02000), 0x7E01),
    ("signalling NaN whose kept payload is 0 stays a NaN", f32(0x7F800001), 0x7C01),
    ("negative quiet NaN", f32(0xFFC00000), 0xFE00),
]


@pytest.mark.parametrize("desc,value,expected", NAMED, ids=[n[0] for n in NAMED])
def test_encode_named_cases(desc, value, expected):
    f = np.array([value], dtype=np.float32)
    got = int(encode_half(f)[0])
    assert got == expected, f"{desc}: {hex(got)} != {hex(expected)}"
    assert int(numpy_encode(f)[0]) == expected  # the literal agrees with numpy
    back = np.array([expected], dtype=np.uint16).view(np.float16).astype(np.float32)
    assert round_half_array(f).view(np.uint32)[0] == back.view(np.uint32)[0]
    if not np.isnan(f[0]):
        # the scalar functions called from Python (a float32 signalling NaN cannot be passed this
        # way: boxing goes through a Python float, which quiets it; inside kernels it is fine)
        assert int(float_to_half(f[0])) == expected
        assert np.float32(round_to_half(f[0])).view(np.uint32) == back.view(np.uint32)[0]


def test_round_trip_all_halves():
    h = ALL_HALF
    f = decode_half(h)
    back = encode_half(f)
    nan = np.isnan(f)
    assert np.array_equal(back[~nan], h[~nan])
    assert np.array_equal(back[nan], h[nan])  # NaN payloads survive the round trip too
    r = round_half_array(f)
    assert np.array_equal(r.view(np.uint32), f.view(np.uint32))


def test_encode_shapes():
    x = (np.arange(24, dtype=np.float32).reshape(4, 6) - 12.3) * np.float32(0.37)
    got = encode_half(x)
    assert got.shape == x.shape and got.dtype == np.uint16
    assert np.array_equal(got, numpy_encode(x))
    y = x.T
    assert np.array_equal(encode_half(y), numpy_encode(y))


@njit
def _decode_sum(h):
    s = np.float32(0.0)
    for i in range(h.size):
        s += half_to_float(h[i])
    return s


@njit
def _round_mul(f, out):
    for i in range(f.size):
        out[i] = round_to_half(f[i] * f[i])


def test_loops_vectorise():
    """A kernel-style loop calling the converters compiles to SIMD code (guards against a change
    that makes them scalar). Plain loops, compiled here (not cache-loaded, so the asm exists)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("vector-register check written for x86-64")
    h = np.arange(64, dtype=np.uint16)
    _decode_sum(h)
    f = np.ones(64, dtype=np.float32)
    _round_mul(f, np.empty_like(f))
    for fn in (_round_1d, _round_mul):
        asm = fn.inspect_asm(fn.signatures[0])
        assert "ymm" in asm or "zmm" in asm, fn
    # a float32 sum is a serial reduction (no reassociation allowed): only the decode vectorises
    asm = _decode_sum.inspect_asm(_decode_sum.signatures[0])
    assert "ymm" in asm or "zmm" in asm


# ---------------------------------------------------------------------------------------------
# float64 -> half (round64_to_half): one rounding, no double rounding through float32
# ---------------------------------------------------------------------------------------------
@njit
def _round64_1d(d, out):
    for i in range(d.size):
        out[i] = round64_to_half(d[i])


def _check_round64(d: np.ndarray) -> None:
    d = np.ascontiguousarray(d, dtype=np.float64)
    got = np.empty(d.size, dtype=np.float32)
    _round64_1d(d, got)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        ref = d.astype(np.float16).astype(np.float32)  # numpy rounds float64 -> float16 directly
    nan = np.isnan(d)
    assert np.array_equal(np.isnan(got), nan)
    bad = np.flatnonzero(~nan & (got.view(np.uint32) != ref.view(np.uint32)))
    assert bad.size == 0, [(repr(d[i]), got[i], ref[i]) for i in bad[:8]]


def test_round64_to_half_near_every_rounding_boundary():
    """For every pair of adjacent binary16 values (both signs, subnormals, the overflow edge), the
    midpoint itself and the float64 numbers 1..4 float64 ULPs either side of it: within half a
    float32 ULP of the midpoint, where rounding through float32 first (round_to_half(float32(d)))
    would land on the midpoint and then tie to even, which is wrong on one side."""
    h = decode_half(np.arange(0x7C00, dtype=np.uint16)).astype(np.float64)  # +0 .. max finite
    nxt = np.append(h[1:], 65536.0)  # the next value up (65536 stands for inf: gives 65520)
    mid = (h + nxt) / 2  # exact in float64
    steps = np.arange(-4, 5, dtype=np.float64)
    d = (mid[:, None] + steps[None, :] * np.spacing(mid)[:, None]).ravel()
    _check_round64(np.concatenate([d, -d, h, -h]))
    # the double rounding trap itself: just above a midpoint, within half a float32 ULP
    m = 1 + 2.0**-11  # midpoint between 1 and 1 + 2**-10
    above = m + 2.0**-40
    assert np.float32(above) == np.float32(m)  # float32 rounding lands on the midpoint...
    assert round_to_half(np.float32(above)) == 1.0  # ...which then ties to even: wrong
    assert round64_to_half(above) == 1 + 2.0**-10  # rounded once: right


def test_round64_to_half_random_and_specials():
    rng = np.random.default_rng(11)
    # random float64 bit patterns with exponents around the binary16 range, both signs
    e = rng.integers(1023 - 30, 1023 + 20, 1 << 20, dtype=np.uint64)
    m = rng.integers(0, 1 << 52, 1 << 20, dtype=np.uint64)
    s = rng.integers(0, 2, 1 << 20, dtype=np.uint64)
    _check_round64(((s << np.uint64(63)) | (e << np.uint64(52)) | m).view(np.float64))
    _check_round64(rng.integers(0, 2**64, 1 << 18, dtype=np.uint64).view(np.float64))
    _check_round64(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0,
                             1e300, -1e300, 5e-324, 2.0**-25, -(2.0**-25), 2.0**-25 + 5e-324,
                             3.4e38, 3.5e38, 1e-300]))


# ---------------------------------------------------------------------------------------------
# the F16C conversions: the bit operations' bits on every input, a signalling NaN's quieted
# ---------------------------------------------------------------------------------------------
needs_f16c = pytest.mark.skipif(not float16.F16C, reason="numba's target CPU has no F16C")


@njit
def _quiet16(h):
    """binary16 bits with a NaN's quiet bit set (anything else unchanged)."""
    return h | 0x200 if (h & 0x7C00) == 0x7C00 and (h & 0x3FF) != 0 else h


@njit
def _quiet32(u):
    """float32 bits with a NaN's quiet bit set (anything else unchanged)."""
    return u | 0x400000 if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF) != 0 else u


@njit
def _decode_mismatches():
    bad = 0
    for h in range(65536):
        bad += float_bits(half_to_float(_quiet16(h))) != float_bits(float16.half_to_float_f16c(h))
    return bad


@njit
def _encode_mismatches(first, stop):
    """(float_to_half, round_to_half) mismatches of the F16C versions, against the bit operations
    on the input with its NaN quieted, on float32 bit patterns ``first <= u < stop``."""
    one = np.float32(1.0)
    bad, bad_round = 0, 0
    for u in range(first, stop):
        f, q = bits_float(u, one), bits_float(_quiet32(u), one)
        bad += float_to_half(q) != float16.float_to_half_f16c(f)
        bad_round += float_bits(round_to_half(q)) != float_bits(float16.round_to_half_f16c(f))
    return bad, bad_round


@needs_f16c
def test_f16c_decode_equals_the_bit_operations_on_every_half_nans_quieted():
    assert _decode_mismatches() == 0


@needs_f16c
def test_f16c_quiets_signalling_nans():
    # the one difference from the bit operations (and numpy), which keep the quiet bit clear;
    # the kernels never see it (tests/kernels/test_api.py: signalling NaNs give the bits of
    # quiet ones). Bit patterns in and out: a float32 signalling NaN crossing into Python would
    # be quieted.
    assert _encode_bits(0x7F800001) == 0x7E00
    assert int(numpy_encode(np.array([0x7F800001], dtype=np.uint32).view(np.float32))[0]) == 0x7C01
    assert _encode_bits(0xFFC02000) == 0xFE01  # a quiet NaN: sign and top 10 payload bits kept
    assert _decode_bits(0x7C01) == 0x7FC02000
    assert _decode_bits(0x7E01) == 0x7FC02000


@njit
def _decode_bits(h):
    return int(float_bits(float16.half_to_float_f16c(h)))


@njit
def _encode_bits(u):
    return int(float16.float_to_half_f16c(bits_float(u, np.float32(1.0))))


@needs_f16c
@pytest.mark.slow
def test_f16c_encode_and_round_equal_the_bit_operations_on_every_float32_nans_quieted():
    # all 2**32 float32 patterns (about 9 s on the 2-core AVX2 development machine)
    assert _encode_mismatches(0, 1 << 32) == (0, 0)


def test_the_kernels_use_f16c_exactly_where_the_target_has_it():
    assert float16.widen_half is (float16.half_to_float_f16c if float16.F16C else half_to_float)
    assert float16.narrow_half is (float16.float_to_half_f16c if float16.F16C else float_to_half)
    assert float16.round_half is (float16.round_to_half_f16c if float16.F16C else round_to_half)


@njit
def _both_decodes(h):
    bits = half_to_float(_quiet16(np.int64(h)))
    return int(float_bits(bits)), int(float_bits(float16.half_to_float_f16c(h)))


@needs_f16c
@pytest.mark.parametrize("h", [np.int8(-1), np.int8(5), np.uint8(200), np.int16(-32768),
                               np.int32(-1), np.int64(0x17C01)])
def test_f16c_decode_reads_any_integer_as_the_bit_operations_do(h):
    # the low 16 bits of the value as a (sign-extended) integer: int8 -1 is 0xFFFF, a NaN;
    # 0x17C01 a signalling one, quieted
    bits, f16c_bits = _both_decodes(h)
    assert bits == f16c_bits
