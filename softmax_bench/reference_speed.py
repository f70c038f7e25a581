"""How fast the reference is, against a plain mpmath softmax in the same run, and a check that its
two phases agree (``softmax-bench reference``).

For each function of the family and each output format: 100 rows of 10^4 elements of N(0, 10^2)
in that format are given to the reference ``repeat`` times; reported are the median, minimum and
maximum elements per second, the ratio of the median to the median of the **baseline** (a plain
mpmath softmax at 120 bits: ``exp(x_j - m)`` per element, ``fsum``, a division, ``float``; no
correct rounding, what one would write by hand) timed in the same run, and the number of rows
phase 1 left to phase 2. Every function has a phase 1 into every format (float64 through
double-doubles). The check: on the first ``check_rows`` rows, phase 2 alone (the mpmath Ziv loop)
must give the same bits.
"""
from __future__ import annotations

import statistics
import time

import mpmath
import numpy as np

from softmax_bench.formats import FORMATS

__all__ = ["run", "baseline_softmax", "format_table"]

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "softmax_vjp")


def baseline_softmax(row: np.ndarray, prec: int = 120) -> list[float]:
    """The plain mpmath softmax the speed is measured against (module docstring)."""
    with mpmath.workprec(prec):
        xs = [mpmath.mpf(float(v)) for v in row]
        m = max(xs)
        e = [mpmath.exp(v - m) for v in xs]
        s = mpmath.fsum(e)
        return [float(v / s) for v in e]


def _rates(fn, elements: int, repeat: int) -> dict:
    fn()  # compiles or loads phase 1, warms caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    rates = [elements / t for t in times]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeat": repeat}


def run(dtypes, *, repeat: int = 5, check_rows: int = 4, seed: int = 0, progress=None) -> dict:
    from softmax_bench import reference as R
    from softmax_bench.reference import correctly_rounded as CR
    from softmax_bench.reference import phase1
    from softmax_bench.results_io import provenance

    rng = np.random.default_rng(seed)
    base_x = rng.standard_normal((2, 500)) * 10
    baseline = _rates(lambda: [baseline_softmax(r) for r in base_x], base_x.size, repeat)
    records = []
    for name in dtypes:
        fmt = FORMATS[name]
        for function in FUNCTIONS:
            rows, n = 100, 10_000
            x = (rng.standard_normal((rows, n)) * 10).astype(fmt.dtype)
            args = (x, rng.standard_normal(x.shape).astype(fmt.dtype)) if function == "softmax_vjp" else (x,)
            fn = getattr(R, function)
            rate = _rates(lambda: fn(*args), x.size, repeat)
            rec = {"function": function, "dtype": name, "rows": rows, "n": n, "elements_per_s": rate,
                   "ratio_to_baseline": rate["median"] / baseline["median"], "phase": "1 then 2"}
            name1 = "vjp" if function == "softmax_vjp" else function
            wide = [a.astype(np.float64) for a in args]
            _, decided, _ = phase1.two_tries(getattr(phase1, name1), fmt, *wide)
            rec["phase2_rows"] = int((~decided).sum())
            y = fn(*(a[:check_rows] for a in args)).astype(np.float64)
            slow = getattr(CR, f"_{name1}_row")
            want = np.array([slow(*(a[i] for a in wide), fmt) for i in range(check_rows)])
            rec["check"] = "phase 2 identical" if np.array_equal(y, want, equal_nan=True) else "DIFFERENT"
            records.append(rec)
            if progress:
                progress(f"  {function} {name}: {rate['median']:.3g} elements/s")
    return {"meta": provenance(), "baseline": {"what": "plain mpmath softmax at 120 bits", **baseline},
            "records": records}


def format_table(data: dict) -> str:
    b = data["baseline"]
    lines = [f"Baseline: {b['what']}, {b['median']:.3g} elements/s (median of {b['repeat']}; "
             f"{b['min']:.3g}-{b['max']:.3g}).", "",
             "| function | output | phase | elements/s (median) | min-max | x baseline | phase-2 rows | check |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        e = r["elements_per_s"]
        p2 = f"{r['phase2_rows']}/{r['rows']}"
        lines.append(f"| {r['function']} | {r['dtype']} | {r['phase']} | {e['median']:.3g} | "
                     f"{e['min']:.3g}-{e['max']:.3g} | {r['ratio_to_baseline']:.3g} | {p2} | "
                     f"{r.get('check', '-')} |")
    return "\n".join(lines) + "\n"
