"""softmax_bench.kernels.exp: accuracy of exp32 / exp64 / exp16, specials, and that it vectorises.

Judges
------
- float32, EXHAUSTIVE over all 2**32 bit patterns: every finite float32 from the underflow edge
  (-103.97) to the overflow edge (88.72), about 2.24e9 inputs, is compared with the float64 libm
  exp of the same (exact) input; every other pattern must give exactly the correctly rounded
  answer (+0, +inf, NaN). The float64 exp of glibc (numba's ``math.exp``; numpy's float64
  ``np.exp`` agrees with it, checked below on a sample) has an error below 1 float64 ULP, i.e.
  below 2**-29 float32 ULPs: as a judge of float32 ULP errors it is exact to ~2e-9 ULP, and it
  decides "correctly rounded" right except when exp(x) lies within 2**-53 (relative) of a float32
  rounding boundary, a handful of inputs at most among 2.24e9.
  The ULP error is ``|computed - exact| / ulp(exact)`` with the float32 ULP of the exact value
  (subnormal spacing below 2**-126), the definition of ``softmax_bench.formats.ulp_error``;
  the sweep computes it in numba for speed and is cross-checked against ``formats.ulp_error``.
- float64, 10**6 inputs spread over the whole range (uniform, log-uniform magnitudes, both
  edges, the subnormal-result range, near 0, near multiples of ln2/2) against mpmath's exp at
  120 bits; the error in ULPs is computed from the exact residual, not from a rounded reference.
- float16, EXHAUSTIVE over all 65,536 inputs against mpmath's exp rounded to binary16 with
  ``formats.round_rational`` (at 100 and 200 bits, which must agree: a Ziv-style check).

Measured (recorded here and in the kernels/exp.py docstring; the asserts below guard them):
float32 max 0.7644 ULP at x = -87.71553 (normal-range results: 0.6546 ULP; the larger figure is
in the subnormal range, where the final scaling rounds a second time), 99.890 % correctly
rounded; float64 max 0.7474 ULP on the sample (normal-range results 0.6363 ULP), 98.78 %
correctly rounded; float16 all 65,536 correctly rounded.
Run time: ~35 s for the float32 sweep (marked slow), ~8 s for the float64 sample, ~5 s the rest.
"""
from __future__ import annotations

import math
import platform
import re

import mpmath
import numpy as np
import pytest
from mpmath import libmp
from numba import njit

from softmax_bench.formats import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, round_rational, ulp, ulp_error
from softmax_bench.kernels.bfloat16 import decode_bf16
from softmax_bench.kernels.exp import (PARTS_LIMIT32, PARTS_LIMIT64, SCALEF, exp16, exp32, exp64, exp_parts32,
                                       exp_parts64, exp_shifted32, exp_shifted64, expbf16,
                                       scale_down32, scale_down64, times_pow2_mul,
                                       times_pow2_scalef)
from softmax_bench.kernels.float16 import bits_float, decode_half, float_bits

_F32 = np.float32(0.0)
_F64 = np.float64(0.0)


def last_inputs(fmt):
    """(largest x whose exp rounds to a finite value, smallest x whose exp rounds to non-zero),
    as numpy scalars of the format, from the exact thresholds ln((2 - 2**-t) 2**emax) and
    (emin - t) ln 2 computed by mpmath (formats gives them rounded to float64, which for float64
    itself can fall on either side). exp of a float is never exactly on a threshold."""
    t = fmt.dtype.type
    with mpmath.workprec(200):
        over = mpmath.log((2 - mpmath.mpf(2) ** -fmt.precision) * mpmath.mpf(2) ** fmt.emax)
        under = (fmt.emin - fmt.precision) * mpmath.log(2)
        x_over = t(float(over))
        while mpmath.mpf(float(x_over)) > over:
            x_over = np.nextafter(x_over, t(0))
        while mpmath.mpf(float(np.nextafter(x_over, t(np.inf)))) < over:
            x_over = np.nextafter(x_over, t(np.inf))
        x_under = t(float(under))
        while mpmath.mpf(float(x_under)) < under:
            x_under = np.nextafter(x_under, t(0))
        while mpmath.mpf(float(np.nextafter(x_under, t(-np.inf)))) > under:
            x_under = np.nextafter(x_under, t(-np.inf))
    return x_over, x_under


# float32: exp(x) is finite for x <= OVER32 (88.72283), non-zero for x >= UNDER32 (-103.97207)
OVER32, UNDER32 = last_inputs(FLOAT32)


# ---------------------------------------------------------------------------------------------
# numba helpers for the float32 sweep
# ---------------------------------------------------------------------------------------------
def _loop_of(f, fastmath=False):
    """An njit loop ``out[i] = f(x[i])``: LLVM inlines ``f`` into it and vectorises it, as in a
    kernel (``fastmath``: the caller's flags, not ``f``'s)."""
    @njit(fastmath=fastmath)
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


def _in_place_loop_of(f):
    """An njit loop ``e[i] = f(e[i])``, as the kernels' split and bundle loops."""
    @njit
    def loop(e):
        for i in range(e.size):
            e[i] = f(e[i])
    return loop


_exp32_loop, _exp64_loop, _exp16_loop, _expbf16_loop = map(_loop_of, (exp32, exp64, exp16, expbf16))
_exp_shifted32_loop, _exp_shifted64_loop = map(_loop_of, (exp_shifted32, exp_shifted64))
_exp32_loop_fast, _exp64_loop_fast, _exp_shifted32_loop_fast, _exp_shifted64_loop_fast = (
    _loop_of(f, fastmath=True) for f in (exp32, exp64, exp_shifted32, exp_shifted64))
_exp_shifted32_inplace, _exp_shifted64_inplace = map(_in_place_loop_of, (exp_shifted32, exp_shifted64))


@njit
def _ulp_err32(c, e):
    """|c - e| / ulp32(e) for a float32 c and a positive finite float64 e (see formats.ulp)."""
    ex = ((np.int64(float_bits(e)) >> 52) & 0x7FF) - 1023
    ex = ex if ex > -126 else -126
    inv_ulp = bits_float((1023 - (ex - 23)) << 52, _F64)  # 2**-(ex - 23), exact
    return abs(np.float64(c) - e) * inv_ulp


@njit
def _ulp_err32_array(c, e, out):
    for i in range(c.size):
        out[i] = _ulp_err32(c[i], e[i])


@njit
def _sweep32(start, c, e, stats):
    """Bit patterns start .. start + c.size - 1 (all with the same sign): c receives exp32 of each,
    e the float64 libm exp (or a stand-in for specials); accumulates into ``stats``:
    [0] max ULP error over inputs whose correctly rounded result is finite and non-zero,
    [1] its bit pattern, [2] number of such inputs, [3] how many of them are correctly rounded,
    [4] wrong answers among the specials (NaN, results that must be exactly +0 or +inf),
    [5] max ULP error among results in the normal float32 range."""
    n = c.size
    for j in range(n):
        c[j] = exp32(bits_float(start + j, _F32))
    for j in range(n):
        x = bits_float(start + j, _F32)
        # |x| > 128 is far outside the finite range: exp is 0 or inf there, no judge needed
        e[j] = math.exp(np.float64(x)) if abs(x) < 128.0 else (0.0 if x < 0 else math.inf)
    maxerr = stats[0]
    worst = stats[1]
    count = 0
    ncr = 0
    bad = 0
    maxnorm = stats[5]
    for j in range(n):
        x = bits_float(start + j, _F32)
        cj = c[j]
        ej = e[j]
        cr = np.float32(ej)  # correctly rounded (up to the judge's own 2**-53 uncertainty)
        if x != x:
            bad += cj == cj  # must be NaN
        elif cr == 0.0 or cr == math.inf:
            bad += cj != cr  # must be exactly +0 / +inf
        else:
            count += 1
            ncr += cj == cr
            err = _ulp_err32(cj, ej)
            if err > maxerr:
                maxerr = err
                worst = start + j
            if ej >= 2.0**-126 and err > maxnorm:
                maxnorm = err
    stats[0] = maxerr
    stats[1] = worst
    stats[2] += count
    stats[3] += ncr
    stats[4] += bad
    stats[5] = maxnorm


def sweep_exp32(starts_stops, chunk=1 << 23):
    stats = np.zeros(6)
    c = np.empty(chunk, dtype=np.float32)
    e = np.empty(chunk, dtype=np.float64)
    for lo, hi in starts_stops:
        for s in range(lo, hi, chunk):
            n = min(chunk, hi - s)
            _sweep32(s, c[:n], e[:n], stats)
    return stats


# ---------------------------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_exp32_exhaustive_all_float32():
    """All 2**32 inputs (chunks of 2**23: ~100 MB of buffers). About 30 s on one core."""
    stats = sweep_exp32([(0, 1 << 31), (1 << 31, 1 << 32)])
    maxerr, worst, count, ncr, bad, maxnorm = stats
    worst_x = np.uint32(int(worst)).view(np.float32)
    frac = ncr / count
    print(f"\nexp32 exhaustive: {int(count)} inputs with a finite non-zero result, "
          f"max {maxerr:.4f} ULP at x = {worst_x!r}, normal range max {maxnorm:.4f} ULP, "
          f"correctly rounded {100 * frac:.4f} %")
    # every finite float32 in [UNDER32, OVER32] (roughly) gives a finite non-zero result
    n_in_range = (int(OVER32.view(np.uint32)) + 1) + (int(UNDER32.view(np.uint32)) - (1 << 31) + 1)
    assert abs(count - n_in_range) < 64
    assert bad == 0
    assert maxerr <= 1.0  # the specification
    assert maxerr < 0.77 and maxnorm < 0.66  # the measured figures (regression guard)
    assert frac > 0.998


def test_exp32_edges_exhaustive_small():
    """Quick subset: all inputs within 2**16 float32 steps of the overflow and underflow
    thresholds and of 0, plus 2**20 around 1, through the same sweep."""
    o = int(OVER32.view(np.uint32))
    u = int(UNDER32.view(np.uint32))
    one = int(np.float32(1).view(np.uint32))
    m1 = int(np.float32(-1).view(np.uint32))
    ranges = [(o - 65536, o + 65536), (u - 65536, u + 65536), (0, 65536), (1 << 31, (1 << 31) + 65536),
              (one - (1 << 19), one + (1 << 19)), (m1 - (1 << 19), m1 + (1 << 19)),
              (0x7F800000 - 4096, 0x7F800000 + 4096), (0xFF800000 - 4096, 0xFF800000 + 4096)]
    maxerr, worst, count, ncr, bad, maxnorm = sweep_exp32(ranges, chunk=1 << 20)
    assert bad == 0
    assert maxerr < 0.77
    assert count > 0


def test_exp32_ulp_measure_matches_formats_and_numpy():
    """The sweep's numba ULP error equals softmax_bench.formats.ulp_error, and the libm judge
    (math.exp) agrees with numpy's float64 exp, on a sample spread over the finite range."""
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(float(UNDER32), float(OVER32), 1 << 18),
        rng.uniform(-103.97, -87.0, 1 << 16),  # subnormal results
        np.exp(rng.uniform(-60, 4.4, 1 << 16)) * rng.choice([-1, 1], 1 << 16),
    ]).astype(np.float32)
    x = x[(x > UNDER32 + np.float32(0.01)) & (x < OVER32 - np.float32(0.01))]
    c = np.empty_like(x)
    _exp32_loop(x, c)
    e_np = np.exp(x.astype(np.float64))

    @njit
    def libm(v, out):
        for i in range(v.size):
            out[i] = math.exp(np.float64(v[i]))

    e_libm = np.empty(x.size)
    libm(x, e_libm)
    assert np.all(np.abs(e_np - e_libm) <= ulp(e_np, "float64"))
    mine = np.empty(x.size)
    _ulp_err32_array(c, e_libm, mine)
    ref = ulp_error(c, e_libm, dtype="float32")
    assert np.allclose(mine, ref, rtol=0, atol=1e-12)
    assert ref.max() < 0.77


def test_exp32_specials_and_thresholds():
    f = np.float32
    assert exp32(f(0.0)) == 1.0 and exp32(f(-0.0)) == 1.0
    assert exp32(f(np.inf)) == math.inf
    assert exp32(f(-np.inf)) == 0.0 and not np.signbit(exp32(f(-np.inf)))
    assert math.isnan(exp32(f(np.nan)))
    assert isinstance(exp32(f(1.0)), float)  # a float32 boxed as a Python float
    # overflow: largest input with a finite result, and the next float32 up
    assert math.isfinite(exp32(OVER32))
    assert exp32(np.nextafter(OVER32, f(np.inf))) == math.inf
    assert exp32(f(1e30)) == math.inf and exp32(f(3.4e38)) == math.inf
    # underflow: the smallest input with a non-zero result gives the smallest subnormal
    assert exp32(UNDER32) == FLOAT32.smallest_subnormal
    assert exp32(np.nextafter(UNDER32, f(-np.inf))) == 0.0
    assert exp32(f(-1e30)) == 0.0
    # subnormal inputs, tiny inputs: exp(x) = 1 (correctly rounded)
    assert exp32(f(1e-45)) == 1.0 and exp32(f(-1e-45)) == 1.0
    assert exp32(f(2.0**-25)) == 1.0
    assert exp32(f(-(2.0**-25))) == 1.0  # 1 - 2**-25 is the tie between 1 - 2**-24 and 1: even
    # NaN payloads and signs: still NaN, inside a kernel loop too
    x = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF], dtype=np.uint32).view(np.float32)
    out = np.empty_like(x)
    _exp32_loop(x, out)
    assert np.isnan(out).all()


# ---------------------------------------------------------------------------------------------
# float64
# ---------------------------------------------------------------------------------------------
def _float64_sample(n_total=1_000_000, seed=12345):
    rng = np.random.default_rng(seed)
    over = FLOAT64.log_overflow_boundary  # 709.782712893384
    under = FLOAT64.exp_underflow  # -745.1332191019412
    n = n_total // 10
    ln2_2 = math.log(2) / 2
    k = rng.integers(int(under / ln2_2), int(over / ln2_2), 2 * n)
    near_k = k * ln2_2
    near_k = near_k + rng.integers(-8, 9, 2 * n) * np.spacing(np.abs(near_k) + 1e-300)
    parts = [
        rng.uniform(under, over, 3 * n),  # uniform over the whole range
        np.exp(rng.uniform(math.log(2.0**-60), math.log(745.0), 2 * n))
        * rng.choice([-1.0, 1.0], 2 * n),  # log-uniform magnitudes
        over - rng.uniform(0, 2, n // 2),  # near the overflow edge
        under + rng.uniform(0, 37, n // 2),  # subnormal results (x < -708.4) and the edge
        np.exp(rng.uniform(math.log(2.0**-1074), math.log(2.0**-20), n))
        * rng.choice([-1.0, 1.0], n),  # near 0
        near_k,  # near multiples of ln2/2: range-reduction boundaries
    ]
    x = np.concatenate(parts)
    # the last representable inputs before the thresholds, and steps around them
    steps = np.arange(1, 2001, dtype=np.float64)
    x = np.concatenate([x, np.nextafter(np.float64(over), 0) - steps * np.spacing(over),
                        np.nextafter(np.float64(under), 0) + steps * np.spacing(-under),
                        np.arange(-745, 710, dtype=np.float64)])
    x = x[(x < over) & (x > under)]
    x = np.concatenate([x, rng.uniform(under, over, max(0, n_total - x.size))])  # top up
    return x[:n_total]


def _exact_residual_ulps(x, c):
    """(c - exp(x)) / ulp64(exp(x)) for each pair, with exp(x) from mpmath at 120 bits (its
    error, 2**-120 relative, is ~2**-67 ULPs). The ULP is taken at the exact value (subnormal
    spacing 2**-1074 below 2**-1022), as in formats.ulp_error."""
    prec = 120
    out = np.empty(x.size)
    rnd = libmp.round_nearest
    for i, (xi, ci) in enumerate(zip(x.tolist(), c.tolist())):
        e = libmp.mpf_exp(libmp.from_float(xi), prec, rnd)  # (sign, man, exp, bc)
        q = max(e[2] + e[3] - 1, FLOAT64.emin) - (FLOAT64.precision - 1)  # ulp = 2**q
        d = libmp.mpf_sub(libmp.from_float(ci), e, prec, rnd)
        out[i] = libmp.to_float(libmp.mpf_shift(d, -q))
    return out


def test_exp64_one_million_points_against_mpmath():
    """10**6 inputs; mpmath (libmp.mpf_exp, 120 bits) as the judge. About 10-15 s."""
    x = _float64_sample()
    assert x.size == 1_000_000
    c = np.empty_like(x)
    _exp64_loop(x, c)
    err = np.abs(_exact_residual_ulps(x, c))
    normal = c >= FLOAT64.smallest_normal
    print(f"\nexp64 on {x.size} points: max {err.max():.4f} ULP at x = {x[err.argmax()]!r}, "
          f"normal-range results max {err[normal].max():.4f} ULP, "
          f"{100 * np.mean(err < 0.5):.3f} % correctly rounded")
    assert err.max() <= 1.0  # the specification
    # the measured figures (regression guard): subnormal results round twice (see exp.py)
    assert err.max() < 0.77 and err[normal].max() < 0.66


def test_exp64_specials_and_thresholds():
    assert exp64(0.0) == 1.0 and exp64(-0.0) == 1.0
    assert exp64(math.inf) == math.inf and exp64(-math.inf) == 0.0
    assert math.isnan(exp64(math.nan))
    over, under = last_inputs(FLOAT64)
    assert math.isfinite(exp64(over))
    assert exp64(np.nextafter(over, math.inf)) == math.inf
    assert exp64(1e300) == math.inf
    assert exp64(under) == FLOAT64.smallest_subnormal
    assert exp64(np.nextafter(under, -math.inf)) == 0.0
    assert exp64(-1e300) == 0.0
    assert exp64(5e-324) == 1.0 and exp64(1e-17) == 1.0
    assert exp64(1.0) in (math.e, np.nextafter(math.e, 3.0))  # within 1 ULP


# ---------------------------------------------------------------------------------------------
# float16
# ---------------------------------------------------------------------------------------------
def _cr_exp(x: float, prec: int, fmt) -> float:
    with mpmath.workprec(prec):
        e = mpmath.exp(mpmath.mpf(x))
    man, ex = int(e.man), int(e.exp)
    return round_rational(man << ex, 1, fmt) if ex >= 0 else round_rational(man, 1 << -ex, fmt)


def _exhaustive_reference(x: np.ndarray, fmt) -> np.ndarray:
    """mpmath's exp of every input, rounded once to ``fmt`` at 100 and 200 bits, which must agree
    (the rounding is decided, Ziv-style). |x| > 200 overflows or underflows both 16-bit formats."""
    ref = np.empty(x.size)
    for i, v in enumerate(x.tolist()):
        if math.isnan(v):
            ref[i] = math.nan
        elif math.isinf(v) or abs(v) > 200:
            ref[i] = math.inf if v > 0 else 0.0
        else:
            a, b = _cr_exp(v, 100, fmt), _cr_exp(v, 200, fmt)
            assert a == b, v
            ref[i] = a
    return ref


def _assert_correctly_rounded(x, got, fmt):
    """Every one of ``got`` (exp of ``x``) equals the correctly rounded value; NaN exactly where
    the input is NaN. Returns the NaN mask."""
    ref = _exhaustive_reference(x, fmt)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    wrong = np.flatnonzero(~nan & (got != ref))
    assert wrong.size == 0, [(float(x[i]), float(got[i]), ref[i]) for i in wrong[:10]]
    return nan


def test_exp16_exhaustive_correctly_rounded():
    """All 65,536 binary16 inputs against mpmath's exp rounded once to binary16."""
    x = decode_half(np.arange(65536, dtype=np.uint16))
    got = np.empty_like(x)
    _exp16_loop(x, got)
    nan = _assert_correctly_rounded(x, got, FLOAT16)
    # every result is a binary16 value (so float_to_half stores it exactly)
    assert np.array_equal(got[~nan].astype(np.float16).astype(np.float32), got[~nan])
    # the thresholds: the largest half below ln(65520) = 11.0898 and the next one up; the
    # smallest half above ln(2**-25) = -17.3287 and the next one down
    assert exp16(np.float32(11.0859375)) <= FLOAT16.max_finite
    assert exp16(np.float32(11.09375)) == math.inf
    assert exp16(np.float32(-17.328125)) == FLOAT16.smallest_subnormal
    assert exp16(np.float32(-17.34375)) == 0.0


def test_exp16_closest_approach_to_a_midpoint():
    """Why exp16 goes through float64, and why that is enough. Over all finite binary16 inputs
    whose result is neither 0 nor inf (38,370 of them), exp(x) comes as close as 2**-26.43
    (relative) to a binary16 rounding boundary (a midpoint between two binary16 values), at
    x = 0.0072975 (0x1f79). exp32's error (up to 0.65 float32 ULP, ~2**-23.6 relative) is larger
    than that, and indeed round_to_half(exp32(x)) misrounds two inputs; exp64's (< 1 float64 ULP,
    2**-52) is far smaller, so exp64 rounded once to binary16 is right for every input."""
    x = decode_half(np.arange(65536, dtype=np.uint16))
    fin = np.isfinite(x) & (x > -17.34) & (x < 11.09)
    worst = math.inf
    with mpmath.workprec(100):
        for v in x[fin].tolist():
            e = mpmath.exp(mpmath.mpf(v))
            man, ex = int(e.man), int(e.exp)
            r = (round_rational(man << ex, 1, FLOAT16) if ex >= 0
                 else round_rational(man, 1 << -ex, FLOAT16))
            if r == 0 or math.isinf(r):
                continue
            h = np.float16(r)
            for nb in (np.nextafter(h, np.float16(np.inf)), np.nextafter(h, np.float16(0))):
                if np.isfinite(nb):
                    worst = min(worst, float(abs(e - (r + float(nb)) / 2) / e))
    assert 2.0**-27 < worst < 2.0**-26  # measured 2**-26.43
    assert worst > 2.0**-45  # > 2**7 times exp64's error bound: float64 decides every rounding


def test_exp16_specials():
    assert exp16(np.float32(0.0)) == 1.0
    assert exp16(np.float32(np.inf)) == math.inf
    assert exp16(np.float32(-np.inf)) == 0.0
    assert math.isnan(exp16(np.float32(np.nan)))
    assert exp16(np.float32(-20.0)) == 0.0
    assert exp16(np.float32(12.0)) == math.inf


# ---------------------------------------------------------------------------------------------
# compilation: vectorised, and immune to the caller's fastmath
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 asm check")
@pytest.mark.parametrize("loop,dtype", [(_exp32_loop, np.float32), (_exp64_loop, np.float64),
                                        (_exp16_loop, np.float32)])
def test_loop_vectorises(loop, dtype):
    """A plain loop over exp32/exp64/exp16 compiles to packed (ymm/zmm) FMAs and calls no libm."""
    x = np.linspace(-5, 5, 64).astype(dtype)
    loop(x, np.empty_like(x))
    sig = loop.signatures[0]
    asm = loop.inspect_asm(sig)
    assert re.search(r"vfmadd\w*\s+[^\n]*%[yz]mm", asm), "no packed FMA: the loop is not vectorised"
    llvm = loop.inspect_llvm(sig)
    assert not re.search(r"call [^\n]*@(exp|expf|ldexp|ldexpf)\(", llvm)
    if SCALEF:  # the scaling by 2**k: one vscalef per vector
        assert re.search(r"vscalefp[sd]\s+[^\n]*%[yz]mm", asm)


@pytest.mark.parametrize("dtype,strict,fast,shifted", [
    (np.float32, _exp32_loop, _exp32_loop_fast, False),
    (np.float64, _exp64_loop, _exp64_loop_fast, False),
    (np.float32, _exp32_loop, _exp_shifted32_loop_fast, True),  # on its domain: x <= 0, NaN
    (np.float64, _exp64_loop, _exp_shifted64_loop_fast, True),
])
def test_callers_fastmath_does_not_change_results(dtype, strict, fast, shifted):
    """A caller compiled with fastmath=True (which includes reassoc, nnan, ninf) gets bit-identical
    results, NaN and inf included: the exp functions keep their own (strict) flags when LLVM
    inlines them."""
    rng = np.random.default_rng(3)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 88.7, 88.8, -103.9, -104.5, 1e-30, -745.0, 709.7]
    x = np.concatenate([rng.uniform(-120, 100, 4096), specials]).astype(dtype)
    if shifted:
        x = x[~(x > 0)]
    a = np.empty_like(x)
    b = np.empty_like(x)
    strict(x, a)
    fast(x, b)
    assert np.array_equal(a, b, equal_nan=True)
    assert np.isnan(b[x != x]).all()
    assert (b[x == -np.inf] == 0.0).all() and (b[x == 0] == 1.0).all()
    assert shifted or (b[x == np.inf] == np.inf).all()


def test_expbf16_exhaustive_correctly_rounded():
    """All 65,536 bfloat16 inputs against mpmath's exp rounded once to bfloat16: the 0.5 ULP that
    softmax_bench.bounds uses for bfloat16 arithmetic."""
    x = decode_bf16(np.arange(65536, dtype=np.uint16).view(np.int16))
    got = np.empty_like(x)
    _expbf16_loop(x, got)
    _assert_correctly_rounded(x, got, BFLOAT16)


# ---------------------------------------------------------------------------------------------
# exp with an extended exponent (the two-pass softmax): exp(x) = y * 2**k
# ---------------------------------------------------------------------------------------------
_LN2_HI = float.fromhex("0x1.62e42fefa39efp-1")  # ln 2 = _LN2_HI + _LN2_LO to ~2**-106
_LN2_LO = float.fromhex("0x1.abc9e3b39803fp-56")


@njit
def _sweep_parts32(lo, hi, stats):
    """Every float32 bit pattern in [lo, hi) (one sign): y of exp_parts32 against exp(x - k ln 2)
    in float64 (the reduced argument to ~2**-100 by the two-term ln 2; exp's error below
    2**-29 float32 ULPs); stats[0] max ULP error of y (ULP of the exact value, in [0.7, 1.42]),
    stats[1] the worst bit pattern, stats[2] the count, stats[3] max |r|."""
    for b in range(lo, hi):
        x = bits_float(b, _F32)
        y, k = exp_parts32(x)
        kd = np.float64(k)
        r = (np.float64(x) - kd * _LN2_HI) - kd * _LN2_LO
        e = math.exp(r)
        err = _ulp_err32(y, e)
        if err > stats[0]:
            stats[0] = err
            stats[1] = b
        stats[2] += 1
        stats[3] = max(stats[3], abs(r))


@pytest.mark.slow
def test_exp_parts32_exhaustive_up_to_its_limit():
    """Every float32 with |x| <= PARTS_LIMIT32 (about 2.2e9 inputs, ~40 s): y within exp32's
    EXP_ULPS (0.77) of exp(r) and |r| inside the polynomial's interval."""
    from softmax_bench.bounds.common import EXP_ULPS

    top = int(np.float32(PARTS_LIMIT32).view(np.uint32))
    stats = np.zeros(4)
    for lo, hi in [(0, top + 1), (1 << 31, (1 << 31) + top + 1)]:
        for s in range(lo, hi, 1 << 24):
            _sweep_parts32(s, min(s + (1 << 24), hi), stats)
    print(f"\nexp_parts32: {int(stats[2])} inputs, max {stats[0]:.4f} ULP, max |r| {stats[3]:.6f}")
    assert stats[2] == 2 * (top + 1)
    assert stats[0] < EXP_ULPS["float32"] and stats[3] <= 0.3467


def test_exp_parts32_sample_and_edges():
    """A quick subset of the sweep above: 2**20 patterns around 1, 1000, the limit, and 2**16
    spread over the whole range, both signs."""
    from softmax_bench.bounds.common import EXP_ULPS

    top = int(np.float32(PARTS_LIMIT32).view(np.uint32))
    stats = np.zeros(4)
    for b in (int(np.float32(1).view(np.uint32)), int(np.float32(700).view(np.uint32)), top - (1 << 20)):
        for sign in (0, 1 << 31):
            _sweep_parts32(sign + b - (1 << 19), sign + min(b + (1 << 19), top + 1), stats)
    rng = np.random.default_rng(1)
    for b in rng.integers(0, top, 64):
        _sweep_parts32(int(b), int(b) + 1024, stats)
        _sweep_parts32((1 << 31) + int(b), (1 << 31) + int(b) + 1024, stats)
    assert stats[0] < EXP_ULPS["float32"] and stats[3] <= 0.3467


def test_exp_parts64_against_mpmath():
    """10**4 float64 inputs up to PARTS_LIMIT64 (log-uniform magnitudes), y*2**k against mpmath's
    exp at 200 bits: within exp64's EXP_ULPS (1.0) of its exact value."""
    from softmax_bench.bounds.common import EXP_ULPS

    rng = np.random.default_rng(2)
    mags = np.exp(rng.uniform(np.log(1e-3), np.log(PARTS_LIMIT64), 10_000))
    xs = np.concatenate([mags * rng.choice([-1, 1], mags.size), [PARTS_LIMIT64, -PARTS_LIMIT64, 0.0]])
    worst = 0.0
    with mpmath.workprec(200):
        for x in xs:
            y, k = exp_parts64(x)
            exact = mpmath.exp(mpmath.mpf(x) - int(k) * mpmath.log(2))  # = exp(x) / 2**k
            ulp_y = 2.0 ** (math.frexp(float(exact))[1] - 53)
            worst = max(worst, float(abs(mpmath.mpf(y) - exact)) / ulp_y)
    assert worst < EXP_ULPS["float64"]


@njit
def _times_pow2_both(y, k, I, a, b):
    for i in range(y.size):
        a[i] = times_pow2_mul(y[i], k[i], I)
        b[i] = times_pow2_scalef(y[i], k[i], I)


@pytest.mark.skipif(not SCALEF, reason="llvm.ldexp scales only on AVX-512 targets")
@pytest.mark.parametrize("dtype, I, kmin, kmax", [(np.float32, (23, 127), -250, 128),
                                                  (np.float64, (52, 1023), -2044, 1024)])
def test_scalef_rounds_as_the_two_multiplications(dtype, I, kmin, kmax):
    """Every k exp and the two-pass scale pass (k >> 1 and k - (k >> 1) normal), y across the
    domain both take (0 or y >= 1/2): exp's [0.7, 1.42], the two-pass terms' [1/2, 2) and its
    running sums (up to the row length), both ends and the binade edges included: the same bits,
    and the correctly rounded y 2**k."""
    rng = np.random.default_rng(5)
    y = np.concatenate([rng.uniform(0.7, 1.42, 2000), rng.uniform(0.5, 2, 2000),
                        np.exp2(rng.uniform(1, 24, 2000)),
                        [0.0, 0.5, 1.0, np.nextafter(1.0, 0), np.nextafter(2.0, 0), 0.70710677,
                         1.4142135, 2.0 ** 24]]).astype(dtype)
    for k in range(kmin, kmax + 1):
        ks = np.full(y.size, k, np.int32)
        a, b = np.empty_like(y), np.empty_like(y)
        _times_pow2_both(y, ks, I, a, b)
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), k
        with np.errstate(over="ignore"):
            want = np.ldexp(y.astype(np.float64), k).astype(dtype) if dtype == np.float32 else np.ldexp(y, k)
        assert np.array_equal(a, want), k


def test_scale_down_exact_then_one_rounding():
    for y in (np.float32(1.0), np.float32(1.4142135), np.float32(0.70710677)):
        for j in range(0, -200, -1):
            want = np.float32(np.ldexp(np.float64(y), j))  # exact in float64, rounded once
            assert scale_down32(y, np.float32(j)) == want
        assert scale_down32(y, np.float32(-np.inf)) == 0.0
    for y in (1.0, 1.4142135623730951, 0.7071067811865476):
        for j in range(0, -1200, -7):
            assert scale_down64(y, float(j)) == np.ldexp(y, j)
        assert scale_down64(y, -np.inf) == 0.0


# ---------------------------------------------------------------------------------------------
# exp_shifted32 / exp_shifted64: exp32 / exp64 on their domain (d <= 0 or a NaN)
# ---------------------------------------------------------------------------------------------
@njit
def _shifted32_mismatches(lo, hi):
    """How many bit patterns in [lo, hi) give other bits from exp_shifted32 than from exp32."""
    bad = 0
    for b in range(lo, hi):
        x = bits_float(np.int32(np.uint32(b)), _F32)
        bad += float_bits(exp_shifted32(x)) != float_bits(exp32(x))
    return bad


def test_exp_shifted32_equals_exp32_on_every_input_of_its_domain():
    """All 2**31 float32 of sign 1 (-0 to -inf, and the negative NaNs), +0, and every positive
    NaN, signalling ones included (quieted by both): the same bits as exp32. About 5 s."""
    assert _shifted32_mismatches(1 << 31, 1 << 32) == 0
    assert _shifted32_mismatches(0, 1) == 0
    assert _shifted32_mismatches(0x7F800001, 0x80000000) == 0


def test_exp_shifted64_equals_exp64_on_its_domain():
    """10**6 float64 d <= 0 (uniform to the underflow edge and beyond, log-uniform magnitudes,
    the subnormal-result range, both edges of every clamp) and NaNs: exp64's bits."""
    rng = np.random.default_rng(11)
    tiny = -(10.0 ** rng.uniform(-320, 3, 300_000))
    edges = np.array([0.0, -0.0, -np.inf, -745.0, -746.0, -745.1332191019412, -708.4, -709.8,
                      -1e-300, -5e-324, -np.finfo(np.float64).max, np.nan, -np.nan])
    payload = rng.integers(1, 1 << 51, 1000, dtype=np.uint64)
    nans = np.concatenate([np.uint64(0x7FF8000000000000) | payload,  # quiet
                           np.uint64(0x7FF0000000000000) | payload]).view(np.float64)  # signalling
    x = np.concatenate([rng.uniform(-760, 0, 400_000), rng.uniform(-745.2, -707, 300_000), tiny,
                        edges, nans, -nans])
    a = np.empty_like(x)
    b = np.empty_like(x)
    _exp64_loop(x, a)
    _exp_shifted64_loop(x, b)
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 asm check")
@pytest.mark.parametrize("loop,full,dtype", [(_exp_shifted32_loop, _exp32_loop, np.float32),
                                             (_exp_shifted64_loop, _exp64_loop, np.float64)])
def test_exp_shifted_loop_vectorises_with_fewer_operations(loop, full, dtype):
    """The shifted exp vectorises as exp does, with fewer vector instructions (what it is for: two
    fewer per vector)."""
    x = np.linspace(-5, 0, 64).astype(dtype)
    loop(x, np.empty_like(x))
    full(x, np.empty_like(x))
    asm = loop.inspect_asm(loop.signatures[0])
    assert re.search(r"vfmadd\w*\s+[^\n]*%[yz]mm", asm), "no packed FMA: the loop is not vectorised"

    def vector_ops(f):
        return len(re.findall(r"^\s*v\w+\s+[^\n]*%[yz]mm", f.inspect_asm(f.signatures[0]), re.M))

    assert vector_ops(loop) < vector_ops(full)



@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 asm check")
@pytest.mark.parametrize("loop,dtype", [(_exp_shifted32_inplace, np.float32),
                                        (_exp_shifted64_inplace, np.float64)])
def test_exp_shifted_inplace_loop_stores_every_element(loop, dtype):
    """``e[i] = exp_shifted(e[i])`` (the kernels' split and bundle loops) stores unconditionally:
    were the NaN returned as ``d`` itself, the store would be needed only where ``y > d``, and
    LLVM makes such a loop a masked store (with AVX2 a microcoded ``vmaskmovps``: 1.4x the time
    of exp32's loop)."""
    loop(np.linspace(-5, 0, 64).astype(dtype))
    asm = loop.inspect_asm(loop.signatures[0])
    assert re.search(r"vfmadd\w*\s+[^\n]*%[yz]mm", asm), "no packed FMA: the loop is not vectorised"
    assert not re.search(r"vmaskmov|^\s*v\w*mov\w*\s+%[xyz]mm\d+, [^%\n]*\([^\n]*\{%k", asm, re.M)
