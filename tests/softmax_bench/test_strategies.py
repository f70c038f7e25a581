"""softmax_bench.strategies: rows exactly in the format, hard families included."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from softmax_bench import inputs, strategies


@settings(max_examples=200)
@given(st.sampled_from(["float16", "float32", "float64"]).flatmap(
    lambda d: st.tuples(st.just(d), strategies.rows(d, min_size=2, max_size=9))))
def test_rows_are_in_the_format_and_the_size_range(dtype_and_row):
    dtype, x = dtype_and_row
    assert x.dtype == dtype and x.ndim == 1 and 2 <= x.size <= 9
    assert not np.isnan(x).any()


@given(strategies.finite_rows("float16", masked=True))
def test_masked_rows_keep_a_finite_entry(x):
    assert np.isfinite(x).any() and not np.isposinf(x).any()


@settings(max_examples=300)
@given(strategies.family_rows("float32", max_size=5))
def test_family_rows_are_rows_of_the_families(x):
    assert x.dtype == np.float32 and 1 <= x.size <= 5


def test_every_family_of_any_size_is_drawn():
    seen = set()

    @settings(max_examples=400, database=None)
    @given(st.data())
    def draw(data):
        family = data.draw(st.sampled_from([f.name for f in inputs.FAMILIES.values() if f.sizes is None]))
        row = data.draw(strategies.family_rows("float64", [family], max_size=4))
        assert row.dtype == np.float64
        seen.add(family)

    draw()
    assert seen == {f.name for f in inputs.FAMILIES.values() if f.sizes is None}
