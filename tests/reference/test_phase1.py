"""reference/phase1.py: its enclosures hold the exact softmax (mpmath at 160 bits), its rounding
is formats.round_float64's, and every row it decides equals phase 2's (the mpmath Ziv loop) on
random, adversarial and hypothesis rows of every format (float64 targets through double-doubles),
with the fallbacks counted; its exact values agree with mpmath."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_bench import strategies
from softmax_bench.formats import FORMATS, round_float64
from softmax_bench.reference import correctly_rounded as CR
from softmax_bench.reference import phase1

NARROW = [f for f in FORMATS if FORMATS[f].precision <= phase1.MAX_TARGET_PRECISION]
ALL = list(FORMATS)


def rows_of(dtype, seed, count=40, n=30):
    """Rows people and adversaries feed a softmax, exact in ``dtype``: N(0, s^2) for s from 0.01
    to 10^4, masks, ties at the maximum, one dominant entry, a long row."""
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        s = 10.0 ** rng.uniform(-2, 4)
        x = rng.standard_normal(n) * s + rng.uniform(-1, 1) * min(fmt.max_finite / 4, 1e4)
        if k % 4 == 1:
            x[rng.random(n) < 0.3] = -np.inf if fmt.has_inf else -fmt.max_finite
        if k % 4 == 2:
            x[rng.choice(n, 3, replace=False)] = x.max()
        if k % 4 == 3:
            x[0] = x.max() + rng.uniform(1, 40)
        x = np.clip(x, -fmt.max_finite, fmt.max_finite) if not fmt.has_inf else x
        out.append(np.asarray(x, dtype=np.float64).astype(fmt.dtype).astype(np.float64))
    return out


def exact_softmax(row, prec=160):
    with mpmath.workprec(prec):
        xs = [mpmath.mpf(v) if v != -np.inf else None for v in row]
        m = max(v for v in xs if v is not None)
        e = [mpmath.exp(v - m) if v is not None else mpmath.mpf(0) for v in xs]
        s = mpmath.fsum(e)
        return [v / s for v in e]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float8_e4m3fn", "float64"])
def test_enclosures_hold_the_exact_value(dtype):
    """Every output: lo <= exact <= hi, with the exact value at 160 bits (its own error, 2**-150
    relative, is far inside the enclosures' width of about 2**-50). float64 inputs reach 1e300."""
    rows = rows_of(dtype, seed=1, count=24)
    if dtype == "float64":
        rows.append(np.array([1e300, 1e300 - 1e285, -1e300, 7.0]))
    checked = 0
    for row in rows:
        y, r, taken = phase1.softmax_bounds(row[None, :])
        assert taken[0]
        for yj, rj, ex in zip(y[0], r[0], exact_softmax(row)):
            lo, hi = phase1.enclosure(yj, rj)
            assert mpmath.mpf(lo) <= ex * (1 + mpmath.ldexp(1, -150)), (row, yj, rj, ex)
            assert mpmath.mpf(hi) >= ex * (1 - mpmath.ldexp(1, -150)), (row, yj, rj, ex)
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("dtype", NARROW)
def test_rounding_is_formats_round_float64(dtype):
    """phase1's compiled rounding against formats.round_float64 on every value of the format's
    range neighbourhood: values, midpoints and their float64 neighbours, subnormals, overflow."""
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(3)
    v = np.abs(rng.standard_normal(20000)) * 2.0 ** rng.integers(fmt.emin - fmt.precision - 2,
                                                                 fmt.emax + 2, 20000)
    grid = round_float64(v, fmt)
    mid = (grid + round_float64(grid * (1 + 2.0 ** (1 - fmt.precision)), fmt)) / 2
    v = np.concatenate([v, mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf), [0.0, fmt.max_finite,
                        fmt.overflow_boundary, fmt.smallest_subnormal / 2, 1e300]])
    v = v[np.isfinite(v)]
    want = round_float64(v, fmt)
    got = np.array([phase1._round(float(a), fmt.precision, fmt.emin, fmt.max_finite, fmt.has_inf)
                    for a in v])
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("target", [None, "float16", "float8_e5m2"])
def test_decided_rows_equal_phase_two(dtype, target):
    """Inputs of every narrow format into their own format and narrower ones: every row phase 1
    decides is phase 2's, bit for bit. Undecided rows are counted: at the enclosures' width
    (about 5 float64 ULPs) the expected count here is far below one, so more than 1% would be
    a defect of phase 1, not bad luck."""
    fmt = FORMATS[target or dtype]
    rows = rows_of(dtype, seed=2, count=60)
    x = np.array(rows)
    got, decided = phase1.softmax(x, fmt)
    for i in np.flatnonzero(decided):
        want = np.array(CR._softmax_row(x[i], fmt))
        assert np.array_equal(got[i], want, equal_nan=True), (x[i], got[i], want)
    assert (~decided).sum() <= 0.01 * len(rows)


def test_near_midpoint_rows_are_decided_right_or_deferred():
    """Two-class rows [t, 0] whose output lies closest to a float32 or bfloat16 midpoint among
    20,000 candidates: phase 1 either decides them (and agrees with phase 2) or defers them."""
    rng = np.random.default_rng(7)
    for dtype in ("float32", "bfloat16"):
        fmt = FORMATS[dtype]
        t = np.unique(rng.uniform(-8, 8, 20000).astype(fmt.dtype).astype(np.float64))
        y = 1 / (1 + np.exp(-t))  # float64: enough to rank distances to midpoints
        q = 2.0 ** (np.floor(np.log2(y)) - fmt.precision + 1)
        frac = (y / q) % 1.0
        worst = t[np.argsort(np.abs(frac - 0.5))[:50]]
        x = np.stack([worst, np.zeros_like(worst)], axis=1)
        got, decided = phase1.softmax(x, fmt)
        for i in range(len(x)):
            if decided[i]:
                assert np.array_equal(got[i], CR._softmax_row(x[i], fmt))


def test_rows_phase_one_does_not_take():
    x = np.array([[0.0, np.nan], [np.inf, 0.0], [-np.inf, -np.inf], [0.0, 1.0]])
    _, _, taken = phase1.softmax_bounds(x)
    assert taken.tolist() == [False, False, False, True]
    for fmt in (FORMATS["float64"], FORMATS["float32"]):
        assert phase1.softmax(x, fmt)[1].tolist() == [False, False, False, True]


@pytest.mark.parametrize("dtype", ALL)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_rows_reference_equals_phase_two(dtype, data):
    """The public reference (phase 1, then phase 2 for what it leaves) equals phase 2 alone on
    any finite rows of the format, masks included, at any scale up to its largest finite."""
    row = data.draw(strategies.finite_rows(dtype, 1, 24, masked=FORMATS[dtype].has_inf))
    got = CR.softmax(row).astype(np.float64)
    want = np.array(CR._softmax_row(row.astype(np.float64), FORMATS[dtype]))
    assert np.array_equal(got, want, equal_nan=True)


# --- log-sum-exp and log-softmax ------------------------------------------------------------
LOG_FUNCTIONS = {"logsumexp": (phase1.logsumexp, CR._logsumexp_row),
                 "log_softmax": (phase1.log_softmax, CR._log_softmax_row)}


def _bits(v, fmt):
    return np.atleast_1d(np.asarray(v, dtype=np.float64)).astype(fmt.dtype).view(f"u{fmt.dtype.itemsize}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float8_e5m2", "float64"])
def test_log1p_of_the_others_within_delta(dtype):
    """log_parts' enclosure: the exact log1p(S') (160 bits) lies within delta of l_hat."""
    for row in rows_of(dtype, seed=4, count=24):
        taken, m, ell, delta, _, _ = phase1.log_parts(row)
        assert taken
        with mpmath.workprec(160):
            xs = [mpmath.mpf(v) for v in row if v != -np.inf]
            k = xs.index(max(xs))
            rest = mpmath.fsum(mpmath.exp(v - xs[k]) for j, v in enumerate(xs) if j != k)
            exact = mpmath.log1p(rest)
            assert abs(exact - mpmath.mpf(ell)) <= mpmath.mpf(delta) * (1 + mpmath.ldexp(1, -100)), row


@pytest.mark.parametrize("function", LOG_FUNCTIONS)
@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("target", [None, "float8_e5m2"])
def test_log_functions_decided_rows_equal_phase_two(function, dtype, target):
    fast, slow = LOG_FUNCTIONS[function]
    fmt = FORMATS[target or dtype]
    x = np.array(rows_of(dtype, seed=5, count=60))
    got, decided = fast(x, fmt)
    for i in np.flatnonzero(decided):
        assert np.array_equal(_bits(got[i], fmt), _bits(slow(x[i], fmt), fmt)), (x[i], got[i])
    if fmt.precision == 53 and function == "log_softmax":
        # float64 log_softmax of the maximum is -l, l = log1p(S') below 2**-1000 when every other
        # entry is 700 below it: within phase 1's absolute slack (2**-1073) of a subnormal
        # boundary, so phase 2's by design. The other rows count.
        decided = decided | [_others_far_below(row, 700.0) for row in x]
    assert (~decided).sum() <= 0.01 * len(x)


def _others_far_below(row, gap):
    rest = np.sort(row[row > -np.inf])[:-1]
    return rest.size > 0 and rest[-1] < row.max() - gap


def _midpoint_shift_rows(gap_lo, gap_hi, count=30, seed=6):
    """float32 rows [m, x] whose difference x - m is exactly a float32 rounding midpoint (a
    difference of two float32 carries up to 48 bits), at a gap where exp(x - m) is tiny (kept) or
    below 2**-1021 (dropped): log_softmax's exact part sits on a midpoint, the rest is a
    remainder of known sign far below a float64 ULP."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.5, 1.0, 200_000).astype(np.float32).astype(np.float64)  # 24 bits below 1
    x = (m - rng.uniform(gap_lo, gap_hi, m.size)).astype(np.float32).astype(np.float64)
    d = x - m  # exact in float64
    q = 2.0 ** (np.floor(np.log2(np.abs(d))) - 23)
    hits = np.flatnonzero((np.abs(d) / q) % 1.0 == 0.5)[:count]
    assert hits.size == count
    return [np.array([m[i], x[i]]) for i in hits]


@pytest.mark.parametrize("gap", [(100.0, 600.0), (710.0, 3000.0)], ids=["kept", "dropped"])
def test_midpoint_plus_tiny_decided_by_the_remainder(gap):
    """The exact part of log_softmax on a float32 midpoint, the rest e^-gap: phase 1 decides it
    from the remainder's sign (no fallback) and agrees with phase 2."""
    fmt = FORMATS["float32"]
    rows = np.array(_midpoint_shift_rows(*gap))
    got, decided = phase1.log_softmax(rows, fmt)
    assert decided.all()
    for i in range(len(rows)):
        assert np.array_equal(_bits(got[i], fmt), _bits(CR._log_softmax_row(rows[i], fmt), fmt))
    assert np.signbit(got[:, 0]).all()  # -l rounds to -0.0, as phase 2 (a tiny negative)


def test_masked_others_give_exact_outputs():
    x = np.array([[3.0, -np.inf, -np.inf], [-2.5, -np.inf, -np.inf]])
    v, d = phase1.log_softmax(x, FORMATS["float32"])
    assert d.all() and v[:, 0].tolist() == [0.0, 0.0] and not np.signbit(v[:, 0]).any()
    v, d = phase1.logsumexp(x, FORMATS["float32"])
    assert d.all() and v.tolist() == [3.0, -2.5]


@pytest.mark.parametrize("function", LOG_FUNCTIONS)
@pytest.mark.parametrize("dtype", ALL)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_log_rows_reference_equals_phase_two(function, dtype, data):
    fmt = FORMATS[dtype]
    row = data.draw(strategies.finite_rows(dtype, 1, 24, masked=fmt.has_inf))
    got = getattr(CR, function)(row)
    want = LOG_FUNCTIONS[function][1](row.astype(np.float64), fmt)
    assert np.array_equal(_bits(got.astype(np.float64), fmt), _bits(want, fmt))


# --- the VJP ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("target", [None, "float8_e5m2"])
def test_vjp_decided_rows_equal_phase_two(dtype, target):
    """Random, masked, tied and dominant rows with normal cotangents, and rows whose cotangent is
    constant (exact zeros: phase 1 must leave those to phase 2, never decide a wrong sign)."""
    fmt = FORMATS[target or dtype]
    x = np.array(rows_of(dtype, seed=8, count=60))
    rng = np.random.default_rng(9)
    g = rng.standard_normal(x.shape).astype(FORMATS[dtype].dtype).astype(np.float64)
    g[::6] = 0.5
    got, decided = phase1.vjp(x, g, fmt)
    for i in np.flatnonzero(decided):
        want = CR._vjp_row(x[i], g[i], fmt)
        assert np.array_equal(_bits(got[i], fmt), _bits(want, fmt)), (x[i], g[i], got[i], want)
    plain = np.ones(len(x), bool)
    plain[::6] = False
    assert decided[plain].mean() >= 0.75  # the rest: huge gaps, whose outputs are signed zeros


@pytest.mark.parametrize("dtype", ALL)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_vjp_reference_equals_phase_two(dtype, data):
    fmt = FORMATS[dtype]
    row = data.draw(strategies.finite_rows(dtype, 1, 16, masked=fmt.has_inf))
    g = np.array(data.draw(st.lists(strategies.values(dtype), min_size=row.size, max_size=row.size)),
                 dtype=np.float64).astype(fmt.dtype)
    got = CR.vjp(row, g)
    want = CR._vjp_row(row.astype(np.float64), g.astype(np.float64), fmt)
    assert np.array_equal(_bits(got.astype(np.float64), fmt), _bits(want, fmt))


# --- rows a review found (session 5): each once decided wrongly ------------------------------
E4M3, F32 = FORMATS["float8_e4m3fn"], FORMATS["float32"]


def test_vjp_enclosure_across_zero_is_not_a_decided_nan():
    """Both ends overflow e4m3fn (NaN) but on opposite sides: finite values lie between. Phase 1
    must not decide it, and phase 2 must not call it NaN either."""
    x = np.array([0.0, -1.0, -1.0, -1.0])
    g = np.array([0.0, 1e300, -1e300, 1.0])
    _, decided = phase1.vjp(x[None], g[None], E4M3)
    assert not decided[0]
    z = CR.vjp(x, g, dtype=E4M3.dtype).astype(np.float64)
    assert np.isfinite(z[[0, 3]]).all() and np.isnan(z[[1, 2]]).all()
    z = CR.vjp(np.array([-1.0, -709.0]), np.array([1e308, -1.0]), dtype=E4M3.dtype)
    assert z.astype(np.float64).tolist() == [3.25, -3.25]


def test_vjp_with_overflowing_cotangent_differences_goes_to_phase_two():
    for x, g, want in (([0.0, 0.0], [1e308, -1e308], [np.inf, -np.inf]),
                       ([0.0, -1.0, -2.0], [1.5e308, -1e308, 3.0], [np.inf, -np.inf, -np.inf])):
        x, g = np.array([x]), np.array([g])
        assert not phase1.vjp(x, g, F32)[1][0]
        assert CR.vjp(x, g, dtype=np.float32)[0].tolist() == want


def test_vjp_products_that_underflow_keep_the_sign_of_a_zero():
    """Subnormal cotangents whose products y_j g_j round down by ~0.45 ULP each: the sum's sign
    hangs on those roundings, so the zero output's sign must come from phase 2 or be right."""
    import math
    from fractions import Fraction

    n, tiny = 12, 2.0**-1074
    x = np.array([[0.0] + [-20.0] * (n + 1)])
    yj = phase1.softmax_bounds(x)[0][0, 1]

    def pick(frac, q):
        """h with y_j h = q + (just below frac), exactly: y_j h rounds down or up by ~0.45 ULP."""
        h = math.floor((q + frac) / Fraction(yj))
        assert abs(Fraction(yj) * h - q - frac) < Fraction(1, 100)
        return h

    h, p = pick(Fraction(45, 100), 4), pick(Fraction(55, 100), 4 * n + 3)
    g = np.array([[0.0] + [-h * tiny] * n + [p * tiny]])
    got, decided = phase1.vjp(x, g, F32)
    want = np.array(CR._vjp_row(x[0], g[0], F32))
    if decided[0]:
        assert np.array_equal(np.signbit(got[0]), np.signbit(want))
    assert np.array_equal(np.signbit(CR.vjp(x, g, dtype=np.float32)[0]), np.signbit(want))


def test_log_softmax_shift_overflow_is_not_a_mask():
    """x_j - m overflows float64 for a finite x_j: the output is finite (-2e308), NaN in e4m3fn,
    -inf only in a format with infinities; never treated as a masked entry."""
    x = np.array([[1e308, -1e308]])
    assert not phase1.log_softmax(x, E4M3)[1][0]
    y = CR.log_softmax(x, dtype=E4M3.dtype).astype(np.float64)[0]
    assert y[0] == 0 and np.signbit(y[0]) and np.isnan(y[1])


# --- the Jacobian (double-doubles for every format) -----------------------------------------
@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("target", [None, "float8_e5m2"])
def test_jacobian_decided_rows_equal_phase_two(dtype, target):
    """Every decided row's n x n Jacobian equals phase 2's, signs of zeros included, on random,
    masked, tied and dominant rows and uniform rows (whose outputs are dyadic or midpoints)."""
    fmt = FORMATS[target or dtype]
    x = np.array(rows_of(dtype, seed=12, count=40, n=6))
    x[::5] = x[::5, :1]
    got, decided = phase1.jacobian(x, fmt)
    for i in np.flatnonzero(decided):
        want = np.array(CR._jacobian_row(x[i], fmt))
        assert np.array_equal(_bits(got[i], fmt), _bits(want, fmt)), (x[i], got[i], want)
    assert decided[np.arange(len(x)) % 5 != 0].mean() >= 0.95


@pytest.mark.parametrize("dtype", ALL)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_jacobian_reference_equals_phase_two(dtype, data):
    """Any finite rows up to the format's largest finite: the public Jacobian (phase 1, then
    phase 2 for what it leaves) never gives up and equals phase 2 alone."""
    fmt = FORMATS[dtype]
    row = data.draw(strategies.finite_rows(dtype, 1, 8, masked=fmt.has_inf))
    got = CR.jacobian(row).astype(np.float64)
    want = np.array(CR._jacobian_row(row.astype(np.float64), fmt))
    assert np.array_equal(_bits(got, fmt), _bits(want, fmt))


# --- exact values ------------------------------------------------------------------------------
def _exact_mp(function, row, g):
    """The exact outputs at 300 bits and the magnitude their error is relative to (module
    docstring, last section: the terms before they cancel for logsumexp and the VJP)."""
    with mpmath.workprec(300):
        xs = [mpmath.mpf(v) if v != -np.inf else None for v in row]
        m = max(v for v in xs if v is not None)
        e = [mpmath.exp(v - m) if v is not None else mpmath.mpf(0) for v in xs]
        s = mpmath.fsum(e)
        y = [v / s for v in e]
        if function == "softmax":
            return y, [abs(v) for v in y]
        k = xs.index(m)
        log_s = mpmath.log1p(mpmath.fsum(e[:k] + e[k + 1:]))  # accurate when S is near 1
        if function == "log_softmax":
            out = [v - m - log_s if v is not None else -mpmath.inf for v in xs]
            return out, [abs(v) for v in out]
        if function == "logsumexp":
            return [m + log_s], [abs(m) + log_s]
        gs = [mpmath.mpf(v) for v in g]
        # g_i - c = (g_i - g_k) + sum_j y_j (g_k - g_j): no cancellation against g_k at 300 bits
        shift = mpmath.fsum(yj * (gs[k] - gj) for yj, gj in zip(y, gs))
        spread = mpmath.fsum(yj * abs(gs[k] - gj) for yj, gj in zip(y, gs))
        return ([yi * ((gi - gs[k]) + shift) for yi, gi in zip(y, gs)],
                [yi * (abs(gi - gs[k]) + spread) for yi, gi in zip(y, gs)])


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "vjp"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "float8_e4m3fn"])
def test_exact_values_within_their_bound(function, dtype):
    """phase1.exact against mpmath at 300 bits: within 2**-95 of the magnitude each bound is
    relative to (module docstring, last section; its bounds are about 2**-96), or 2**-1069
    absolute where values underflow."""
    x = np.array(rows_of(dtype, seed=13, count=24, n=8))
    g = np.random.default_rng(14).standard_normal(x.shape)
    hi, lo, taken = phase1.exact(function, x, g)
    assert taken.all()
    worst = 0.0
    for i in range(len(x)):
        want, scale = _exact_mp(function, x[i], g[i])
        for j, (v, sc) in enumerate(zip(want, scale)):
            if v == -mpmath.inf:
                assert hi[i, j] == -np.inf
                continue
            with mpmath.workprec(300):
                err = abs(mpmath.mpf(hi[i, j]) + mpmath.mpf(lo[i, j]) - v)
            assert err <= mpmath.ldexp(sc, -95) + mpmath.ldexp(1, -1069), (x[i], j)
            if sc > 2.0**-900:
                worst = max(worst, float(err / sc))
    assert worst < 2.0**-95


def test_public_exact_values_shapes_and_fallbacks():
    """reference.exact: the result's shape and axis; rows phase 1 does not take (NaN, +inf, all
    masked) hold the correctly rounded float64 values, which are exact there."""
    from softmax_bench import reference as R

    x = np.array([[1.0, 2.0, np.nan], [0.0, -np.inf, 3.0], [-np.inf] * 3, [np.inf, 0.0, 1.0]],
                 dtype=np.float32)
    for f in ("softmax", "log_softmax", "logsumexp"):
        hi, lo = R.exact(f, x)
        want = getattr(R, f)(x, dtype=np.float64)
        assert hi.shape == want.shape
        special = np.array([0, 2, 3])
        assert np.array_equal(hi[special], want[special], equal_nan=True)
    hi, lo = R.exact("softmax", x.T, axis=0)
    assert np.array_equal(hi, R.exact("softmax", x)[0].T, equal_nan=True)
    with pytest.raises(ValueError, match="no exact values"):
        R.exact("jacobian", x)


@pytest.mark.parametrize("gap", [800.0, 1500.0, 1e281], ids=["below-2**-1074", "below-e^-1100", "1e281"])
def test_float64_log_functions_with_every_other_term_tiny(gap):
    """Rows whose other entries are all far below the maximum (the audit's float64 temperature
    rows have gaps of 1e281): l = log1p(S') lies far below 2**-1074, so the maximum's
    log-softmax -l and a log-sum-exp with m = 0 are rounded at l's own scale (-0.0, or
    -2**-1074...), the other outputs from their exact shifts; all decided, all phase 2's."""
    f64 = FORMATS["float64"]
    rng = np.random.default_rng(15)
    x = -gap * (1.0 + rng.random((20, 6)))
    x[:, 0] = 0.0
    x[::2, 0] = 2.5  # m != 0: a log-sum-exp of m plus a tiny l
    for fast, slow in LOG_FUNCTIONS.values():
        got, decided = fast(x, f64)
        assert decided.all()
        for i in range(len(x)):
            assert np.array_equal(_bits(got[i], f64), _bits(slow(x[i], f64), f64)), x[i]


# --- rows a review found (session 6): each once wrong -------------------------------------------
def test_float64_log_softmax_shift_just_above_a_midpoint():
    """x_j - m sits 2**-100 above a float64 midpoint (m just below a power of two) and l is far
    below: the output rounds down to the float below the midpoint's upper neighbour only if it
    lies below the midpoint; it was decided one float64 too low (stepping the low word down a
    whole float64 step landed on the midpoint). Plus 400 rows of that shape against phase 2."""
    f64 = FORMATS["float64"]
    row = np.array([float.fromhex("0x1.fffffffffffffp-48"), float.fromhex("-0x1.9000000000001p+6")])
    got, decided = phase1.log_softmax(row[None], f64)
    want = CR._log_softmax_row(row, f64)
    assert not decided[0] or np.array_equal(got[0], want)
    rng = np.random.default_rng(16)
    m = np.nextafter(2.0 ** rng.integers(-60, 8, 400).astype(float), 0.0)
    x = -(rng.uniform(40, 200, 400) + np.ldexp(rng.integers(1, 8, 400).astype(float), -46))
    rows = np.stack([m, x], axis=1)
    got, decided = phase1.log_softmax(rows, f64)
    for i in np.flatnonzero(decided):
        assert np.array_equal(_bits(got[i], f64), _bits(CR._log_softmax_row(rows[i], f64), f64)), rows[i]


@pytest.mark.parametrize("x1, g1", [(-800.0, 2.0**1000), (-730.0, 2.0**40), (-745.0, 2.0**60)])
def test_exact_vjp_with_an_underflowing_softmax_output(x1, g1):
    """y_1 below 2**-1022 times a huge cotangent difference: the product is formed at y_1's
    scale, so the exact value keeps its bits (it was 0, or 75% off)."""
    x = np.array([[0.0, x1]])
    g = np.array([[0.0, g1]])
    hi, lo, _ = phase1.exact("vjp", x, g)
    want, scale = _exact_mp("vjp", x[0], g[0])
    with mpmath.workprec(300):
        err = abs(mpmath.mpf(hi[0, 0]) + mpmath.mpf(lo[0, 0]) - want[0])
    assert err <= mpmath.ldexp(scale[0], -95) + mpmath.ldexp(1, -1069)


# --- the double-double second try for narrow formats; the VJP's scalings ------------------------
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "vjp"])
@pytest.mark.parametrize("dtype", NARROW)
def test_double_double_path_into_narrow_formats_equals_phase_two(function, dtype):
    """The second try (double-doubles for a target of at most 24 bits): every decided row is
    phase 2's, on the adversarial row shapes of reference_fuzz and the rows above."""
    from softmax_bench import reference_fuzz

    fmt = FORMATS[dtype]
    rng = np.random.default_rng(17)
    blocks = [np.array(rows_of(dtype, seed=18, count=24, n=6))]
    blocks += [reference_fuzz.rows(rng, shape, 8, 6, fmt) for shape in reference_fuzz.ROW_SHAPES]
    x = np.concatenate(blocks)
    operands = [x]
    if function == "vjp":
        operands.append(np.concatenate([reference_fuzz.cotangents(rng, shape, x[:8], fmt)
                                        for shape in reference_fuzz.COTANGENT_SHAPES] * 12)[:len(x)])
    got, decided = getattr(phase1, function)(*operands, fmt, double_double=True)
    slow = getattr(CR, f"_{function}_row")
    for i in np.flatnonzero(decided):
        want = slow(*(a[i] for a in operands), fmt)
        assert np.array_equal(_bits(got[i], fmt), _bits(want, fmt)), [a[i] for a in operands]
    assert decided.mean() >= 0.8


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("g_scale, gaps", [(1.0, (1100, 1e4)), (2.0**-1040, (1100, 1e4)),
                                           (2.0**1000, (700, 1000))],
                         ids=["g~1", "g~2**-1040", "g~2**1000"])
def test_vjp_with_every_other_term_tiny_and_extreme_cotangents(dtype, g_scale, gaps):
    """Rows whose other entries are 1100 to 1e4 below the maximum (the audit's temperature rows):
    the maximum's output is y_k delta, a zero whose sign is that of the dominant tiny term
    (decided from e^(x_j - x_1)); cotangents near the extremes of float64 are scaled by a power
    of two first (the VJP is linear in g; with g near 2**1000 and gaps of 700 to 1000 the
    outputs are normal float64 numbers formed from products far below 2**-1022). Every decided
    row is phase 2's."""
    fmt = FORMATS[dtype]
    if g_scale != 1.0 and fmt.precision != 53:
        pytest.skip("extreme cotangents exist in float64 only")
    rng = np.random.default_rng(19)
    x = -rng.uniform(*gaps, (24, 5))
    x[:, 0] = rng.uniform(-1, 1, 24)
    x = np.clip(x, -fmt.max_finite, fmt.max_finite).astype(fmt.dtype).astype(np.float64)
    g = (rng.standard_normal(x.shape) * g_scale).astype(fmt.dtype).astype(np.float64)
    got, decided = phase1.vjp(x, g, fmt, double_double=True)
    for i in np.flatnonzero(decided):
        assert np.array_equal(_bits(got[i], fmt), _bits(CR._vjp_row(x[i], g[i], fmt), fmt)), (x[i], g[i])
    assert decided.mean() >= 0.9


def test_near_float64_largest_an_overflowing_twosum_never_decides():
    """x_j - m near -1.3e308 is finite but TwoSum's intermediate s - a overflows: its error term
    is NaN. Both ends NaN once counted as "decided" (e4m3fn's overflow rule), giving NaN outputs
    into float64 (the fuzz found 48 such rows) and into narrow targets from float64 inputs. A NaN
    end no longer decides, and the shift is now taken on halves there, so these rows are
    decided right."""
    from softmax_bench import reference as R

    x = np.array([1.7976931348623157e308, 1.7976931348623157e308, 4.843010339197998e307])
    for fmt in (FORMATS["float64"], FORMATS["float32"], FORMATS["float16"]):
        for wide in (False, True):
            for fast, slow in LOG_FUNCTIONS.values():
                got, decided = fast(x[None], fmt, double_double=wide)
                assert decided[0]  # the shift on halves: TwoSum exact again
                assert np.array_equal(_bits(got[0], fmt), _bits(slow(x, fmt), fmt))
    assert not np.isnan(R.exact("log_softmax", x)[0]).any()
    assert np.array_equal(R.log_softmax(x), CR._log_softmax_row(x, FORMATS["float64"]))


@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float8_e4m3fn", "float64"])
def test_public_enclosures_hold_the_exact_value(function, dtype):
    """phase1.enclosures (the exhaustive sweep's error bounds): lo <= exact <= hi against mpmath at
    300 bits for every output of random, masked, tied and dominated rows (float64 up to 1e300),
    and about 2**-50 relative wide for inputs of the narrow formats (float64's inexact shifts widen
    them by |x_j - m| u); NaN, +inf and all -inf rows are not taken."""
    rows = rows_of(dtype, seed=21, count=24, n=8)
    if dtype == "float64":
        rows.append(np.array([1e300, 1e300 - 1e285, -1e300, 7.0, -np.inf, 0.0, 1e-300, -5e-324]))
    x = np.array(rows)
    lo, hi, taken = phase1.enclosures(function, x)
    assert taken.all()
    for i in range(len(x)):
        want, _ = _exact_mp(function, x[i], None)
        for j, v in enumerate(want):
            if v == -mpmath.inf:
                assert lo[i, j] == hi[i, j] == -np.inf
                continue
            assert mpmath.mpf(lo[i, j]) <= v <= mpmath.mpf(hi[i, j]), (x[i], j)
            # exact shifts in the narrow formats; dropped terms (each below 2**-1021) widen by
            # that much absolutely
            if dtype != "float64":
                assert hi[i, j] - lo[i, j] <= 2.0**-48 * abs(hi[i, j]) + 2.0**-1015, (x[i], j)
    bad = np.array([[1.0, np.nan], [np.inf, 1.0], [-np.inf, -np.inf]])
    assert not phase1.enclosures(function, bad)[2].any()
    with pytest.raises(ValueError, match="logsumexp"):
        phase1.enclosures("logsumexp", x)
