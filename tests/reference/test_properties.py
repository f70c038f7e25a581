"""The seed properties (shared/SEED_NOTES.md) hold for the reference.

Tolerances: every reference output is correctly rounded, so each carries a relative error of at
most u = 2**-t (t = 53 here; all rows keep outputs in the normal range). A quantity formed from k
such outputs in exact arithmetic is off by at most about k u relative (first order; the bounds
below add the second-order slack (1 + k u) explicitly, and use 1.01 k u where the exact expression
is k u + O(u^2)). The comparisons themselves are made in exact rational arithmetic."""
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmax_bench import reference as R

U = Fraction(1, 2**53)  # unit roundoff of float64, the output format below

small_int_rows = hnp.arrays(np.float64, st.integers(2, 8), elements=st.integers(-20, 20).map(float))


def rel_err(a, b) -> Fraction:
    a, b = Fraction(float(a)), Fraction(b)
    return abs(a - b) / abs(b)


def renormalise(values) -> list:
    total = sum(values)
    return [v / total for v in values]


@settings(max_examples=40, deadline=None)
@given(small_int_rows, st.integers(-10**6, 10**6))
def test_shift_invariance_is_bit_exact(x, c):
    """(1) S(x + c) = S(x): for an exactly representable shift the real inputs differ by c, the
    exact outputs are equal, and correct rounding makes the outputs identical bit for bit."""
    for dtype in (np.float16, np.float32, np.float64):
        xs = x.astype(dtype)
        with np.errstate(over="ignore"):
            shifted = (xs.astype(np.float64) + c).astype(dtype)
        if not np.array_equal(shifted.astype(np.float64), xs.astype(np.float64) + c):
            continue  # the shift is not exact in this format
        np.testing.assert_array_equal(R.softmax(shifted), R.softmax(xs))


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, st.integers(2, 10), elements=st.floats(-30, 30, width=32)))
def test_inverse_log_of_softmax_minus_input_is_constant(x):
    """(2) log S(x) - x is the same constant -logsumexp(x) in every component: each correctly
    rounded float64 log-softmax value is within half an ulp of x_i - lse, so the spread of
    ls_i - x_i (computed exactly) is at most max ulp(ls_i)."""
    ls = R.log_softmax(x, dtype=np.float64)
    diffs = [Fraction(float(a)) - Fraction(float(b)) for a, b in zip(ls, x)]
    assert max(diffs) - min(diffs) <= max(Fraction(float(np.spacing(abs(v)))) for v in ls)
    # and S(log S(x)) = S(x): softmax of the rounded log-softmax is within 2 max|delta| + u.
    y = R.softmax(x, dtype=np.float64)
    y_back = R.softmax(ls)
    delta = max(Fraction(float(np.spacing(abs(v)))) / 2 for v in ls)
    bound = (2 * delta + 2 * U) * (1 + 4 * delta)
    for a, b in zip(y_back, y):
        assert rel_err(a, Fraction(float(b))) <= bound


@settings(max_examples=30, deadline=None)
@given(small_int_rows, st.data())
def test_superposition(x1, data):
    """(3) S(x1 + x2) ∝ S(x1) ⊙ S(x2) and S(x1 - x2) ∝ S(x1) ./ S(x2). The right side from two
    rounded softmaxes and an exact renormalisation is off by <= 4u (2u in each product, 2u in
    their sum); the left side by u: compare within 5u (1 + 5u)."""
    x2 = data.draw(hnp.arrays(np.float64, x1.shape, elements=st.integers(-20, 20).map(float)))
    y1 = [Fraction(float(v)) for v in R.softmax(x1)]
    y2 = [Fraction(float(v)) for v in R.softmax(x2)]
    bound = 5 * U * (1 + 5 * U)
    for combined, rhs in (
        (x1 + x2, renormalise([a * b for a, b in zip(y1, y2)])),
        (x1 - x2, renormalise([a / b for a, b in zip(y1, y2)])),
    ):
        for a, b in zip(R.softmax(combined), rhs):
            assert rel_err(a, b) <= bound


@settings(max_examples=30, deadline=None)
@given(small_int_rows, st.sampled_from([-3, -1, 2, 3]))
def test_scaling(x, a):
    """(3, 5) S(a x) ∝ S(x)^a, incl. S(-x) ∝ 1/S(x): y^a carries |a| u, its sum |a| u, the left
    side u: within (2|a| + 1) u (1 + 8u)."""
    y = [Fraction(float(v)) for v in R.softmax(x)]
    rhs = renormalise([v**a for v in y])
    bound = (2 * abs(a) + 1) * U * (1 + 8 * U)
    for lhs, b in zip(R.softmax(a * x), rhs):
        assert rel_err(lhs, b) <= bound


def test_sharpness_limits():
    """(5a) a -> +inf: one-hot on the argmax; ties -> 1/k each; (5b) a -> 0+: uniform 1/N;
    (5c) a -> -inf: one-hot on the minimum (softmin)."""
    x = np.array([1.0, 3.0, -2.0, 2.5])
    # a = 4000: the gaps are >= 0.5 * 4000, and exp(-2000) is far below 2**-1075: exact one-hot.
    assert R.softmax(4000 * x).tolist() == [0, 1, 0, 0]
    assert R.softmax(-4000 * x).tolist() == [0, 0, 1, 0]
    ties = np.array([3.0, 1.0, 3.0, 3.0, -1.0])
    np.testing.assert_array_equal(R.softmax(4000 * ties), [1 / 3, 0, 1 / 3, 1 / 3, 0])
    # a = 2**-80: every exp(a x_i) is 1 + O(2**-78), far inside half an ulp of 1/N.
    tiny = np.ldexp(x, -80)
    np.testing.assert_array_equal(R.softmax(tiny), np.full(4, 0.25))
    np.testing.assert_array_equal(R.softmax(np.ldexp(np.arange(5.0), -80)), np.full(5, 1 / 5))
    # and the approach is monotone: sharpening never lowers the largest share.
    shares = [R.softmax(a * x)[1] for a in (0.5, 1, 2, 4, 8, 16)]
    assert shares == sorted(shares)


def test_jacobian_structure_and_finite_differences():
    """(4) J = diag(y) - y y^T: symmetric bit for bit (J_ij and J_ji are the same exact value),
    rows sum to 0 within the rounding of their entries, and equal to a central difference
    computed at 300 bits with h = 2**-100 (truncation error O(h^2), far below any float64 ulp)."""
    x = np.array([0.5, -1.0, 2.0, 0.0, 1.5])
    J = R.jacobian(x)
    np.testing.assert_array_equal(J, J.T)
    for row in J:
        exact_sum = sum(Fraction(float(v)) for v in row)
        assert abs(exact_sum) <= sum(Fraction(float(np.spacing(abs(v)))) / 2 for v in row)
    with mpmath.workprec(300):
        h = mpmath.ldexp(1, -100)

        def smx(v):
            m = max(v)
            e = [mpmath.exp(t - m) for t in v]
            s = mpmath.fsum(e)
            return [t / s for t in e]

        xs = [mpmath.mpf(float(v)) for v in x]
        for j in range(len(x)):
            up = smx([t + (h if k == j else 0) for k, t in enumerate(xs)])
            down = smx([t - (h if k == j else 0) for k, t in enumerate(xs)])
            for i in range(len(x)):
                fd = (up[i] - down[i]) / (2 * h)
                half_ulp = mpmath.mpf(float(np.spacing(abs(J[i, j])))) / 2
                assert abs(fd - mpmath.mpf(float(J[i, j]))) <= half_ulp * (1 + mpmath.ldexp(1, -40))


def test_vjp_is_jacobian_times_g():
    """J^T g = y ⊙ (g - <g, y>): the correctly rounded VJP equals the rounded exact product."""
    x = np.array([0.5, -1.0, 2.0, 0.0, 1.5])
    g = np.array([1.0, 0.0, -2.0, 3.0, 0.5])
    v = R.vjp(x, g)
    with mpmath.workprec(300):
        xs = [mpmath.mpf(float(t)) for t in x]
        e = [mpmath.exp(t - max(xs)) for t in xs]
        y = [t / mpmath.fsum(e) for t in e]
        J = [[(y[i] if i == j else 0) - y[i] * y[j] for j in range(5)] for i in range(5)]
        for i in range(5):
            exact = mpmath.fsum(J[j][i] * mpmath.mpf(float(g[j])) for j in range(5))
            assert abs(exact - mpmath.mpf(float(v[i]))) <= mpmath.mpf(float(np.spacing(abs(v[i])))) / 2


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@settings(max_examples=25, deadline=None)
@given(st.floats(-12, 12))
def test_two_classes_is_logistic(dtype, t):
    """(7) softmax([z1, z2])_1 = 1 / (1 + exp(z2 - z1)) and y_2 = 1 - y_1: computed here through
    the logistic form at 200 bits and rounded by numpy's own cast from a wider float route
    (mpmath -> rounded to nearest float64 at 200 bits is within 2**-150, then the float64 -> format
    cast is one more correct rounding: double rounding can only bite within 2**-150 of a midpoint,
    which the check below rules out)."""
    z = np.array([t, -t / 3], dtype=dtype)
    y = R.softmax(z)
    with mpmath.workprec(200):
        z1, z2 = (mpmath.mpf(float(v)) for v in z)
        y1 = 1 / (1 + mpmath.exp(z2 - z1))
        for got, exact in ((y[0], y1), (y[1], 1 - y1)):
            r = np.array(float(exact), dtype=np.float64).astype(dtype)
            gap = mpmath.mpf(float(np.spacing(r)))
            off = abs(exact - mpmath.mpf(float(r))) / gap
            assert abs(off - mpmath.mpf(0.5)) > mpmath.ldexp(1, -100)  # not a double-rounding case
            if dtype == np.float64 or abs(off - 0.5) > 1e-12:
                assert got == r
