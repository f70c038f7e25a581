"""Phase 1 of the reference against phase 2 on adversarial rows (``softmax-bench reference
--fuzz ROWS``): every row phase 1 decides (in float64, or at the second try through
double-doubles, as the reference runs it) must equal the mpmath Ziv loop's result bit for bit
(signs of zeros and NaN included); the rows it leaves to phase 2 are counted.

Row shapes (1 to 16 entries, in the target format, or for a quarter of the batches in float64,
rounded into the target by the reference as a user's float64 logits are): normal rows at scales 10^-3 to 10^3;
rows whose other entries lie 700 to 1,200 or 10^4 below the maximum (outputs far below the
smallest subnormal, dropped and tiny terms); gaps of 708 to 746 (subnormal softmax outputs);
ties; masks; values near the format's largest finite; float64 shifts ``x_j - m`` that need 54 or
more bits (a maximum just below a power of two: midpoints of float64); rows of subnormals. The
VJP's cotangents: normal, nearly equal (cancelling), tiny, huge, small integers (exact zeros)
and one-hot. The review of the double-double phase 1 ran 7.8 million such rows (session 6).
"""
from __future__ import annotations

import numpy as np

from softmax_bench.formats import FORMATS

__all__ = ["run", "format_table", "ROW_SHAPES", "COTANGENT_SHAPES"]

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "vjp", "jacobian")
ROW_SHAPES = ("normal", "far", "subnormal_outputs", "ties", "masked", "near_max", "long_shift",
              "subnormal_inputs")
COTANGENT_SHAPES = ("normal", "cancelling", "tiny", "huge", "integers", "one_hot")


def rows(rng, shape: str, count: int, n: int, fmt) -> np.ndarray:
    """``count`` rows of ``n`` float64 values exact in ``fmt`` (module docstring)."""
    big = fmt.max_finite
    if shape == "normal":
        x = rng.standard_normal((count, n)) * 10.0 ** rng.uniform(-3, 3, (count, 1))
    elif shape in ("far", "subnormal_outputs"):
        m = rng.standard_normal((count, 1)) * 10.0 ** rng.uniform(-3, 3, (count, 1))
        gaps = (rng.uniform(708, 746, (count, n)) if shape == "subnormal_outputs" else
                rng.choice([700.0, 745.0, 800.0, 1074.0, 1100.0, 1200.0, 1e4], (count, n))
                * rng.uniform(0.98, 1.02, (count, n)))
        x = m - gaps
        x[:, 0] = m[:, 0]
    elif shape == "ties":
        x = (rng.standard_normal((count, 3)) * 5)[np.arange(count)[:, None], rng.integers(0, 3, (count, n))]
    elif shape == "masked":
        x = rng.standard_normal((count, n)) * 30
        x[rng.random((count, n)) < 0.5] = -np.inf
        x[:, 0] = rng.standard_normal(count)
    elif shape == "near_max":
        x = big * rng.uniform(-1, 1, (count, n))
        x[rng.random((count, n)) < 0.4] = big
    elif shape == "long_shift":  # a maximum just below a power of two, entries 40 to 900 below
        m = np.nextafter(2.0 ** rng.integers(-60, 8, (count, 1)).astype(float), 0.0)
        x = -(rng.uniform(40, 900, (count, n)) + np.ldexp(rng.integers(1, 8, (count, n)).astype(float), -46))
        x[:, :1] = m
    else:  # subnormal inputs
        tiny = 2.0 ** (fmt.emin - fmt.precision + 1)
        x = rng.integers(-1000, 1000, (count, n)).astype(float) * tiny
    with np.errstate(all="ignore"):
        x = np.clip(x, -big, big) if fmt.has_inf else np.clip(np.nan_to_num(x, neginf=-big), -big, big)
        return x.astype(fmt.dtype).astype(np.float64)


def cotangents(rng, shape: str, x: np.ndarray, fmt) -> np.ndarray:
    count, n = x.shape
    if shape == "normal":
        g = rng.standard_normal((count, n))
    elif shape == "cancelling":
        g = rng.standard_normal((count, 1)) + rng.standard_normal((count, n)) * 2.0 ** -30
    elif shape == "tiny":
        g = rng.standard_normal((count, n)) * 2.0 ** (fmt.emin - 2)
    elif shape == "huge":
        g = rng.uniform(-1, 1, (count, n)) * fmt.max_finite
    elif shape == "integers":
        g = rng.integers(-2, 3, (count, n)).astype(float)
    else:
        g = np.zeros((count, n))
        g[np.arange(count), rng.integers(0, n, count)] = 1.0
    return g.astype(fmt.dtype).astype(np.float64)


def _same(a, b) -> bool:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b)))


def run(dtypes, rows_per_function: int, *, seed: int = 0, batch: int = 16, progress=None) -> dict:
    """For each function and target format, about ``rows_per_function`` rows: the counts of rows
    phase 1 decided (each checked against phase 2), left to phase 2, and mismatches (with the
    first few rows, as float.hex, to reproduce)."""
    from softmax_bench.reference import correctly_rounded as CR
    from softmax_bench.reference import phase1
    from softmax_bench.results_io import provenance

    rng = np.random.default_rng(seed)
    records = []
    for name in dtypes:
        fmt = FORMATS[name]
        for function in FUNCTIONS:
            slow = getattr(CR, f"_{function}_row")
            rec = {"function": function, "dtype": name, "rows": 0, "decided": 0, "second_try": 0,
                   "phase2": 0, "mismatches": 0, "examples": []}
            while rec["rows"] < rows_per_function:
                shape = ROW_SHAPES[rng.integers(len(ROW_SHAPES))]
                n = int(rng.choice([1, 2, 3, 4, 8, 16] if function != "jacobian" else [1, 2, 3, 5]))
                # a quarter of the batches give float64 inputs to the narrower targets
                source = FORMATS["float64"] if rng.random() < 0.25 else fmt
                x = rows(rng, shape, batch, n, source)
                operands = [x]
                if function == "vjp":
                    operands.append(cotangents(rng, COTANGENT_SHAPES[rng.integers(len(COTANGENT_SHAPES))], x, source))
                if function == "jacobian":  # always through double-doubles
                    got, decided = phase1.jacobian(x, fmt)
                else:  # with the second try, as the reference runs it
                    got, decided, second = phase1.two_tries(getattr(phase1, function), fmt, *operands)
                    rec["second_try"] += second
                rec["rows"] += batch
                rec["phase2"] += int((~decided).sum())
                for i in np.flatnonzero(decided):
                    rec["decided"] += 1
                    if not _same(got[i], slow(*(a[i] for a in operands), fmt)):
                        rec["mismatches"] += 1
                        if len(rec["examples"]) < 5:
                            rec["examples"].append([[float.hex(float(v)) for v in a[i]] for a in operands])
            records.append(rec)
            if progress:
                progress(f"  {function} {name}: {rec['decided']} decided rows checked, "
                         f"{rec['phase2']} left to phase 2, {rec['mismatches']} mismatches")
    return {"meta": provenance(), "seed": seed, "records": records}


def format_table(data: dict) -> str:
    lines = ["| function | output | rows | decided by phase 1 (each checked) | of which at the "
             "second try (double-doubles) | left to phase 2 | mismatches |",
             "|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        lines.append(f"| {r['function']} | {r['dtype']} | {r['rows']} | {r['decided']} | "
                     f"{r['second_try']} | {r['phase2']} | {r['mismatches']} |")
    return "\n".join(lines) + "\n"
