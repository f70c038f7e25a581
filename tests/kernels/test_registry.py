"""The kernel registry (one table, stable ids) and numba's on-disk cache across processes."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from softmax_bench.jit import CompiledCallersOnly
from softmax_bench.kernels import KERNELS, KernelSpec, get_kernel, list_kernels
from softmax_bench.kernels.registry import FUNCTIONS, MODES

ALGORITHMS = {"softmax": ("naive", "shifted", "shifted_log1p", "division_free", "division_free_log1p",
                          "online", "two_pass"),
              "log_softmax": ("naive", "shifted", "shifted_log1p"),
              "logsumexp": ("naive", "shifted", "shifted_log1p"),
              "softmax_vjp": ("shifted",)}
EXPECTED_IDS = {
    f"{f}/{a}/{s}@{c}"
    for f, algorithms in ALGORITHMS.items()
    for a in algorithms
    for s, c in [
        ("float16", "float16"),
        ("float16", "float32"),
        ("bfloat16", "bfloat16"),
        ("bfloat16", "float32"),
        ("float8_e4m3fn", "float32"),
        ("float8_e5m2", "float32"),
        ("float32", "float32"),
        ("float32", "float64"),
        ("float64", "float64"),
    ]
}


def test_ids_are_stable_and_unique():
    ids = [k.id for k in KERNELS]
    assert len(ids) == len(set(ids))
    assert set(ids) == EXPECTED_IDS
    assert len(KERNELS) == sum(len(a) for a in FUNCTIONS.values()) * len(MODES)
    for k in KERNELS:
        assert isinstance(k, KernelSpec)
        assert k.id == f"{k.function}/{k.algorithm}/{k.dtype.name}@{k.compute}"
        assert k.reduces == (k.function == "logsumexp")
        assert k.options == (() if k.function == "softmax_vjp" else k.options)


def test_get_kernel_defaults_and_spellings():
    assert get_kernel("shifted", "float32").id == "softmax/shifted/float32@float32"
    assert get_kernel("shifted", np.float16).id == "softmax/shifted/float16@float16"
    assert get_kernel("naive", np.dtype("float64")).id == "softmax/naive/float64@float64"
    assert get_kernel("shifted", "float16", compute="float32").id == "softmax/shifted/float16@float32"
    assert get_kernel("shifted", np.float32, np.float64).id == "softmax/shifted/float32@float64"
    assert (get_kernel("shifted_log1p", "bfloat16", "float32", function="log_softmax").id
            == "log_softmax/shifted_log1p/bfloat16@float32")


@pytest.mark.parametrize(
    "args",
    [("blocked", "float32"), ("online", "float32", None, "logsumexp"), ("shifted", "int32"), ("shifted", "float64", "float32"),
     ("shifted", "float32", "float16"), ("shifted", "nonsense"),
     ("online", "float32", None, "softmax_vjp"), ("shifted", "float32", None, "softmin")],
)
def test_get_kernel_unknown(args):
    with pytest.raises(KeyError):
        get_kernel(*args)


def test_list_kernels_filters():
    assert len(list_kernels()) == len(KERNELS)
    assert {k.id for k in list_kernels("naive", function="softmax")} == {
        i for i in EXPECTED_IDS if i.startswith("softmax/naive/")}
    assert {k.id for k in list_kernels(dtype="float16", function="logsumexp")} == {
        f"logsumexp/{a}/float16@{c}" for a in ("naive", "shifted", "shifted_log1p")
        for c in ("float16", "float32")
    }
    assert [k.id for k in list_kernels("shifted", np.float32, "float64", "softmax")] == [
        "softmax/shifted/float32@float64"]
    assert [k.id for k in list_kernels("shifted", "bfloat16", function="log_softmax")] == [
        "log_softmax/shifted/bfloat16@bfloat16", "log_softmax/shifted/bfloat16@float32"]


def test_spec_is_callable_and_fn_is_the_plain_function():
    k = get_kernel("shifted", "float64")
    x = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(k(x), k.fn(x))
    assert k.fn.__doc__ and "softmax/shifted/float64@float64" in k.fn.__doc__
    # spec(...) is fn itself (no forwarding layer): every way of passing the arguments, and
    # fn's signature for introspection (inspect, mock.create_autospec)
    out = np.empty(3)
    assert k(x, -1, out) is out and k(x, axis=0, out=out) is out and k.__call__ is k.fn
    assert str(inspect.signature(k)) == "(x, axis=-1, out=None)"
    vjp = get_kernel("shifted", "float64", function="softmax_vjp")
    assert str(inspect.signature(vjp)) == "(x, g, axis=-1, out=None)"
    assert np.array_equal(vjp(x, x), vjp.fn(x, x))


def test_the_rows_functions_api_calls_from_python_have_python_wrappers():
    """A kernel's helpers are compiled for numba callers only (arith.kernel_jit), its rows
    functions, which api.py calls from Python, with numba's wrappers (arith.kernel_entry_jit)."""
    for k in KERNELS:
        for rows in (k.rows, k.split_rows):
            assert rows is None or not isinstance(rows, CompiledCallersOnly), (k.id, rows)


def test_compiled_kernels_are_cached_across_processes(tmp_path):
    """cache=True works for the mode-generic kernels: a fresh process loads every specialisation
    it needs from disk (no compilation). The first process may compile (and write the cache)."""
    code = textwrap.dedent(
        """
        import json, numpy as np
        from softmax_bench.kernels import get_kernel
        k = get_kernel("shifted", "float16", "float32")
        k(np.zeros((3, 7), np.float16))
        s = k.rows.stats
        print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}))
        """
    )
    env = {key: v for key, v in os.environ.items() if key != "NUMBA_DISABLE_JIT"}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
            cwd=tmp_path,  # not the repo root, whose source folders would shadow the installed package
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.strip().splitlines()[-1])
    import json

    second = json.loads(runs[1])
    assert second == {"hits": 1, "misses": 0}, runs


def test_every_kernel_folder_is_installed():
    """Each function folder of kernels/ is a package of pyproject.toml, or a plain
    ``pip install .`` (CI's first step) would lack it while an editable install hides that."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent.name for p in (root / "kernels").glob("*/__init__.py")}
    for name in folders:
        assert f"softmax_bench.kernels.{name}" in config["packages"], name
        assert config["package-dir"].get(f"softmax_bench.kernels.{name}") == f"kernels/{name}", name
