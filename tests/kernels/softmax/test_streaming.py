"""The online and two-pass kernels (kernels/softmax/streaming.py): online equals shifted on rows of
one block, the result never depends on the schedule, the two-pass domain falls back to online,
special values, and long rows (several blocks, maxima overtaken) within the bound."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from softmax_bench.bounds import element_bounds, reference_of
from softmax_bench.formats import format_of, ulp_error
from softmax_bench.jit import call_from_python
from softmax_bench.kernels import get_kernel, list_kernels
from softmax_bench.kernels.api import numba_view
from softmax_bench.kernels.arith import BLOCK, COMPUTE_MARKERS
from softmax_bench.kernels.softmax.streaming import streamed_range
from softmax_bench.kernels.passes import PARALLEL_MIN, SPLIT_MIN, splits

ONLINE = list_kernels("online", function="softmax")
TWO_PASS = list_kernels("two_pass", function="softmax")
STREAMING = ONLINE + TWO_PASS


def bits(a):
    return a.view(np.uint8)


def rising_rows(dtype, rows, n, seed=0):
    """Rows whose block maxima keep growing (every block overtakes the running maximum: a move
    per block), with noise of spread 4."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, n)) * 4 + np.linspace(-20, 20, n)).astype(format_of(dtype).dtype)


def streamed(spec, x):
    """The online passes themselves on every row of ``x`` (the kernel hands rows of one block to
    shifted's rows function)."""
    view = numba_view(spec.dtype)
    out = np.empty_like(x)
    call_from_python(streamed_range, x.view(view), out.view(view), 0, x.shape[0],
                     COMPUTE_MARKERS[spec.compute], None)
    return out


@pytest.mark.parametrize("spec", ONLINE, ids=lambda k: k.id)
def test_online_is_shifted_on_rows_of_one_block(spec):
    """One block combines exactly, so the operations are shifted's (module docstring): the
    online passes give shifted's bits, and so does the kernel (which calls shifted's rows
    function for them)."""
    shifted = get_kernel("shifted", spec.dtype, spec.compute)
    rng = np.random.default_rng(1)
    fmt = format_of(spec.dtype)
    big = np.inf if fmt.has_inf else fmt.max_finite  # e4m3fn: its largest finite
    for n in (1, 2, 7, 100, BLOCK):
        x = (rng.standard_normal((5, n)) * 10).astype(fmt.dtype)
        x[1, :: 3] = -big
        x[2, 0] = np.nan
        x[3, -1] = big
        want = bits(shifted(x))
        assert np.array_equal(bits(streamed(spec, x)), want), n
        assert np.array_equal(bits(spec(x)), want), n
    x = np.full((2, 9), -np.inf if fmt.has_inf else np.nan, fmt.dtype)
    assert np.isnan(spec(x).astype(np.float64)).all()


@pytest.mark.parametrize("spec", STREAMING, ids=lambda k: k.id)
def test_schedule_does_not_change_bits(spec):
    """A long row split across threads (where numba has 2 threads or more), row groups in prange
    and one row on the calling thread give the same bits (the block pairs are combined in block
    order on every path)."""
    n = max(SPLIT_MIN, PARALLEL_MIN) + 3 * BLOCK + 5  # a row that splits (passes.splits)
    assert splits(1, n, 2)
    x = rising_rows(spec.dtype, 1, n)
    many = rising_rows(spec.dtype, 40, 3 * BLOCK + 17, seed=2)
    split, grouped = spec(x), spec(many)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert np.array_equal(bits(spec(x)), bits(split))
        assert np.array_equal(bits(np.stack([spec(r) for r in many])), bits(grouped))
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("spec", TWO_PASS, ids=lambda k: k.id)
def test_two_pass_outside_its_domain_is_online(spec):
    """A row with an entry beyond the extended exp's limit, or +-inf, or NaN, in any block, is
    computed by the online algorithm from its start."""
    online = get_kernel("online", spec.dtype, spec.compute)
    fmt = format_of(spec.dtype)
    x = rising_rows(spec.dtype, 4, 2 * BLOCK + 9, seed=3)
    big = min(fmt.max_finite, 3e4 if fmt.name == "float16" else 2e9)
    x[0, -1] = fmt.dtype.type(big)
    x[1, 5] = -np.inf
    x[2, BLOCK + 1] = np.nan
    x[3, 0] = np.inf
    assert np.array_equal(bits(spec(x)), bits(online(x)))
    if spec.compute == fmt.name:  # (a wider compute's differences may all round away)
        inside = rising_rows(spec.dtype, 1, 2 * BLOCK + 9, seed=3)
        assert not np.array_equal(bits(spec(inside)), bits(online(inside)))


@pytest.mark.parametrize("spec", [k for k in STREAMING if format_of(k.dtype).has_inf], ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_special_values(spec):
    n = 2 * BLOCK + 3
    x = rising_rows(spec.dtype, 4, n, seed=4)
    x[0, 7] = np.nan
    x[1, n - 2] = np.inf
    x[2, :BLOCK] = -np.inf  # a whole block of -inf before the finite ones
    x[3, :] = -np.inf
    y = spec(x).astype(np.float64)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all() and np.isnan(y[3]).all()
    assert (y[2, :BLOCK] == 0).all() and np.isfinite(y[2]).all() and y[2, BLOCK:].any()
    assert abs(y[2].sum() - 1) < 0.05


@pytest.mark.parametrize("spec", STREAMING, ids=lambda k: k.id)
def test_long_rows_within_bound(spec):
    """Rows of several blocks, each overtaking the running maximum (a move per block), element by
    element against the correctly rounded reference within the derived bound."""
    x = rising_rows(spec.dtype, 2, 3 * BLOCK + 11, seed=5)
    got, ref = spec(x), reference_of(spec)(x)
    b = element_bounds(spec, x, ref)
    assert b.in_domain.all()
    assert (ulp_error(got, ref) <= b.ulp_bound).all()


def test_float16_arithmetic_online_sum_overflows_and_the_bound_says_so():
    """float16 arithmetic: shifted's recursive sum stalls at 2048, but online adds block sums of
    up to 2048 each, so 32 blocks of equal entries reach 65536 = inf and every output is 0; the
    bound's domain reports the row as overflow instead of bounding it."""
    spec = get_kernel("online", "float16", "float16")
    x = np.zeros((1, 32 * BLOCK), np.float16)
    assert (spec(x) == 0).all()
    b = element_bounds(spec, x)
    assert not b.in_domain[0] and b.reason[0] == "overflow"
