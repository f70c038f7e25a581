"""The seed properties checked on every kernel (softmax_bench.properties), with hypothesis.

Rows are drawn on a dyadic grid (properties.grid: multiples of 1/16, of 1/2 in float8; |x| <= 2)
so that shifts by integers, sums and small integer multiples are exact in the storage format; the tolerances come from the
kernel's a-priori bound (softmax_bench.bounds), never tuned. A check inside the bound's domain
must hold; naive rows past the overflow edge must come out as ``predicted_failure`` and really
fail, not be skipped."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from softmax_bench import properties as P
from softmax_bench.bounds import kernel_constants
from softmax_bench.kernels import get_kernel, list_kernels

#: the seed properties are properties of softmax
KERNELS = list_kernels(function="softmax")

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def grid_rows(min_n=2, max_n=8):
    return st.lists(st.integers(-32, 32), min_size=min_n, max_size=max_n).map(
        lambda v: np.array(v, dtype=np.float64) / 16.0)


def holds(check):
    assert check.status == "holds", check
    assert check.ratio <= 1


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@SETTINGS
@given(x=grid_rows(), c=st.integers(-6, 6))
def test_shift_invariance(spec, x, c):
    largest = P.grid(spec.dtype)[1]
    holds(P.shift_invariance(spec, P.on_grid(x, spec.dtype), float(np.clip(c, -largest, largest))))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@SETTINGS
@given(x=grid_rows())
def test_inverse(spec, x):
    holds(P.inverse(spec, P.on_grid(x, spec.dtype)))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@SETTINGS
@given(data=st.data(), coeffs=st.sampled_from([(1, 1), (1, -1), (2,), (3,), (-1,), (1, 1, -1)]))
def test_superposition_and_scaling(spec, data, coeffs):
    n = data.draw(st.integers(2, 6))
    xs = [P.on_grid(data.draw(grid_rows(n, n)), spec.dtype) for _ in coeffs]
    t = sum(a * v for a, v in zip(coeffs, xs))
    assume(np.array_equal(t.astype(spec.dtype).astype(np.float64), t))  # float8: 3x, x + y - z
    holds(P.power_superposition(spec, xs, coeffs))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@SETTINGS
@given(x=grid_rows(), a=st.sampled_from([1e4, -1e4, 2.0**-60, -(2.0**-60)]))
def test_sharpness_limits(spec, x, a):
    """5a (a -> +inf: one-hot, ties -> 1/k), 5b (a -> 0: uniform), 5c (a -> -inf: softmin)."""
    check = P.sharpness_limit(spec, P.on_grid(x, spec.dtype), a)
    if not kernel_constants(spec).shifted and abs(a) > 1:
        # a x reaches up to +-2e4: naive may be past its exp edges
        assert check.status in ("predicted_failure", "holds"), check
        if check.status == "predicted_failure":
            assert check.detail["reasons"][0] in ("overflow", "underflow")
            return
    holds(check)
    if abs(a) > 1:
        assert "one-hot" in check.detail["limit"]


def test_ties_tend_to_one_over_k():
    x = np.array([1.0, 0.5, 1.0, -1.0, 1.0])
    for spec in [get_kernel("shifted", d) for d in ("float16", "float32", "float64")]:
        check = P.sharpness_limit(spec, x, 1e4)
        holds(check)
        assert check.detail["limit"] == "one-hot on 3 maxima"
        y = spec(np.asarray(1e4 * x, dtype=spec.dtype)).astype(np.float64)
        assert abs(y[0] - 1 / 3) <= 1e-3 and y[1] == 0


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@SETTINGS
@given(z1=st.integers(-64, 64), z2=st.integers(-64, 64))
def test_two_classes_is_logistic(spec, z1, z2):
    check = P.logistic(spec, z1 / 8.0, z2 / 8.0)
    holds(check)


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(x=grid_rows(2, 5))
def test_jacobian_from_kernel_outputs(spec, x):
    holds(P.jacobian(spec, P.on_grid(x, spec.dtype)))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_past_the_overflow_edge_is_reported_not_skipped(spec):
    """Shift invariance at c = 1024 (float8: 128): naive is past every compute format's exp
    overflow edge, so the check reports a predicted failure and the kernel really fails; shifted
    holds."""
    check = P.shift_invariance(spec, *P.past_the_edge(spec.dtype))
    if not kernel_constants(spec).shifted:
        assert check.status == "predicted_failure" and check.detail["reasons"] == ["overflow"]
        assert check.detail["failed"] == [True]
    else:
        holds(check)


def test_check_all_has_no_violation():
    rng = np.random.default_rng(1)
    for spec in KERNELS:
        results = P.check_all(spec, rng, rows=2)
        assert all(r.ok for r in results), [r for r in results if not r.ok]
        assert {r.property for r in results} == set(P.ALL)
