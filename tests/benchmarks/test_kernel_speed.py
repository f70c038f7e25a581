"""pytest-benchmark micro-benchmarks: every registered kernel (and the numpy/scipy/torch peers) at a
few sizes, with the max ULP error of the benchmarked call against the correctly rounded reference
in ``benchmark.extra_info``.

Skipped in the normal test run (``--benchmark-skip`` in pyproject's addopts). Run and save JSON::

    pytest tests/benchmarks --benchmark-only --benchmark-json results/pytest-benchmark/kernels.json

CI runs them once with ``--benchmark-disable`` (each body runs once, untimed) so they cannot rot.
The tests assert only that every output is finite (the error budgets are checked in
tests/kernels); speed is never asserted.
"""
from __future__ import annotations

import numpy as np
import pytest

from softmax_bench import reference
from softmax_bench.formats import ulp_error
from softmax_bench.kernels import list_kernels

#: (label, shape): two single rows and one batch. Small enough that the reference for every
#: (dtype, shape) costs about 4 s in all (about 57,000 elements/s), computed once per session.
SHAPES = {"1000": (1000,), "30000": (30_000,), "128x256": (128, 256)}
KERNELS = {k.id: k for k in list_kernels() if k.function != "softmax_vjp"}  # one operand
PEERS = ("numpy", "scipy", "torch")


@pytest.fixture(scope="module")
def case():
    """(dtype, shape label, function) -> (x, the correctly rounded function of x); computed on
    first use."""
    cache: dict = {}

    def get(dtype: str, label: str, function: str = "softmax"):
        if (dtype, label, function) not in cache:
            x = np.random.default_rng(0).standard_normal(SHAPES[label]).astype(dtype)
            cache[(dtype, label, function)] = (x, getattr(reference, function)(x))
        return cache[(dtype, label, function)]

    return get


def _record(benchmark, y, exact, x):
    err = ulp_error(y, exact)
    finite = np.isfinite(y)
    benchmark.extra_info["max_ulp"] = float(err[finite].max()) if finite.any() else None
    benchmark.extra_info["mean_ulp"] = float(err[finite].mean()) if finite.any() else None
    benchmark.extra_info["nonfinite_outputs"] = int((~finite).sum())
    benchmark.extra_info["elements"] = int(x.size)
    assert finite.all()  # N(0, 1) inputs: every implementation must stay finite here


@pytest.mark.parametrize("label", list(SHAPES))
@pytest.mark.parametrize("kid", list(KERNELS))
def test_kernel(benchmark, case, kid, label):
    spec = KERNELS[kid]
    x, exact = case(spec.dtype.name, label, spec.function)
    spec(x)  # numba compiles (or loads its cache) outside the timing
    benchmark.group = f"{spec.dtype.name} {label}"
    benchmark.extra_info["kernel"] = kid
    y = benchmark(spec.fn, x)
    _record(benchmark, y, exact, x)  # no ULP bound: binary16 arithmetic is far off at 30000


def _peer(name: str, x: np.ndarray):
    if name == "numpy":
        def f():
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return f
    if name == "scipy":
        special = pytest.importorskip("scipy.special")
        return lambda: special.softmax(x, axis=-1)
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    tx = torch.from_numpy(x)
    return lambda: torch.softmax(tx, -1).numpy()


@pytest.mark.parametrize("label", list(SHAPES))
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", PEERS)
def test_peer(benchmark, case, name, dtype, label):
    x, exact = case(dtype, label)
    f = _peer(name, x)
    try:
        f()
    except (TypeError, RuntimeError) as err:
        pytest.skip(f"{name} does not take {dtype}: {err}")
    benchmark.group = f"{dtype} {label}"
    benchmark.extra_info["peer"] = name
    y = np.asarray(benchmark(f))
    _record(benchmark, y, exact, x)
