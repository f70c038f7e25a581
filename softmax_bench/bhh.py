"""The literature check: the shape of Blanchard, Higham & Higham (2021), section 5, on our kernels.

BHH ("Accurately computing the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41(4))
evaluate log-sum-exp and softmax on 2,500 rows of n = 10 logits from an MNIST classifier, values
in about [-19, 20], in simulated float16 (and bfloat16) arithmetic, and report: basic (naive) LSE
overflows on 475 of 2,500 rows in float16, shifted on none; the basic / shifted LSE error ratio
(min 0.19, max 59, mean 1.07, identical on 92% of rows); and softmax errors of the basic,
shifted, Alg. 4.1 and division-free forms (the division-free ones "mostly less accurate").

Their data is not public here, so this uses a **synthetic stand-in** (:func:`stand_in_rows`):
nine classes N(-3, 5^2) and one target class U(0, 14), clipped to [-19, 20], which matches their
range and gives a similar share of rows whose maximum passes ln(65504) = 11.09 (where float16
naive LSE overflows). A user file of real logits runs the same check through
``softmax-bench audit --inputs``. The kernels here are ours (real float16 arithmetic, every
operation rounded: ``float16@float16``; and float32@float32), each in the summation order it
really runs, so the numbers are ours, of the same shape as theirs, not a reproduction.

Errors: per row, the normwise relative error ``max_i |ŷ_i - y_i| / max_i |y_i|`` against the
exact value (the mpmath reference, correctly rounded to float64: 2**-53 relative, far below the u
of the formats measured), divided by the unit roundoff u of the format, as BHH measure it; LSE:
``|ŷ - y| / |y| / u``. Our bounds beside: the largest per-element absolute bound of the row over
its largest exact output, / u.
``python -m softmax_bench.bhh`` writes ``results/bhh/bhh.json`` and ``results/bhh/bhh.md``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["stand_in_rows", "run", "main"]

ROWS, N = 2500, 10
#: BHH's basic (naive), shifted, Alg. 4.1 and the two division-free forms, and the two-pass
SOFTMAX_ALGORITHMS = ("naive", "shifted", "shifted_log1p", "division_free", "division_free_log1p",
                      "two_pass")  # online is shifted on rows of one block (n = 10 here)


def stand_in_rows(seed: int = 0, rows: int = ROWS, n: int = N) -> np.ndarray:
    """The synthetic classifier logits (module docstring), float64."""
    rng = np.random.default_rng(seed)
    x = rng.normal(-3.0, 5.0, (rows, n))
    target = rng.integers(0, n, rows)
    x[np.arange(rows), target] = rng.uniform(0.0, 14.0, rows)
    return np.clip(x, -19.0, 20.0)


def _stats(v: np.ndarray) -> dict:
    v = v[np.isfinite(v)]
    if not v.size:
        return {"max": None, "mean": None, "median": None}
    return {"max": float(v.max()), "mean": float(v.mean()), "median": float(np.median(v))}


def _rel(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per row: the normwise relative error ``max_i |got_i - exact_i| / max_i |exact_i|`` (inf
    for a failed row: a non-finite output, or all zero where the exact value is not)."""
    g = got.astype(np.float64).reshape(exact.shape[0], -1)
    e = exact.reshape(g.shape)
    with np.errstate(all="ignore"):
        r = np.abs(g - e).max(axis=1) / np.abs(e).max(axis=1)
    failed = ~np.isfinite(g).all(axis=1) | ((g == 0).all(axis=1) & (e != 0).any(axis=1))
    return np.where(failed, np.inf, r)


def run(seed: int = 0) -> dict:
    from softmax_bench import reference
    from softmax_bench.bounds import element_bounds
    from softmax_bench.formats import format_of
    from softmax_bench.kernels import get_kernel

    x64 = stand_in_rows(seed)
    out = {"rows": ROWS, "n": N, "seed": seed, "data": "synthetic stand-in (softmax_bench.bhh.stand_in_rows)",
           "value_range": [float(x64.min()), float(x64.max())], "formats": {}}
    for dtype in ("float16", "float32"):
        fmt = format_of(dtype)
        x = x64.astype(fmt.dtype)
        u = fmt.unit_roundoff
        exact_sm = reference.softmax(x, dtype=np.float64)
        exact_lse = reference.logsumexp(x, dtype=np.float64)
        res = {"u": u, "rows_max_above_log_overflow": int((x.astype(np.float64).max(axis=1) > fmt.exp_overflow).sum())}
        lse = {}
        for alg in ("naive", "shifted", "shifted_log1p"):
            spec = get_kernel(alg, dtype, dtype, function="logsumexp")
            with np.errstate(all="ignore"):
                y = spec(x)
            err = _rel(y, exact_lse) / u
            lse[alg] = {"overflow_rows": int(np.isinf(y).sum()), "error_u": _stats(err), "_err": err}
        a, b = lse["naive"]["_err"], lse["shifted"]["_err"]
        both = np.isfinite(a) & np.isfinite(b) & (b > 0)
        ratio = a[both] / b[both]
        same = np.isfinite(a) & np.isfinite(b) & (a == b)
        res["lse"] = {k: {kk: vv for kk, vv in v.items() if kk != "_err"} for k, v in lse.items()}
        # rows where shifted is exact are left out of the ratio (BHH's ratio has the same gap)
        res["lse_naive_over_shifted"] = {
            "min": float(ratio.min()), "max": float(ratio.max()), "mean": float(ratio.mean()),
            "identical_share": float(same.sum() / np.isfinite(a).sum()),
            "rows_compared": int(both.sum()),
        }
        sm = {}
        errs = {}
        for alg in SOFTMAX_ALGORITHMS:
            spec = get_kernel(alg, dtype, dtype)
            with np.errstate(all="ignore"):
                y = spec(x)
            err = _rel(y, exact_sm) / u
            errs[alg] = err
            b = element_bounds(spec, x)
            ymax = np.where(b.in_domain, np.nan_to_num(b.y, nan=0.0).max(axis=1), np.nan)
            with np.errstate(all="ignore"):
                rel_bound = b.abs_bound.max(axis=1) / ymax / u
            sm[alg] = {"error_u": _stats(err), "failed_rows": int((~np.isfinite(err)).sum()),
                       "bound_u": _stats(rel_bound[b.in_domain]),
                       "rows_in_bound_domain": int(b.in_domain.sum())}
        fin = np.isfinite(errs["shifted"]) & np.isfinite(errs["shifted_log1p"])
        sm["shifted_log1p_vs_shifted"] = {
            "better_rows": int((errs["shifted_log1p"][fin] < errs["shifted"][fin]).sum()),
            "worse_rows": int((errs["shifted_log1p"][fin] > errs["shifted"][fin]).sum()),
            "equal_rows": int((errs["shifted_log1p"][fin] == errs["shifted"][fin]).sum()),
        }
        fin = np.isfinite(errs["naive"]) & np.isfinite(errs["shifted"])
        sm["shifted_worse_than_naive_share"] = float((errs["shifted"][fin] > errs["naive"][fin]).mean())
        fin = np.isfinite(errs["division_free_log1p"]) & np.isfinite(errs["shifted_log1p"])
        sm["division_free_log1p_worse_than_shifted_log1p_share"] = float(
            (errs["division_free_log1p"][fin] > errs["shifted_log1p"][fin]).mean())
        res["softmax"] = sm
        out["formats"][dtype] = res
    return out


def markdown(res: dict) -> str:
    lines = [
        "# Blanchard, Higham & Higham (2021) section 5, on our kernels",
        "",
        f"{res['rows']} rows of n = {res['n']}, {res['data']}, values in "
        f"[{res['value_range'][0]:.1f}, {res['value_range'][1]:.1f}], seed {res['seed']}. "
        "Kernels computing in the storage format (float16@float16: binary16 arithmetic, every "
        "operation rounded). Errors: per row, the normwise relative error max|ŷ - y| / max|y|, / u. "
        "Made by `python -m softmax_bench.bhh` (see its docstring for the method).",
        "",
        "BHH report (float16, their MNIST rows): basic LSE overflows on 475 of 2,500 rows, "
        "shifted on 0; basic / shifted LSE error ratio min 0.19, max 59, mean 1.07, identical "
        "on 92% of rows.",
        "",
    ]
    for dtype, r in res["formats"].items():
        lines += [f"## {dtype} (u = {r['u']:.3g})", "",
                  f"Rows whose maximum passes ln(largest finite): {r['rows_max_above_log_overflow']}.", "",
                  "| logsumexp | overflow rows | max error / u | mean | median |", "|---|---|---|---|---|"]
        for alg, v in r["lse"].items():
            e = v["error_u"]
            lines.append(f"| {alg} | {v['overflow_rows']} | {_f(e['max'])} | {_f(e['mean'])} | {_f(e['median'])} |")
        q = r["lse_naive_over_shifted"]
        lines += ["", f"naive / shifted LSE error ratio over {q['rows_compared']} rows where both are "
                      f"finite and shifted is inexact: min {q['min']:.3g}, max {q['max']:.3g}, mean "
                      f"{q['mean']:.3g}; identical on {100 * q['identical_share']:.1f}% of the rows "
                      "where naive is finite.", "",
                  "| softmax | max error / u | mean | median | failed rows (NaN, inf, all zero) | our bound / u (max, mean over rows in its domain) |",
                  "|---|---|---|---|---|---|"]
        for alg in SOFTMAX_ALGORITHMS:
            v = r["softmax"][alg]
            e, b = v["error_u"], v["bound_u"]
            lines.append(f"| {alg} | {_f(e['max'])} | {_f(e['mean'])} | {_f(e['median'])} | "
                         f"{v['failed_rows']} | {_f(b['max'])}, {_f(b['mean'])} ({v['rows_in_bound_domain']} rows) |")
        c = r["softmax"]["shifted_log1p_vs_shifted"]
        lines += ["", f"shifted_log1p (Alg. 4.1) against shifted, row by row: better on {c['better_rows']}, "
                      f"equal on {c['equal_rows']}, worse on {c['worse_rows']}. shifted is worse than "
                      f"naive on {100 * r['softmax']['shifted_worse_than_naive_share']:.1f}% of the rows "
                      "where both are finite. division_free_log1p is worse than shifted_log1p on "
                      f"{100 * r['softmax']['division_free_log1p_worse_than_shifted_log1p_share']:.1f}% "
                      "of the rows (BHH: the division-free forms are \"mostly less accurate\").", ""]
    return "\n".join(lines)


def _f(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def main(argv=None) -> int:
    from softmax_bench.results_io import atomic_write, write_json_atomic

    parser = argparse.ArgumentParser(prog="python -m softmax_bench.bhh", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bhh"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    res = run(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "bhh.json", res)
    atomic_write(args.out / "bhh.md", lambda tmp: Path(tmp).write_text(markdown(res)))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
