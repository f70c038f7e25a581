"""The shifted kernels (shifted, and shifted_log1p, which shares its shift): what the shift buys
(no NaN, inf or all-zero row for any finite input, in every format and mode), float16
arithmetic really rounding every operation, and special values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from softmax_bench import strategies
from softmax_bench.formats import format_of
from softmax_bench.kernels import get_kernel, list_kernels

SHIFTED = list_kernels("shifted", function="softmax") + list_kernels("shifted_log1p", function="softmax")


def finite_rows(dtype, max_n=64):
    """Any finite values of ``dtype``, from the smallest subnormals to +-largest finite."""
    return strategies.finite_rows(dtype, 1, max_n)


@pytest.mark.parametrize("spec", SHIFTED, ids=lambda k: k.id)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_finite_input_gives_a_distribution(spec, data):
    """exp(x_i - m) <= 1 never overflows and exp(0) = 1 makes the sum >= 1: every output finite,
    in [0, 1], and the maximum's output is non-zero, whatever the finite input."""
    x = data.draw(finite_rows(spec.dtype))
    y = spec(x)
    assert np.isfinite(y).all(), (x, y)
    assert ((y >= 0) & (y <= 1)).all(), (x, y)
    assert y[np.argmax(x)] > 0, (x, y)
    assert y.any()


@pytest.mark.parametrize("spec", SHIFTED, ids=lambda k: k.id)
def test_extremes_of_the_range(spec):
    """Rows spanning the whole format: +-largest finite, smallest subnormals, zeros."""
    fmt = format_of(spec.dtype)
    tiny = np.array(fmt.smallest_subnormal).astype(spec.dtype)
    big = np.array(fmt.max_finite).astype(spec.dtype)
    rows = [
        np.array([big, -big]),
        np.array([-big, -big, -big]),
        np.array([big, big]),
        np.array([tiny, -tiny, 0, -0.0]),
        np.array([-big, tiny]),
    ]
    for r in rows:
        y = spec(r.astype(spec.dtype))
        assert np.isfinite(y).all() and y.any(), (r, y)
    # ties at the top share the mass exactly
    assert spec(np.array([big, big], spec.dtype)).tolist() == [0.5, 0.5]
    assert spec(np.array([-big, -big, -big, -big], spec.dtype)).tolist() == [0.25] * 4


@pytest.mark.parametrize("algorithm", ["shifted", "naive", "shifted_log1p"])
def test_float16_arithmetic_stalls_at_2048(algorithm):
    """4096 equal inputs: in binary16 arithmetic the recursive sum of ones stops at 2048
    (2048 + 1 rounds back to 2048), so every output is 1/2048; computing in float32 gives the
    right 1/4096."""
    x = np.zeros(4096, np.float16)
    half = get_kernel(algorithm, "float16", "float16")(x)
    single = get_kernel(algorithm, "float16", "float32")(x)
    assert (half == np.float16(1 / 2048)).all()
    assert (single == np.float16(1 / 4096)).all()
    # the stall depends on the order, not on the values: a shifted constant row does the same
    assert (get_kernel("shifted", "float16", "float16")(x + np.float16(3)) == np.float16(1 / 2048)).all()


def _emulate_half(x: np.ndarray, algorithm: str) -> np.ndarray:
    """Softmax with every operation rounded to binary16 by numpy (float16 scalar arithmetic is
    float32 arithmetic rounded to binary16, i.e. correctly rounded), exp rounded once from float64,
    and the recursive sum in index order (shifted_log1p: the first maximum's term counted as 0,
    then 1 + the sum)."""
    shifted = algorithm != "naive"
    m = x.max() if shifted else np.float16(0)
    d = [np.float16(v - m) if shifted else v for v in x]
    e = [np.float16(np.exp(np.float64(v))) for v in d]
    k = int(np.argmax(x)) if algorithm == "shifted_log1p" else -1
    s = np.float16(0)
    for i, v in enumerate(e):
        s = np.float16(s + (np.float16(0) if i == k else v))
    if k >= 0:
        s = np.float16(np.float16(1) + s)
    return np.array([np.float16(v / s) for v in e], np.float16)


@pytest.mark.parametrize("algorithm", ["shifted", "naive", "shifted_log1p"])
@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float16, st.integers(1, 40), elements=st.floats(-8, 8, width=16)),
)
def test_float16_arithmetic_is_stepwise_binary16(algorithm, x):
    """compute="float16" is binary16 arithmetic step by step: bit-identical to numpy float16
    arithmetic with the same operation order (the recursive sum included)."""
    with np.errstate(over="ignore", under="ignore"):
        want = _emulate_half(x, algorithm)
    got = get_kernel(algorithm, "float16", "float16")(x)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), (x, got, want)


@pytest.mark.parametrize("spec", [k for k in SHIFTED if format_of(k.dtype).has_inf], ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_special_values(spec):
    """What the operations give (kernels/softmax/shifted.py docstring): NaN anywhere or +inf anywhere
    -> NaN row (m is NaN / inf - inf; shifted_log1p: one +inf entry gives NaN there, 0 elsewhere); -inf entries with a finite maximum -> exactly 0;
    a row of only -inf -> NaN."""
    dt = spec.dtype
    inf, nan = np.inf, np.nan
    assert np.isnan(spec(np.array([0.0, nan, 1.0], dt))).all()
    assert np.isnan(spec(np.array([nan], dt))).all()
    if spec.algorithm == "shifted":
        assert np.isnan(spec(np.array([0.0, inf, 1.0], dt))).all()
    else:  # the maximum's term exp(inf - inf) = NaN is left out of the sum
        assert np.array_equal(spec(np.array([0.0, inf, 1.0], dt)), [0.0, nan, 0.0], equal_nan=True)
    assert np.isnan(spec(np.array([inf, inf], dt))).all()
    assert np.isnan(spec(np.array([-inf, -inf], dt))).all()
    if spec.algorithm == "shifted":
        assert np.isnan(spec(np.array([-inf, inf], dt))).all()
    y = spec(np.array([-inf, 0.0, -inf, 0.0], dt))
    assert y.tolist() == [0.0, 0.5, 0.0, 0.5]
    # a NaN only spoils its own row
    y = spec(np.array([[0.0, nan], [0.0, 0.0]], dt))
    assert np.isnan(y[0]).all() and y[1].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("spec", SHIFTED, ids=lambda k: k.id)
def test_shift_invariance_on_integer_shifts(spec):
    """S(x + c) = S(x) exactly when every x_i + c and the differences are exact (small integers):
    the kernel only ever sees x_i - m."""
    x = np.array([0.0, -1.0, 3.0, 2.0, -5.0], spec.dtype)
    y = spec(x)
    x64 = x.astype(np.float64)
    exact = [c for c in (1.0, -7.0, 100.0, 1000.0)
             if np.array_equal((x64 + c).astype(spec.dtype).astype(np.float64), x64 + c)]
    assert len(exact) >= 2  # bfloat16's 8 bits lose x + 1000, float8's 3 or 4 lose x + 100 too
    for c in exact:
        assert np.array_equal(spec((x64 + c).astype(spec.dtype)), y)
