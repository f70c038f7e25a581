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
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError(f"softmax_bench.strategies needs hypothesis: pip install 'softmax-bench[test]' ({err})") from err

from softmax_bench import inputs
from softmax_bench.formats import format_of

__all__ = ["rows", "family_rows", "finite_rows", "values"]

_IEEE_WIDTH = {"float16": 16, "float32": 32, "float64": 64}


def values(dtype="float32"):
    """Any finite value of ``dtype``, as a Python float: hypothesis' floats of that width for
    IEEE float16/32/64 (they favour the hard ones); for bfloat16 and float8, which hypothesis does
    not know, a bit pattern drawn uniformly among the finite ones (every exponent equally likely,
    subnormals and the largest finite included)."""
    fmt = format_of(dtype)
    if fmt.name in _IEEE_WIDTH:
        return st.floats(width=_IEEE_WIDTH[fmt.name], allow_nan=False, allow_infinity=False)
    with np.errstate(invalid="ignore"):  # NaN bit patterns cast to NaN, dropped below
        every = fmt.all_values().astype(np.float64)
    return st.sampled_from(sorted(set(every[np.isfinite(every)].tolist())))


def finite_rows(dtype="float32", min_size: int = 1, max_size: int = 64, masked: bool = False):
    """1-D rows of any finite values of ``dtype`` (every value exactly representable), including
    subnormals and the largest finite; ``masked=True`` also draws ``-inf`` entries (at least one
    finite entry stays)."""
    fmt = format_of(dtype)
    values_ = values(fmt)
    if masked:
        values_ = st.one_of(values_, values_, values_, st.just(-np.inf))
    row = st.lists(values_, min_size=min_size, max_size=max_size).map(
        lambda v: np.array(v, dtype=np.float64).astype(fmt.dtype))
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
