"""softmax_bench/reference_fuzz.py: every row shape in every format is exact in that format, and
a short run finds phase 1 equal to phase 2 on every row it decides (the long runs are
``softmax-bench reference --fuzz``)."""
import numpy as np
import pytest

from softmax_bench import reference_fuzz
from softmax_bench.formats import FORMATS


@pytest.mark.parametrize("dtype", list(FORMATS))
def test_shapes_are_exact_in_the_format(dtype):
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(0)
    for shape in reference_fuzz.ROW_SHAPES:
        x = reference_fuzz.rows(rng, shape, 8, 5, fmt)
        assert np.array_equal(x.astype(fmt.dtype).astype(np.float64), x, equal_nan=True), shape
        assert not np.isnan(x).any() and np.isfinite(x).any(axis=1).all(), shape
        for g_shape in reference_fuzz.COTANGENT_SHAPES:
            g = reference_fuzz.cotangents(rng, g_shape, x, fmt)
            assert np.array_equal(g.astype(fmt.dtype).astype(np.float64), g), g_shape


def test_a_short_run_finds_no_mismatch():
    data = reference_fuzz.run(["float64", "bfloat16"], 48, seed=3)
    assert len(data["records"]) == 2 * len(reference_fuzz.FUNCTIONS)
    for r in data["records"]:
        assert r["mismatches"] == 0, r["examples"]
        assert r["decided"] + r["phase2"] == r["rows"] >= 48
    assert "| vjp | float64 |" in reference_fuzz.format_table(data)
