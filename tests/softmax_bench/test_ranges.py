"""softmax_bench.ranges: bisection on representable values, thresholds against theory, the
failure map, and the ``softmax-bench ranges`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from softmax_bench import ranges
from softmax_bench.cli import main
from softmax_bench.formats import FORMATS
from softmax_bench.kernels import get_kernel, list_kernels


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_keys_are_monotone_and_invertible(dtype):
    vals = np.array([-FORMATS[dtype].max_finite, -1.5, -1e-3, 0.0, 1e-3, 1.0, FORMATS[dtype].max_finite],
                    dtype=dtype)
    keys = [ranges._key(float(v), dtype) for v in vals]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for v, k in zip(vals, keys):
        assert ranges._from_key(k, dtype) == float(v)
    one = ranges._key(1.0, dtype)
    assert ranges._from_key(one + 1, dtype) == float(np.nextafter(np.array(1.0, dtype), np.array(2.0, dtype)))


NAIVE = [k for f in ranges.FUNCTIONS for k in list_kernels("naive", function=f)]


@pytest.mark.parametrize("spec", NAIVE, ids=lambda k: k.id)
def test_naive_thresholds_agree_with_theory(spec):
    """softmax, log_softmax and logsumexp alike: they fail where the sum of exponentials does."""
    fc = FORMATS[spec.compute]
    for shape in ranges.SHAPES:
        for n in ranges.SIZES:
            r = ranges.thresholds(spec, shape, n)
            assert r["overflow_ok"] and r["underflow_ok"], r
            assert r["theory_underflow"] == fc.exp_underflow
            if shape == "one_large":  # the exp edge ln(max_finite + ulp/2), just above ln(max)
                assert abs(r["theory_overflow"] - fc.log_overflow_boundary) < 1e-9
                # ln((2 - 2**-t) / (2 - 2**(1-t))) = ln(1 + 2**-t / (2 - 2**(1-t)))
                #   < 2**-(t+1) / (1 - 2**-t)   (float16 2.44e-4, bfloat16 1.96e-3);
                # +1e-9 as above: the other n - 1 terms move the edge by ~1e-10
                gap = 2.0 ** -(fc.precision + 1) / (1 - 2.0 ** -fc.precision)
                assert abs(r["theory_overflow"] - fc.exp_overflow) < gap + 1e-9
            if spec.dtype.name in ("float32", "float64"):  # storage spacing below 0.01 at the edges (bfloat16: 0.5, float16: 0.008-0.0156)
                assert abs(r["overflow_diff"]) <= 0.01 and abs(r["underflow_diff"]) <= 0.01


def test_named_edges():
    """The seed's table: 11.09 / -17.33, 88.72 / -103.97, 709.78 / -745.13 (one large input)."""
    for dtype, over, under in [("float16", 11.09, -17.33), ("float32", 88.72, -103.97), ("float64", 709.78, -745.13)]:
        r = ranges.thresholds(get_kernel("naive", dtype), "one_large", 2)
        assert abs(r["overflow"] - over) < 0.01 and abs(r["underflow"] - under) < 0.02, r


NEVER = [k for f in ranges.FUNCTIONS for k in list_kernels(function=f) if k.algorithm not in ("naive", "division_free")]


@pytest.mark.parametrize("spec", NEVER, ids=lambda k: k.id)
def test_shifted_never_fails(spec):
    """Every shifted form (shifted, Alg. 4.1's log1p, online, two-pass, division_free_log1p) of
    every function: no threshold, and no failure on a sweep over the whole range."""
    for shape in ranges.SHAPES:
        r = ranges.thresholds(spec, shape, 1000)
        assert r["overflow"] == "never" and r["underflow"] == "never" and not r["sweep_failures"], r
        assert r["overflow_ok"] and r["underflow_ok"]


def test_failure_map_small_grid(tmp_path):
    specs = [get_kernel("naive", "float32"), get_kernel("shifted", "float32")]
    maps = ranges.failure_map(specs, tmp_path, grid=8, n=8)
    assert [m["kernel"] for m in maps] == [s.id for s in specs]
    for m in maps:
        assert (tmp_path / m["png"]).stat().st_size > 1000
        assert sum(m["counts"].values()) == 64 and m["counts"]["beyond bound"] == 0
    naive, shifted = maps
    assert naive["counts"]["NaN/inf"] > 0 and shifted["counts"]["within 2 ULP"] + shifted["counts"]["within bound"] == 64
    logs = [get_kernel("naive", "float32", function="logsumexp"), get_kernel("shifted_log1p", "float32", function="log_softmax")]
    lse, ls = ranges.failure_map(logs, tmp_path, grid=8, n=8)
    assert lse["png"] == "failure_map_logsumexp_naive_float32_at_float32.png"
    assert lse["counts"]["NaN/inf"] > 0 and lse["counts"]["beyond bound"] == ls["counts"]["beyond bound"] == 0
    assert ls["counts"]["NaN/inf"] == ls["counts"]["all zero"] == 0


def test_cli_ranges_no_maps(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(["ranges", "--no-maps", "--kernels", "naive", "--json", str(path), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "softmax/naive/float32@float32" in out and "88.72" in out
    data = json.loads(path.read_text())
    naive_modes = len(NAIVE)  # one per (function, storage, compute) mode
    assert len(data["thresholds"]) == naive_modes * len(ranges.SHAPES) * len(ranges.SIZES) and data["maps"] == []


def test_report_has_bound_table_and_links_failure_maps(tmp_path):
    from softmax_bench import audit, report

    config = audit.AuditConfig(dtypes=["float32"], families=["normal1", "far_positive"], sizes=[8],
                               rows=3, peers=["numpy"], workers=1)
    path = tmp_path / "a.json"
    audit.run(config, path, progress=False)
    ranges_dir = tmp_path / "ranges"
    ranges.failure_map([get_kernel("shifted", "float32")], ranges_dir, grid=4, n=4)
    text = report.write_report([path], tmp_path).read_text()
    assert "## Error bounds" in text and "| `softmax/naive/float32@float32` |" in text
    assert "overflow: 3 (failed 3)" in text  # far_positive rows: outside the domain, and failed
    assert "](ranges/failure_map_softmax_shifted_float32_at_float32.png)" in text
    assert "`numpy` |" not in text.split("## Error bounds")[1].split("## Plots")[0]  # peers: no bound
