"""Throughput of the reference (a pytest-benchmark, skipped in the normal run; run it with
``pytest --benchmark-only tests/reference/test_throughput.py``). Elements per second go to
``benchmark.extra_info``. Not a timed test: nothing here asserts a speed."""
import numpy as np
import pytest

from softmax_bench import reference as R


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_softmax_throughput(benchmark, dtype):
    x = (np.random.default_rng(0).standard_normal(1000) * 10).astype(dtype)
    y = benchmark.pedantic(R.softmax, args=(x,), rounds=7, iterations=1, warmup_rounds=1)
    assert y.shape == x.shape
    stats = benchmark.stats.stats
    benchmark.extra_info["elements_per_second_median"] = x.size / stats.median
    benchmark.extra_info["elements_per_second_min_max"] = [x.size / stats.max, x.size / stats.min]
