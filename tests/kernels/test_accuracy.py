"""Every registered kernel (every function) against the correctly rounded mpmath reference of its
function, element by element, within the a-priori ULP budget of conftest.ulp_budget (derived there from the operations and the
summation order the kernels run; not fitted to observed errors)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_bench import strategies
from softmax_bench.bounds import reference_of
from softmax_bench.formats import format_of, ulp_error
from softmax_bench.functions import GRADIENTS
from softmax_bench.kernels import KERNELS

#: kernels of one operand (the backward pass: tests/kernels/softmax_vjp)
KERNELS = [k for k in KERNELS if k.function not in GRADIENTS]

SETTINGS = settings(
    max_examples=40,
    deadline=None,  # the first call of a kernel may compile it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # a fixed, reproducible sample (CI and local runs see the same rows)
)

#: naive: inputs kept where no exp overflows or underflows and the sum of up to 16 terms stays
#: finite in the compute format (float16: 16 e^8 = 47,697 < 65,504), the regime its bound covers.
#: bfloat16 has float32's exponent range.
NAIVE_LIMIT = {"float16": 8.0, "bfloat16": 40.0, "float32": 40.0, "float64": 300.0}


def _finite(dtype):
    """Finite values of ``dtype`` (hypothesis' IEEE widths; every finite bfloat16 and float8 bit
    pattern alike): :func:`softmax_bench.strategies.values`."""
    return strategies.values(dtype)


@st.composite
def shifted_rows(draw, dtype):
    """Rows that exercise the shifted kernel: a centre anywhere in the finite range and offsets
    of a random spread (from ties to the whole range)."""
    fmt = format_of(dtype)
    dtype = fmt.dtype
    n = draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["narrow", "medium", "wide", "anything"]))
    if kind == "anything":
        vals = draw(st.lists(_finite(dtype), min_size=n, max_size=n))
        return np.array(vals, dtype=np.float64).astype(dtype)
    centre = draw(_finite(dtype))
    spread = {"narrow": 1.0, "medium": 30.0, "wide": 1000.0}[kind]
    offs = draw(st.lists(st.floats(-spread, spread), min_size=n, max_size=n))
    with np.errstate(over="ignore"):
        row = (np.float64(centre) + np.array(offs)).clip(-fmt.max_finite, fmt.max_finite)
    return row.astype(dtype)


@st.composite
def naive_rows(draw, dtype, compute):
    n = draw(st.integers(1, 16))
    lim = NAIVE_LIMIT[compute]
    vals = draw(st.lists(st.floats(-lim, lim), min_size=n, max_size=n))
    return np.array(vals, dtype=np.float64).astype(format_of(dtype).dtype)


def _check_row(spec, row, budget):
    got = spec(row)
    ref = reference_of(spec)(row)
    assert got.dtype == row.dtype and got.shape == ref.shape
    err = ulp_error(got, ref).reshape(-1)
    bound = budget(spec, row, ref)
    bad = err > bound
    assert not bad.any(), (
        f"{spec.id}: row={row.tolist()} got={got.tolist()} ref={ref.tolist()} "
        f"ulp_err={err[bad].tolist()} budget={bound[bad].tolist()}"
    )


#: algorithms without the max shift: their bound's domain stops at exp's overflow edge
UNSHIFTED = ("naive", "division_free")


@pytest.mark.parametrize(
    "spec", [k for k in KERNELS if k.algorithm not in UNSHIFTED], ids=lambda k: k.id
)
@SETTINGS
@given(data=st.data())
def test_shifted_within_budget(spec, data, budget):
    _check_row(spec, data.draw(shifted_rows(spec.dtype)), budget)


@pytest.mark.parametrize(
    "spec", [k for k in KERNELS if k.algorithm in UNSHIFTED], ids=lambda k: k.id
)
@SETTINGS
@given(data=st.data())
def test_naive_within_budget(spec, data, budget):
    _check_row(spec, data.draw(naive_rows(spec.dtype, spec.compute)), budget)


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_fixed_rows_within_budget(spec, budget):
    """A few named rows: ties, one dominant entry, a 64-term row (several lane groups and
    leftovers), small integers."""
    lim = NAIVE_LIMIT[spec.compute]
    rng = np.random.default_rng(20240611)
    rows = [
        np.zeros(7),
        np.array([0.0, -1.0, -2.0, -3.0]),
        np.array([5.0, 0.0, 0.0]),
        rng.uniform(-3, 3, 64),
        rng.uniform(-lim / 2, lim / 2, 37),
        np.arange(-8, 8, dtype=np.float64),
    ]
    for row in rows:
        _check_row(spec, row.astype(spec.dtype), budget)


def test_budget_is_not_vacuous(budget):
    """The budget means something: for short rows of moderate spread it is a few ULPs when the
    compute format is the storage format, and about one ULP (the final rounding plus the
    reference's half ULP) when the compute format is much wider."""
    row = np.array([0.5, -1.25, 2.0, -3.0, 0.0, 1.5, -0.75, 2.5])
    for kid, limit in [
        ("softmax/shifted/float32@float32", 20.0),
        ("softmax/shifted/float64@float64", 20.0),
        ("softmax/shifted/float16@float16", 20.0),
        ("softmax/shifted_log1p/float16@float16", 20.0),
        ("softmax/shifted/float32@float64", 1.5),
        ("softmax/shifted/float16@float32", 1.5),
        ("softmax/naive/float32@float64", 1.5),
        ("logsumexp/shifted/float32@float32", 20.0),
        ("logsumexp/shifted_log1p/float16@float32", 1.5),
        # log_softmax's error is absolute, about (|d_i| + delta + |log S|) u, so in ULPs of a
        # small output (here |y_i| down to 0.45 against |d_i| up to 5.5) it is larger
        ("log_softmax/shifted_log1p/float64@float64", 50.0),
        ("log_softmax/naive/float32@float64", 1.5),
    ]:
        spec = next(k for k in KERNELS if k.id == kid)
        r = row.astype(spec.dtype)
        b = budget(spec, r, reference_of(spec)(r))
        assert np.all(b < limit), (kid, b)
