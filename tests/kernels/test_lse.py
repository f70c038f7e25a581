"""The log-sum-exp reduction (kernels/lse.py) behind the logsumexp and log_softmax kernels: the
edges each algorithm's docstring states, and its log and log1p against mpmath. (Accuracy against
the reference, within the derived bounds: test_accuracy.py.)"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from softmax_bench.bounds import LOG_ULPS
from softmax_bench.formats import FORMATS, format_of, ulp
from softmax_bench.kernels import get_kernel, list_kernels
from softmax_bench.kernels.arith import COMPUTE_MARKERS, expc, kernel_entry_jit, log1pc, logc
from softmax_bench.kernels.registry import MODES

LSE = list_kernels(function="logsumexp")
LOG_SOFTMAX = list_kernels(function="log_softmax")
inf, nan = np.inf, np.nan


@kernel_entry_jit
def _exps(v, out, c):
    for i in range(v.size):
        out[i] = expc(v[i], c)


@kernel_entry_jit
def _logs(v, out, out1p, c):
    for i in range(v.size):
        out[i] = logc(v[i], c)
        out1p[i] = log1pc(v[i], c)


@pytest.mark.parametrize("compute", ["float16", "bfloat16", "float32", "float64"])
def test_log_and_log1p_within_their_stated_ulps(compute):
    """logc and log1pc against mpmath (120 bits) on values of the compute format from its
    smallest subnormal to its largest finite, and around 1 (where log cancels); the error in ULPs
    of the exact value, in the compute format."""
    fmt = FORMATS[compute]
    rng = np.random.default_rng(11)
    wide = np.exp(rng.uniform(math.log(fmt.smallest_subnormal), math.log(fmt.max_finite), 3000))
    near1 = 1 + rng.uniform(-0.5, 0.5, 1500) * 10.0 ** rng.integers(-12, 0, 1500)
    v = np.concatenate([wide, near1, [1.0, 2.0, 0.5]]).astype(fmt.dtype).astype(np.float64)
    v = v[(v > 0) & np.isfinite(v)]
    value_type = np.float64 if compute == "float64" else np.float32
    got, got1p = np.empty(v.size, value_type), np.empty(v.size, value_type)
    _logs(v.astype(value_type), got, got1p, COMPUTE_MARKERS[compute])
    with mpmath.workprec(120):
        for name, fn, have in (("log", mpmath.log, got), ("log1p", mpmath.log1p, got1p)):
            exact = [fn(mpmath.mpf(t)) for t in v.tolist()]
            unit = ulp(np.array([float(e) for e in exact]), fmt.dtype)
            err = np.array([float(abs(mpmath.mpf(h) - e)) for h, e in zip(have.tolist(), exact)]) / unit
            assert err.max() <= LOG_ULPS[compute], (name, compute, err.max(), v[err.argmax()])


@pytest.mark.parametrize("compute", ["float16", "bfloat16", "float32", "float64"])
def test_exp_of_zero_is_one(compute):
    """The sum lemma of bounds/common.py counts the maximum's term exp(0) as exactly 1."""
    value_type = np.float64 if compute == "float64" else np.float32
    out = np.empty(2, value_type)
    _exps(np.array([0.0, -0.0], value_type), out, COMPUTE_MARKERS[compute])
    assert out.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("spec", [k for k in LSE if format_of(k.dtype).has_inf], ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_logsumexp_special_values(spec):
    """The edges of each algorithm's docstring."""
    dt = spec.dtype
    assert np.isnan(spec(np.array([0.0, nan, 1.0], dt)))
    assert spec(np.array([0.0, 1.0], dt)) == spec(np.array([-inf, 0.0, 1.0, -inf], dt))
    if spec.algorithm == "naive":
        assert spec(np.array([0.0, inf], dt)) == inf
        assert spec(np.array([-inf, -inf], dt)) == -inf
    elif spec.algorithm == "shifted":
        assert np.isnan(spec(np.array([0.0, inf], dt)))
        assert np.isnan(spec(np.array([-inf, -inf], dt)))
    else:  # the maximum's NaN term (inf - inf) is left out: one +inf gives +inf, two give NaN
        assert spec(np.array([0.0, inf], dt)) == inf
        assert np.isnan(spec(np.array([inf, 0.0, inf], dt)))
        assert np.isnan(spec(np.array([-inf, -inf], dt)))
    # one entry: exactly itself (exp(0) = 1, log(1) = 0 / log1p(0) = 0) when shifted
    if spec.algorithm != "naive":
        assert spec(np.array([3.0], dt)) == np.array(3.0, dt)


@pytest.mark.parametrize("spec", [k for k in LOG_SOFTMAX if format_of(k.dtype).has_inf], ids=lambda k: k.id)  # float8_e4m3fn has no infinity: test_float8.py
def test_log_softmax_special_values(spec):
    dt = spec.dtype
    assert np.isnan(spec(np.array([0.0, nan, 1.0], dt))).all()
    y = spec(np.array([-inf, 0.0, -inf, 0.0], dt))
    assert y[0] == -inf and y[2] == -inf and y[1] == y[3] == spec(np.zeros(2, dt))[0]
    if spec.algorithm != "naive":
        assert np.isnan(spec(np.array([0.0, inf], dt))[1])  # inf - inf
        assert np.isnan(spec(np.array([-inf, -inf], dt))).all()
        assert spec(np.array([5.0], dt)).tolist() == [0.0]


@pytest.mark.parametrize("storage, compute", MODES)
def test_naive_edges(storage, compute):
    """Naive overflows where the sum of exponentials does, and its log of an underflowed sum is
    -inf; the shifted forms never do."""
    fc = FORMATS[compute]
    dt = format_of(storage).dtype
    big = np.array([fc.exp_overflow * 1.01, 0.0]).clip(None, format_of(storage).max_finite).astype(dt)
    if big[0] > fc.exp_overflow:
        assert get_kernel("naive", storage, compute, "logsumexp")(big) == inf
        assert (get_kernel("naive", storage, compute, "log_softmax")(big) == -inf).all()
        for alg in ("shifted", "shifted_log1p"):
            assert np.isfinite(get_kernel(alg, storage, compute, "logsumexp")(big))
            assert np.isfinite(get_kernel(alg, storage, compute, "log_softmax")(big)).all()
    low = np.full(3, -fc.exp_overflow * 1.2).clip(-format_of(storage).max_finite).astype(dt)
    if np.exp(np.float64(low[0])) < fc.smallest_subnormal / 2:
        infinite = inf if format_of(storage).has_inf else np.nan  # e4m3fn: an overflow is NaN
        lse = get_kernel("naive", storage, compute, "logsumexp")(low).astype(np.float64)
        assert np.array_equal(lse, -infinite, equal_nan=True)
        ls = get_kernel("naive", storage, compute, "log_softmax")(low).astype(np.float64)
        assert np.array_equal(ls, np.full(3, infinite), equal_nan=True)
        y = get_kernel("shifted_log1p", storage, compute, "log_softmax")(low)
        assert np.isfinite(y).all()
