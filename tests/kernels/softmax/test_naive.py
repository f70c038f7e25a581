"""The naive kernel really is exp(x_i) / sum_j exp(x_j): it overflows exactly above ln(largest
finite) and gives 0/0 = NaN exactly below the underflow edge of its compute format, where the
shifted kernel is fine."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from softmax_bench.formats import FORMATS
from softmax_bench.kernels import get_kernel, list_kernels

NAIVE = list_kernels("naive", function="softmax")


def _exact_edges(fmt):
    """(ln max_finite, ln(max_finite + ulp/2), ln(smallest_subnormal / 2)) of ``fmt`` as 100-digit
    mpf values: a correctly rounded exp(x) is finite for x < the second and 0 for x < the third.
    (formats.exp_overflow etc. are these rounded to float64, which is not enough to pick the
    float64 values on either side.)"""
    with mpmath.workdps(100):
        big = mpmath.ldexp(2 * mpmath.ldexp(1, fmt.precision) - 2, fmt.emax - fmt.precision)
        half_ulp = mpmath.ldexp(1, fmt.emax - fmt.precision)
        return (
            +mpmath.log(big),
            +mpmath.log(big + half_ulp),
            (fmt.emin - fmt.precision) * mpmath.log(2),
        )


def _around(edge, dtype):
    """(largest value of ``dtype`` <= ``edge``, smallest value of ``dtype`` > ``edge``)."""
    top = np.inf if FORMATS[np.dtype(dtype).name].has_inf else FORMATS[np.dtype(dtype).name].max_finite
    up, down = np.array(top, dtype), np.array(-top, dtype)  # nextafter's directions (e4m3fn: no inf)
    v = np.array(float(edge), dtype)
    while mpmath.mpf(float(v)) > edge:
        v = np.nextafter(v, down)
    while mpmath.mpf(float(np.nextafter(v, up))) <= edge:
        v = np.nextafter(v, up)
    return v, np.nextafter(v, up)


@pytest.mark.parametrize("spec", NAIVE, ids=lambda k: k.id)
def test_overflow_exactly_above_ln_max(spec):
    """With x_hi the last storage value <= ln(largest finite of the compute format) the row
    [x_hi, 0] is finite; one step up, exp overflows: inf/inf = NaN there and 1/inf = 0 beside it.
    (Thresholds from formats: float16 11.09, float32 88.72, float64 709.78.)"""
    fc = FORMATS[spec.compute]
    ln_max, ln_inf, _ = _exact_edges(fc)
    assert abs(ln_max - fc.exp_overflow) < 1e-12 * ln_max  # the same edge as formats states
    # a correctly rounded exp(x) is inf from ln(max + ulp/2) on, finite below it; no storage value
    # lies in [ln max, ln(max + ulp/2)), so the step is exactly above ln(max):
    x_hi, x_up = _around(ln_max, spec.dtype)
    assert mpmath.mpf(float(x_up)) >= ln_inf
    y = spec(np.array([x_hi, 0], spec.dtype))
    assert np.isfinite(y).all() and y[0] > 0.99, (x_hi, y)
    with np.errstate(all="ignore"):
        y = spec(np.array([x_up, 0], spec.dtype))
    assert np.isnan(y[0]) and y[1] == 0, (x_up, y)
    # the shifted kernel does not care
    assert np.isfinite(get_kernel("shifted", spec.dtype, spec.compute)(np.array([x_up, 0], spec.dtype))).all()


@pytest.mark.parametrize("spec", NAIVE, ids=lambda k: k.id)
def test_underflow_below_the_edge(spec):
    """Every x_i below ln(smallest subnormal / 2) of the compute format: every term is 0 and the
    row is 0/0 = NaN. Just above the edge the smallest subnormal survives and the row is uniform.
    (Edges from formats.exp_underflow: float16 -17.33, float32 -103.97, float64 -745.13.)"""
    fc = FORMATS[spec.compute]
    edge = _exact_edges(fc)[2]
    assert abs(edge - fc.exp_underflow) < 1e-12 * abs(edge)
    lo, up = _around(edge, spec.dtype)
    assert mpmath.mpf(float(lo)) < edge < mpmath.mpf(float(up))  # exp(lo) < sub/2 (rounds to 0), exp(up) > sub/2 (rounds to sub)
    with np.errstate(all="ignore"):
        y = spec(np.full(3, lo, spec.dtype))
    assert np.isnan(y).all(), (lo, y)
    y = spec(np.full(4, up, spec.dtype))
    assert (y == np.array(0.25, spec.dtype)).all(), (up, y)
    assert (get_kernel("shifted", spec.dtype, spec.compute)(np.full(3, lo, spec.dtype)) > 0).all()


@pytest.mark.parametrize("spec", NAIVE, ids=lambda k: k.id)
def test_no_hidden_shift(spec):
    """A row whose maximum is far below 0 but whose terms still exist: the naive kernel works with
    tiny exp values (no shift). Below the edge, one entry lifted above it takes all the mass."""
    fc = FORMATS[spec.compute]
    lo = _around(_exact_edges(fc)[2], spec.dtype)[0]
    up = _around(_exact_edges(fc)[2] + 1, spec.dtype)[1]
    y = spec(np.array([lo, up, lo], spec.dtype))
    assert y.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("spec", [k for k in NAIVE if FORMATS[k.dtype.name].has_inf], ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_special_values(spec):
    """What the operations give (kernels/naive.py docstring): NaN anywhere -> NaN row; +inf
    entries -> inf/inf = NaN there, finite/inf = 0 elsewhere; -inf entries -> 0; a row of only
    -inf -> 0/0 = NaN."""
    dt = spec.dtype
    inf, nan = np.inf, np.nan
    with np.errstate(all="ignore"):
        assert np.isnan(spec(np.array([0.0, nan, 1.0], dt))).all()
        y = spec(np.array([0.0, inf, 1.0], dt))
        assert y[0] == 0 and np.isnan(y[1]) and y[2] == 0
        assert np.isnan(spec(np.array([-inf, -inf], dt))).all()
        y = spec(np.array([-inf, 0.0, -inf, 0.0], dt))
    assert y.tolist() == [0.0, 0.5, 0.0, 0.5]
