"""hypothesis strategies for softmax inputs: rows exactly representable in a format, with the hard
cases mixed in (the audit's families: exp's overflow and underflow edges, ties, -inf masks, +inf,
temperature sweeps), to search for the rows your implementation gets most wrong::

    from hypothesis import given, target
    from softmax_bench import strategies
    from softmax_bench.testing import ulp_errors

    @given(strategies.rows("float32", max_size=64))
    def test_my_softmax(x):
        err = ulp_errors(my_softmax, x).max()
        target(float(err))          # steer the search toward larger errors
        assert err <= 4

Needs hypothesis (``pip install 'softmax-bench[test]'``).
"""
from __future__ import annotations

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError(f"softmax_bench.strategies needs hypothesis: pip install 'softmax-bench[test]' ({err})") from err

from softmax_bench import inputs
from softmax_bench.formats import format_of

__all__ = ["rows", "family_rows", "finite_rows"]


def finite_rows(dtype="float32", min_size: int = 1, max_size: int = 64, masked: bool = False):
    """1-D rows of any finite values of ``dtype`` (every value exactly representable), including
    subnormals and the largest finite; ``masked=True`` also draws ``-inf`` entries (at least one
    finite entry stays)."""
    fmt = format_of(dtype)
    width = fmt.dtype.itemsize * 8
    values = st.floats(width=width, allow_nan=False, allow_infinity=False)
    if masked:
        values = st.one_of(values, values, values, st.just(-np.inf))
    row = hnp.arrays(fmt.dtype, st.integers(min_size, max_size), elements=values)
    return row.filter(lambda x: np.isfinite(x).any()) if masked else row


def family_rows(dtype="float32", families=None, min_size: int = 1, max_size: int = 64):
    """One row of an audit input family (default: every family of any size), drawn with a seed
    that hypothesis chooses and shrinks."""
    names = list(families or [f.name for f in inputs.FAMILIES.values() if f.sizes is None])
    fmt = format_of(dtype)
    return st.builds(
        lambda family, n, seed: inputs.make(family, fmt.dtype, 1, n, seed=seed)[0],
        st.sampled_from(names), st.integers(min_size, max_size), st.integers(0, 2**32 - 1),
    )


def rows(dtype="float32", min_size: int = 1, max_size: int = 64):
    """Either: any finite row, a row with ``-inf`` masks, or a row of a hard family."""
    return st.one_of(
        finite_rows(dtype, min_size, max_size),
        finite_rows(dtype, min_size, max_size, masked=True),
        family_rows(dtype, None, min_size, max_size),
    )
