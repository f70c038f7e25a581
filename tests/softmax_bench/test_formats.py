"""softmax_bench.formats: the format facts against numpy.finfo and mpmath, rounding against numpy's
own (correctly rounded) conversions, ULP error on every kind of special value."""
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softmax_bench.formats import (
    FLOAT16,
    FLOAT32,
    FLOAT64,
    FORMATS,
    format_of,
    round_fraction,
    round_rational,
    ulp,
    ulp_error,
)

ALL = [FLOAT16, FLOAT32, FLOAT64]


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_constants_match_finfo(fmt):
    fi = np.finfo(fmt.dtype)
    assert fmt.precision == fi.nmant + 1
    assert fmt.unit_roundoff == float(fi.epsneg)  # 2**-t
    assert fmt.eps == float(fi.eps)
    assert fmt.max_finite == float(fi.max)
    assert fmt.smallest_normal == float(fi.smallest_normal)
    assert fmt.smallest_subnormal == float(fi.smallest_subnormal)
    assert fmt.emin == fi.minexp and fmt.emax == fi.maxexp - 1


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_exp_thresholds_against_mpmath(fmt):
    with mpmath.workprec(200):
        assert fmt.exp_overflow == pytest.approx(float(mpmath.log(mpmath.mpf(fmt.max_finite))), rel=1e-15)
        half_tiny = mpmath.mpf(fmt.smallest_subnormal) / 2
        assert fmt.exp_underflow == pytest.approx(float(mpmath.log(half_tiny)), rel=1e-15)
        boundary = mpmath.ldexp(2 - mpmath.ldexp(1, -fmt.precision), fmt.emax)
        assert fmt.log_overflow_boundary == pytest.approx(float(mpmath.log(boundary)), rel=1e-15)
    # The seed notes' table.
    expected = {"float16": (11.0898, -17.33), "float32": (88.7228, -103.97), "float64": (709.7827, -745.13)}
    over, under = expected[fmt.name]
    assert fmt.exp_overflow == pytest.approx(over, abs=1e-4)
    assert fmt.exp_underflow == pytest.approx(under, abs=1e-2)


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT32], ids=lambda f: f.name)
def test_exp_thresholds_decide_numpy_overflow(fmt):
    """Just above/below the thresholds, float64 exp cast to the format overflows/underflows."""
    x_over = np.nextafter(np.float64(fmt.log_overflow_boundary), np.inf)
    x_fin = np.nextafter(np.float64(fmt.log_overflow_boundary), -np.inf)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(x_over).astype(fmt.dtype))
        assert np.isfinite(np.exp(x_fin).astype(fmt.dtype))
    assert np.exp(np.nextafter(fmt.exp_underflow, -np.inf)).astype(fmt.dtype) == 0
    assert np.exp(np.nextafter(fmt.exp_underflow, np.inf)).astype(fmt.dtype) > 0


def test_format_of_accepts_and_rejects():
    assert format_of(np.float32) is FLOAT32
    assert format_of("float16") is FLOAT16
    assert format_of(np.zeros(2)) is FLOAT64
    assert format_of(FLOAT64) is FLOAT64
    assert set(FORMATS) == {"float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
    for bad in (np.int32, np.complex128, "bool", object, np.longdouble):
        with pytest.raises(TypeError):
            format_of(bad)


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_round_rational_matches_numpy_casts(v):
    """numpy's float64 -> float32/float16 casts are correctly rounded (RNE, subnormals, overflow)."""
    f = Fraction(v)
    for fmt in (FLOAT16, FLOAT32):
        with np.errstate(over="ignore"):
            expected = float(np.float64(v).astype(fmt.dtype))
        got = round_fraction(f, fmt) if v != 0 else 0.0
        assert got == expected or (got == 0 and expected == 0)
        if got == 0 and v != 0:
            assert math.copysign(1, got) == math.copysign(1, v)  # underflow keeps the sign
    assert round_fraction(f, FLOAT64) == v


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=1, max_value=2**200), st.integers(min_value=1, max_value=2**200))
def test_round_rational_is_nearest(num, den):
    """Independent check through exact rationals: no neighbouring float is closer; ties go even."""
    q = Fraction(num, den)
    for fmt in ALL:
        r = round_rational(num, den, fmt)
        if math.isinf(r):
            assert q >= Fraction(fmt.overflow_boundary if fmt is not FLOAT64 else 0) or fmt is FLOAT64
            continue
        rv = np.array(r, dtype=fmt.dtype)
        up = np.nextafter(rv, np.array(np.inf, fmt.dtype))
        down = np.nextafter(rv, np.array(-np.inf, fmt.dtype))
        d = abs(q - Fraction(r))
        for nb in (up, down):
            if np.isfinite(nb):
                dn = abs(q - Fraction(float(nb)))
                assert d <= dn
                if d == dn:  # a tie: r has an even significand
                    assert int(rv.view(f"u{fmt.dtype.itemsize}")) % 2 == 0


def test_round_rational_boundaries():
    s16 = FLOAT16.smallest_subnormal
    assert round_rational(1, 2**25, FLOAT16) == 0.0  # exactly half the smallest subnormal: tie -> 0
    assert round_rational(3, 2**26, FLOAT16) == s16  # 0.75 of it -> up
    assert round_rational(-1, 2**25, FLOAT16) == 0.0 and math.copysign(1, round_rational(-1, 2**25, FLOAT16)) < 0
    assert round_rational(65519, 1, FLOAT16) == 65504.0
    assert round_rational(65520, 1, FLOAT16) == math.inf  # the tie at max + ulp/2 goes to inf
    assert round_rational(-(2**1024), 1, FLOAT64) == -math.inf
    assert round_rational(2**1024 - 2**970, 1, FLOAT64) == math.inf  # max + ulp/2: the tie -> inf
    assert round_rational(2**2048 + 1, 2**1100, FLOAT64) == math.ldexp(1, 948)
    assert round_rational(2**1024 - 2**970 - 1, 1, FLOAT64) == FLOAT64.max_finite  # just under it
    assert round_rational(2**2048 + 1, 2**1000, FLOAT64) == math.inf  # 2**1048
    assert round_rational(1, 3, FLOAT64) == 1 / 3
    assert round_rational(2049, 1, FLOAT16) == 2048.0  # tie -> even
    assert round_rational(2051, 1, FLOAT16) == 2052.0  # tie -> even (up)
    with pytest.raises(ZeroDivisionError):
        round_rational(1, 0, FLOAT32)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_ulp_matches_spacing(fmt):
    rng = np.random.default_rng(1)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(2000) * np.exp(rng.uniform(-20, 20, 2000))).astype(fmt.dtype)
    x = x[np.isfinite(x)]
    x = np.concatenate([x, np.array([0, fmt.smallest_subnormal, fmt.smallest_normal, fmt.max_finite, 1], dtype=fmt.dtype)])
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.abs(np.spacing(np.abs(x))).astype(np.float64)
    # np.spacing(max) is inf (the step to inf); the format's spacing just below inf is finite.
    finite_step = np.isfinite(expected)
    np.testing.assert_array_equal(ulp(x)[finite_step], expected[finite_step])
    assert ulp(np.array(fmt.max_finite, dtype=fmt.dtype)) == math.ldexp(1, fmt.emax - fmt.precision + 1)
    assert ulp(np.array(0.0, dtype=fmt.dtype)) == fmt.smallest_subnormal
    assert np.isnan(ulp(np.array(np.nan, dtype=fmt.dtype)))


def test_ulp_error_definitions():
    f32 = np.float32
    one = f32(1)
    assert ulp_error(np.nextafter(one, f32(2)), one) == 1
    assert ulp_error(np.nextafter(one, f32(0)), one) == 0.5  # the step below 1 is half of ulp(1)
    assert ulp_error(f32(1 + 2**-22), one) == 2
    nan, inf = f32(np.nan), f32(np.inf)
    assert ulp_error(nan, nan) == 0
    assert ulp_error(nan, one) == np.inf and ulp_error(one, nan) == np.inf
    assert ulp_error(inf, inf) == 0 and ulp_error(-inf, -inf) == 0
    assert ulp_error(inf, -inf) == np.inf and ulp_error(inf, one) == np.inf and ulp_error(one, inf) == np.inf
    assert ulp_error(f32(-0.0), f32(0.0)) == 0
    tiny = f32(FLOAT32.smallest_subnormal)
    assert ulp_error(tiny * 3, f32(0)) == 3  # spurious non-zero in subnormal steps
    assert ulp_error(f32(0), tiny * 5) == 5
    # A float64 exact value: the unit is the format of the computed value.
    assert ulp_error(f32(1), np.float64(1 + 2**-24)) == 0.5
    assert ulp_error(np.float16(1), np.float64(1), dtype="float32") == 0
    v = ulp_error(np.array([1, 2], dtype=np.float16), np.array([1, 2.001953125], dtype=np.float16))
    assert v.tolist() == [0, 1]


# --- bfloat16 and float8 (ml_dtypes) ----------------------------------------------------------
import ml_dtypes  # noqa: E402

from softmax_bench.formats import is_format  # noqa: E402

NEW = ["bfloat16", "float8_e4m3fn", "float8_e5m2"]


@pytest.mark.parametrize("name", NEW)
def test_new_format_facts_match_ml_dtypes(name):
    fmt = FORMATS[name]
    info = ml_dtypes.finfo(fmt.dtype)
    assert (fmt.max_finite, fmt.smallest_normal, fmt.smallest_subnormal, fmt.eps) == (
        float(info.max), float(info.smallest_normal), float(info.smallest_subnormal), float(info.eps))
    assert fmt.has_inf == bool(np.isinf(np.array(np.inf, np.float32).astype(fmt.dtype)))
    assert is_format(fmt.dtype) and is_format(name) and fmt.dtype.name == name


@pytest.mark.parametrize("name", NEW)
def test_every_value_rounds_to_itself(name):
    fmt = FORMATS[name]
    v = fmt.all_values().astype(np.float64)
    v = v[np.isfinite(v)]
    assert [round_fraction(Fraction(t), fmt) for t in v] == list(v)


@pytest.mark.parametrize("name", NEW)
def test_rounding_matches_ml_dtypes_from_float32_at_every_tie(name):
    """ml_dtypes rounds float32 once (round-to-nearest-even): compare at every midpoint between
    neighbours, one float32 step either side of it, and at the overflow tie."""
    fmt = FORMATS[name]
    v = np.unique(np.abs(fmt.all_values().astype(np.float64)))
    v = v[np.isfinite(v)]
    mids = np.concatenate([(v[:-1] + v[1:]) / 2, [fmt.overflow_boundary]]).astype(np.float32)
    probes = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf)),
                             np.random.default_rng(0).standard_normal(3000).astype(np.float32) * 100])
    probes = np.concatenate([probes, -probes])
    want = probes.astype(fmt.dtype).astype(np.float64)
    got = np.array([round_fraction(Fraction(float(t)), fmt) for t in probes])
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all(), (probes[~same][:5], got[~same][:5], want[~same][:5])


def test_e4m3fn_overflow_is_nan_and_its_tie_rounds_down():
    e4 = FORMATS["float8_e4m3fn"]
    assert e4.max_finite == 448 and e4.overflow_boundary == 464
    assert round_fraction(464, e4) == 448 and np.isnan(round_fraction(Fraction(4641, 10), e4))
    assert round_fraction(61440, FORMATS["float8_e5m2"]) == np.inf  # IEEE-like: the tie goes to inf


def test_ml_dtypes_rounds_float64_twice_we_round_once():
    """ml_dtypes casts float64 -> bfloat16 through float32: a float64 just past a bfloat16 tie
    lands on the tie in float32 and then goes to even. round_rational rounds the exact value."""
    bf = FORMATS["bfloat16"]
    tie = 1.0 + 2.0**-8  # midway between 1 and 1 + 2**-7
    just_above = np.nextafter(tie, 2.0)
    assert float(np.array(just_above).astype(bf.dtype)) == 1.0  # twice rounded: wrong
    assert round_fraction(Fraction(float(just_above)), bf) == 1.0 + 2.0**-7  # once: right


def test_exact_ulp_error_definitions():
    """Fractional errors against an exact double-double: the correctly rounded value is below
    0.5, its neighbours in [0.5, 1) when the exact value lies between, the unit is the binade of
    the exact value (smaller just below a power of two), the smallest subnormal at 0, and
    non-finite results count 0 only where the correctly rounded reference is the same."""
    from softmax_bench.formats import exact_ulp_error

    f32 = np.float32
    third = (1 / 3, 1 / 3 - float(np.float64(1 / 3)))  # not exact, fine for the arithmetic
    cr = f32(1 / 3)
    other = np.nextafter(cr, f32(0) if float(cr) > 1 / 3 else f32(1))  # the other side of 1/3
    beyond = np.nextafter(cr, f32(1) if float(cr) > 1 / 3 else f32(0))
    err = exact_ulp_error(np.array([cr, other, beyond], f32), *third, np.array([cr] * 3, f32))
    assert err[0] < 0.5 <= err[1] < 1.0 <= err[2] < 2.0
    # just below 1: unit 2**-24, not 2**-23
    below_one = exact_ulp_error(np.array([1.0, 1.0 - 2.0**-24], f32), 1.0, -(2.0**-60), np.ones(2, f32))
    assert below_one[0] == pytest.approx(2.0**-36)
    assert below_one[1] == pytest.approx(1.0 - 2.0**-36)
    # ... however small the low part (0.5 * 2**-1074 underflows: the signs tell)
    below_half = exact_ulp_error(np.array([0.5 + 2.0**-11], np.float16), 0.5, -(2.0**-1074),
                                 np.array([0.5], np.float16))
    assert below_half[0] == 2.0  # the unit of [0.25, 0.5): 2**-12
    # at 0: in smallest subnormals
    tiny = float(np.finfo(f32).smallest_subnormal)
    assert exact_ulp_error(np.array([tiny], f32), 0.0, 0.0, np.zeros(1, f32))[0] == 1.0
    # non-finite: equal to the reference -> 0; a number where it is NaN, or inf where it is not -> inf
    got = exact_ulp_error(np.array([np.nan, 1.0, np.inf], f32), np.array([np.nan, np.nan, 1.0]),
                          np.zeros(3), np.array([np.nan, np.nan, 1.0], f32))
    assert got.tolist() == [0.0, np.inf, np.inf]


def _spread_values(rng, n):
    """float64 values over the whole range, both signs, with the edges of every format."""
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 2.0**-1022, 2.0**-1023, 1.0, 0.5]
    edges += [v for f in FORMATS.values() for v in (f.smallest_subnormal, f.smallest_normal, f.max_finite)]
    random = rng.standard_normal(n) * 10.0 ** rng.integers(-320, 308, n)
    powers = 2.0 ** rng.integers(-1074, 1023, n).astype(np.float64)
    v = np.concatenate([edges, random, powers])
    return np.where(rng.random(v.size) < 0.5, v, -v)


@pytest.mark.parametrize("name", list(FORMATS))
def test_ulp_and_exact_ulp_error_match_their_definitions_element_by_element(name):
    """The vectorised ULP (from float64 exponent bits) against the definition evaluated one
    element at a time with ``math.frexp`` and exact fractions: 2**(max(E, emin) - t + 1), E the
    binade of the value (of the exact double-double ``hi + lo`` for ``exact_ulp_error``)."""
    from softmax_bench.formats import exact_ulp_error

    fmt = FORMATS[name]
    rng = np.random.default_rng(3)
    hi = _spread_values(rng, 400)

    def unit(E):
        return math.ldexp(1.0, max(E, fmt.emin) - fmt.precision + 1)

    def binade(v: Fraction) -> int:  # floor(log2 |v|), v != 0
        a = abs(v)
        e = a.numerator.bit_length() - a.denominator.bit_length()
        return e if Fraction(2) ** e <= a else e - 1

    expected = [math.nan if math.isnan(v) else unit(fmt.emax) if math.isinf(v) else
                unit(fmt.emin) if v == 0 else unit(math.frexp(v)[1] - 1) for v in hi]
    got = ulp(hi, name)
    np.testing.assert_array_equal(got, expected)
    assert ulp(hi[7], name).shape == ()

    lo = hi * 2.0**-54 * rng.uniform(-1, 1, hi.size)  # a double-double's low part, any sign
    lo[rng.random(hi.size) < 0.2] = 0.0
    with np.errstate(all="ignore"):
        rounded = hi.astype(fmt.dtype)
        computed = np.where(rng.random(hi.size) < 0.5, rounded,
                            (hi * (1 + rng.uniform(-1e-2, 1e-2, hi.size))).astype(rounded.dtype))
    err = exact_ulp_error(computed, hi, lo, rounded)
    c64, r64 = computed.astype(np.float64), rounded.astype(np.float64)
    for i in range(hi.size):
        if not (np.isfinite(c64[i]) and np.isfinite(hi[i]) and np.isfinite(r64[i])):
            same = c64[i] == r64[i] or (np.isnan(c64[i]) and np.isnan(r64[i]))
            assert err[i] == (0.0 if same else np.inf)
            continue
        v = Fraction(hi[i]) + Fraction(lo[i])
        u = unit(fmt.emin) if v == 0 else unit(binade(v))
        exact = abs(Fraction(c64[i]) - v) / Fraction(u)
        # the vectorised form rounds (c - hi) - lo and the quotient: a few float64 ulps
        assert err[i] == pytest.approx(float(exact), rel=2.0**-50, abs=0.0), (i, hi[i], lo[i])
