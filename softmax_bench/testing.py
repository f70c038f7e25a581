"""Accuracy assertions for your own test suite, as ``numpy.testing.assert_array_max_ulp`` is for
arrays, judged by the audit's correctly rounded reference and its input families::

    from softmax_bench.testing import assert_softmax_accurate, ulp_errors

    def test_my_softmax():
        assert_softmax_accurate(my_softmax, "float32", max_ulp=4)

:func:`assert_softmax_accurate` raises an ``AssertionError`` whose message reproduces the worst
row: family, seed, n, row index, the input's bits, what came out, what was due, the ULP error,
and the line of Python that rebuilds the input. The function runs in the test's own process (no
isolation: it is your code, under your test runner).
"""
from __future__ import annotations

import numpy as np

from softmax_bench import inputs
from softmax_bench.formats import format_of, ulp_error

__all__ = ["assert_softmax_accurate", "ulp_errors", "DEFAULT_TEST_FAMILIES"]

#: Every family of any size: ordinary rows and the hard ones (edges, ties, masks, +inf, sweeps).
DEFAULT_TEST_FAMILIES = tuple(f.name for f in inputs.FAMILIES.values() if f.sizes is None)


def _measure(fn, x):
    from softmax_bench import reference

    x = np.asarray(x)
    with np.errstate(all="ignore"):
        y = np.asarray(fn(x.copy()))
    if y.shape != x.shape or y.dtype != x.dtype:
        raise AssertionError(f"softmax of a {x.dtype.name} array of shape {x.shape} returned a "
                             f"{y.dtype.name} array of shape {y.shape}")
    exact = reference.softmax(x)
    return y, exact, ulp_error(y, exact)


def ulp_errors(fn, x) -> np.ndarray:
    """Per-element error of ``fn(x)`` (softmax along the last axis) in ULPs of ``x``'s format,
    against the correctly rounded reference: 0 where both are NaN; inf for a NaN or infinity where
    the reference is a number, or a number where the reference is NaN (rows with +inf inputs).
    ``fn`` gets a copy of ``x``; a result of another shape or dtype raises AssertionError."""
    return _measure(fn, x)[2]


def _bits(row: np.ndarray, limit: int = 12) -> str:
    width = np.dtype(row.dtype).itemsize * 8
    shown = ", ".join(f"0x{int(b):0{width // 4}x}" for b in row.view(f"u{width // 8}")[:limit])
    return f"[{shown}{', ...' if row.size > limit else ''}]"


def _values(row: np.ndarray, limit: int = 8) -> str:
    text = np.array2string(row[:limit], precision=10, separator=", ", max_line_width=10**6)
    return text + (" ..." if row.size > limit else "")


def assert_softmax_accurate(fn, dtype, max_ulp: float, families=DEFAULT_TEST_FAMILIES,
                            sizes=(1, 2, 10, 100), rows: int = 8, seed: int = 0) -> float:
    """Check ``fn`` (softmax along the last axis) on ``rows`` seeded rows of every family and size,
    in ``dtype``: every element within ``max_ulp`` ULPs of the correctly rounded reference, NaN
    exactly where the reference is NaN. Returns the largest error seen; raises AssertionError
    reproducing the worst row otherwise."""
    fmt = format_of(dtype)
    worst = None
    largest = 0.0
    for family in families:
        for n in sizes:
            x = inputs.make(family, fmt.dtype, rows, n, seed=seed)
            y, exact, err = _measure(fn, x)
            largest = max(largest, float(np.max(err)))
            if np.max(err) > max_ulp and (worst is None or np.max(err) > worst[0]):
                i, j = np.unravel_index(int(np.argmax(err)), err.shape)
                worst = (float(np.max(err)), family, n, int(i), int(j), x[i], y[i], exact[i])
    if worst is None:
        return largest
    err, family, n, i, j, row, got, due = worst
    raise AssertionError(
        f"softmax error {err:.4g} ULP > max_ulp {max_ulp:g} ({fmt.name}), worst at element {j}:\n"
        f"  family {family}, seed {seed}, n {n}, row {i} of {rows}\n"
        f"  input bits {_bits(row)}\n"
        f"  input      {_values(row)}\n"
        f"  got        {_values(got)}  (element {j}: {got[j]!r})\n"
        f"  expected   {_values(due)}  (element {j}: {due[j]!r}, correctly rounded)\n"
        f"  reproduce: x = softmax_bench.inputs.make({family!r}, {fmt.name!r}, rows={rows}, n={n}, "
        f"seed={seed})[{i}]"
    )
