"""The summation order the kernels document (kernels/arith.py) is the one that runs, bit for bit,
and arith.sum_depth (the k of the gamma_k bound the error analysis uses) is its true depth."""
from __future__ import annotations

import numpy as np
import pytest

from softmax_bench.jit import call_from_python
from softmax_bench.kernels.arith import BLOCK, COMPUTE_MARKERS, LANES, lanesum, sum_depth
from softmax_bench.kernels.passes import exp_sum

TREE = [(0, 8), (4, 12), (2, 10), (6, 14), (1, 9), (5, 13), (3, 11), (7, 15)]


def _tree(lanes, add):
    """((a0+a8)+(a4+a12)) + ((a2+a10)+(a6+a14)), then the same for the odd lanes, then both."""
    p = [add(lanes[i], lanes[j]) for i, j in TREE]
    q = [add(p[0], p[1]), add(p[2], p[3]), add(p[4], p[5]), add(p[6], p[7])]
    return add(add(q[0], q[1]), add(q[2], q[3]))


def _block_order(e, zero, add):
    """The documented block sum: 16 lanes (term 16 t + j to lane j, recursively from zero), the
    tree, then the leftovers one by one."""
    q = len(e) // LANES
    lanes = [zero] * LANES
    for t in range(q):
        for j in range(LANES):
            lanes[j] = add(lanes[j], e[t * LANES + j])
    s = _tree(lanes, add)
    for v in e[q * LANES :]:
        s = add(s, v)
    return s


def _row_order(e, zero, add):
    s = zero
    for lo in range(0, len(e), BLOCK):
        s = add(s, _block_order(e[lo : lo + BLOCK], zero, add))
    return s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanesum_is_the_documented_order(dtype):
    rng = np.random.default_rng(11)
    for n in list(range(0, 70)) + [255, 256, 257, 1000, BLOCK]:
        # values of very different sizes, so that any other order gives other bits
        e = (rng.random(n) * 10.0 ** rng.integers(-8, 8, n)).astype(dtype)
        want = _block_order(list(e), dtype(0), lambda a, b: dtype(a + b))
        got = call_from_python(lanesum, e, dtype(0))
        assert np.array(got, dtype).tobytes() == np.array(want, dtype).tobytes(), n


@pytest.mark.parametrize("compute, dtype", [("float32", np.float32), ("float64", np.float64)])
def test_row_sum_is_the_documented_order(compute, dtype):
    """exp_sum on a multi-block row: its sum equals the documented order applied to the very
    exponentials it stored."""
    rng = np.random.default_rng(12)
    c = COMPUTE_MARKERS[compute]
    for n in (1, 17, BLOCK - 1, BLOCK, 3 * BLOCK + 100):
        x = rng.normal(0, 6, n).astype(dtype)
        out = np.empty_like(x)
        s = call_from_python(exp_sum, x, x.max(), None, out, np.zeros(0, dtype), c)  # (scratch: out)
        want = _row_order(list(out), dtype(0), lambda a, b: dtype(a + b))
        assert np.array(s, dtype).tobytes() == np.array(want, dtype).tobytes(), n


def _depth(n, compute):
    """Largest number of rounded additions on any term's path, by running the order on
    (term -> depth) maps; adding to an exact zero (an empty map) costs nothing."""
    if compute == "float16":
        return max(n - 1, 0)

    def add(a, b):
        if not a:
            return b
        if not b:
            return a
        return {k: v + 1 for k, v in {**a, **b}.items()}

    s = _row_order([{i: 0} for i in range(n)], {}, add)
    return max(s.values())


@pytest.mark.parametrize("compute", ["float16", "float32", "float64"])
def test_sum_depth_matches_the_order(compute):
    for n in list(range(1, 40)) + [255, 256, 257, BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + 16, 2 * BLOCK - 1, 3 * BLOCK - 1, 5 * BLOCK + 17]:
        assert sum_depth(n, compute) == _depth(n, compute), n


def test_sum_depth_values():
    assert sum_depth(1, "float32") == 0
    assert sum_depth(16, "float32") == 4
    assert sum_depth(17, "float32") == 5
    assert sum_depth(BLOCK, "float32") == BLOCK // 16 - 1 + 4
    assert sum_depth(10**7, "float32") == BLOCK // 16 - 1 + 4 + (-(-10**7 // BLOCK)) - 1
    assert sum_depth(4096, "float16") == 4095
    assert sum_depth(512, "bfloat16") == 511  # bfloat16 arithmetic sums recursively too
    with pytest.raises(ValueError):
        sum_depth(0, "float32")
    with pytest.raises(ValueError):
        sum_depth(3, "float8_e4m3fn")
