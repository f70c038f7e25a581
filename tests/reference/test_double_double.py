"""reference/double_double.py: every operation within its stated relative error bound against
mpmath (300 bits) on random double-doubles, exp on a million arguments over its whole domain
(and ``expm1`` on its own), the FMA intrinsic exact."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from softmax_bench.reference import double_double as dd

U2 = 2.0**-106


def _mp(h, l=0.0):
    return mpmath.mpf(float(h)) + mpmath.mpf(float(l))


def _random_dd(rng, n, scale):
    hi = rng.standard_normal(n) * scale * 2.0 ** rng.integers(-30, 30, n)
    lo = hi * rng.uniform(-1, 1, n) * 2.0**-53
    return [dd.two_sum(a, b) for a, b in zip(hi, lo)]


def test_fma_rounds_once():
    """a b = 1 - 2**-60: the product's error term (fma(a, b, -p), one rounding) is exact."""
    a, b = 1.0 + 2.0**-30, 1.0 - 2.0**-30
    p, e = dd.two_prod(a, b)
    assert (p, e) == (1.0, -(2.0**-60))
    rng = np.random.default_rng(0)
    for a, b in rng.standard_normal((1000, 2)) * 1e3:
        p, e = dd.two_prod(a, b)
        assert _mp(p, e) == _mp(a) * _mp(b)


@pytest.mark.parametrize("name", ["add", "mul", "div", "add_fp", "mul_fp"])
def test_operations_within_their_bounds(name):
    rng = np.random.default_rng(1)
    xs, ys = _random_dd(rng, 3000, 1.0), _random_dd(rng, 3000, 1.0)
    bound = {"add": dd.ADD_REL, "mul": dd.MUL_REL, "div": dd.DIV_REL, "add_fp": dd.ADD_FP_REL,
             "mul_fp": dd.MUL_FP_REL}[name]
    worst = 0.0
    with mpmath.workprec(300):
        for (xh, xl), (yh, yl) in zip(xs, ys):
            if name.endswith("_fp"):
                zh, zl = getattr(dd, name)(xh, xl, yh)
                y = _mp(yh)
            else:
                zh, zl = getattr(dd, name)(xh, xl, yh, yl)
                y = _mp(yh, yl)
            x = _mp(xh, xl)
            exact = {"add": x + y, "add_fp": x + y, "mul": x * y, "mul_fp": x * y, "div": x / y}[name]
            assert abs(zl) <= abs(zh) * 2.0**-53  # normalised
            if exact != 0:
                worst = max(worst, float(abs(_mp(zh, zl) - exact) / abs(exact)))
    assert worst <= bound


def test_exp_within_its_bound_over_its_domain():
    """A million arguments: double-doubles over [-1100, 800] (the shift's exact error in the low
    word), small ones near 0 where the reduction is exact, and the edges."""
    rng = np.random.default_rng(2)
    n = 1_000_000
    hi = np.concatenate([rng.uniform(-1100, 800, n - 200_000), rng.standard_normal(199_990) * 2.0 ** rng.integers(-60, 2, 199_990),
                         [-1100.0, 800.0, 0.0, -0.0, 1e-300, -1e-300, 0.34657359, -0.34657359, 709.78, -745.1]])
    lo = hi * rng.uniform(-1, 1, hi.size) * 2.0**-53
    check = rng.choice(hi.size, 40_000, replace=False)  # mpmath on a sample; all run for NaN/range
    ks = np.empty(hi.size, dtype=np.int64)
    ehs = np.empty(hi.size)
    for i in range(hi.size):
        ks[i], ehs[i], _ = dd.exp(hi[i], lo[i])
    assert np.all((ehs > 0.7071) & (ehs < 1.4143))
    worst = 0.0
    with mpmath.workprec(300):
        for i in check:
            k, eh, el = dd.exp(hi[i], lo[i])
            exact = mpmath.exp(_mp(hi[i], lo[i]))
            worst = max(worst, float(abs(mpmath.ldexp(_mp(eh, el), int(k)) - exact) / exact))
    assert worst <= dd.EXP_REL


def test_expm1_within_its_bound():
    rng = np.random.default_rng(3)
    args = np.concatenate([rng.uniform(0, 36, 20_000), 2.0 ** rng.uniform(-900, 0, 20_000), [0.0, 36.0, 0.3465]])
    worst = 0.0
    with mpmath.workprec(300):
        for a in args:
            th, tl = dd.expm1(a, 0.0)
            exact = mpmath.expm1(_mp(a))
            if exact == 0:
                assert th == 0.0
                continue
            worst = max(worst, float(abs(_mp(th, tl) - exact) / exact))
    assert worst <= dd.EXPM1_REL
