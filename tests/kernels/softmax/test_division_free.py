"""The division-free kernels, y_i = exp(x_i - f): binary16 arithmetic step by step, the edges of
their docstrings, and a distribution for every finite row (the log1p form)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from softmax_bench import strategies
from softmax_bench.kernels import get_kernel, list_kernels

DIVISION_FREE = list_kernels("division_free", function="softmax")
DIVISION_FREE_LOG1P = list_kernels("division_free_log1p", function="softmax")
inf, nan = np.inf, np.nan


def _emulate_half(x: np.ndarray, log1p: bool) -> np.ndarray:
    """Every operation rounded to binary16 by numpy, exp and log rounded once from float64, the
    recursive sum in index order (the first maximum's term counted as 0 for the log1p form)."""
    h = np.float16
    if log1p:
        m = x.max()
        k = int(np.argmax(x))
        s = h(0)
        for i, v in enumerate(x):
            s = h(s + (h(0) if i == k else h(np.exp(np.float64(h(v - m))))))
        f = h(m + h(np.log1p(np.float64(s))))
    else:
        s = h(0)
        for v in x:
            s = h(s + h(np.exp(np.float64(v))))
        f = h(np.log(np.float64(s)))
    return np.array([h(np.exp(np.float64(h(v - f)))) for v in x], np.float16)


@pytest.mark.parametrize("log1p", [False, True])
@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float16, st.integers(1, 40), elements=st.floats(-8, 8, width=16)))
def test_float16_arithmetic_is_stepwise_binary16(log1p, x):
    algorithm = "division_free_log1p" if log1p else "division_free"
    with np.errstate(all="ignore"):
        want = _emulate_half(x, log1p)
    got = get_kernel(algorithm, "float16", "float16")(x)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), (x, got, want)


@pytest.mark.parametrize("spec", DIVISION_FREE_LOG1P, ids=lambda k: k.id)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_log1p_form_gives_finite_outputs_for_finite_rows(spec, data):
    """x_i - f <= 0 (up to the rounding of f): every output finite, in [0, 1 + a few ulps], the
    maximum's non-zero."""
    x = data.draw(strategies.finite_rows(spec.dtype, 1, 32))
    y = spec(x).astype(np.float64)
    assert np.isfinite(y).all() and y[np.argmax(x)] > 0, (x, y)


@pytest.mark.parametrize("spec", [k for k in DIVISION_FREE + DIVISION_FREE_LOG1P if k.dtype.name != "float8_e4m3fn"],
                         ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_special_values(spec):
    dt = spec.dtype
    assert np.isnan(spec(np.array([0.0, nan, 1.0], dt))).all()
    y = spec(np.array([-inf, 0.0, -inf, 0.0], dt))
    assert y[0] == 0 and y[2] == 0 and y[1] == y[3] > 0
    if spec.algorithm == "division_free_log1p":
        assert np.array_equal(spec(np.array([0.0, inf], dt)), [0.0, nan], equal_nan=True)
        assert np.isnan(spec(np.array([-inf, -inf], dt))).all()
    else:  # the naive logsumexp overflows (exp of the largest finite overflows every compute
        # format): f = inf and every exp(x_i - inf) = 0, the all-zero row
        from softmax_bench.formats import format_of

        big = np.array([0.0, format_of(dt).max_finite], np.float64).astype(dt)
        assert (spec(big) == 0).all()
