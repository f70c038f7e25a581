"""Overflow and underflow thresholds of every kernel, found by bisection, and failure maps, for
softmax, log_softmax and logsumexp (the backward pass takes the shifted softmax's output, whose
thresholds are shifted's: never).

Thresholds (:func:`thresholds`)
-------------------------------
For each kernel and row shape, a row is built from one number ``t = max(x)``:

- ``equal``: every entry ``t`` (n entries);
- ``one_large``: ``x_0 = t``, the other entries ``t - 30`` (their exps are ``e^-30`` of the
  largest: the row behaves like a single term, so the edges are the exp edges themselves).

A row *fails* when some output is NaN or inf or (softmax) every output is 0 (the failure classes
of :mod:`softmax_bench.metrics`; 0s from an infinite sum count, since ``y = e/inf = 0`` is finite
but wrong). log_softmax and logsumexp fail by a non-finite output: ``log(inf)`` past the overflow
edge, ``log(0) = -inf`` (and ``x - log 0 = +inf``) past the underflow edge. Bisection runs on the **representable values of the storage format** (on the integer order
of their bit patterns, so it ends on two adjacent floats, exactly):

- overflow threshold: the smallest ``t >= 0`` whose row fails (searched up to the largest finite);
- underflow threshold: the largest ``t <= 0`` whose row fails (all zero, or a NaN from 0/0, or an
  inf from the division-free ``exp(x - log 0)``; log_softmax and logsumexp: a non-finite output),
  searched down to minus the largest finite.

Theory (exact arithmetic, compute format ``c``): naive overflows when the exact sum reaches the
overflow boundary of ``c`` (``max_finite + ulp/2``), at
``t = ln(max_finite + ulp/2) - ln(sum_j exp(x_j - t))`` (``equal``: minus ``ln n``; ``one_large``:
minus ``ln(1 + (n-1) e^-30)``, i.e. ``ln(max_finite)``: float16 11.09, float32 88.72, float64 709.78),
and underflows when every term rounds to 0, ``t < ln(smallest_subnormal / 2)`` (-17.33, -103.97,
-745.13). The same edges hold for naive log_softmax and logsumexp: they fail where the sum of
exponentials does. The shifted kernels (and the log1p forms) have no threshold: every exponent is <= 0 and one is exactly 0, so it is
checked at ``t = +-max_finite`` and on a sweep of ``t`` over the whole range, and reported
``"never"`` when no row fails.

Agreement: the measured threshold is a storage value, so it can only agree with theory to within
the storage spacing there (float16 at 88.7 has spacing 0.0625). The table gives the difference and
``ok`` when ``|measured - theory| <= max(0.01, spacing) + slack``, where ``slack`` is the derived
width of the edge in the computed arithmetic (the sum's rounding moves the overflow edge by at most
``ln((1 + u)^D) + ln(1 + 2 E u)``, from :mod:`softmax_bench.bounds`; negligible except for a
float16 recursive sum of 1000 terms).

Failure maps (:func:`failure_map`)
----------------------------------
A grid over shift ``c`` (x axis) and spread ``s`` (y axis), rows ``x = c + s z`` with a fixed seeded
``z ~ N(0, 1)`` of :data:`MAP_N` entries, cast to the storage format (clipped to +-max finite).
Each cell is classified against the **correctly rounded mpmath reference** (computed once per
(storage, compute) grid and shared by naive and shifted; 40 x 40 x 64 = 102,400 elements, a few
seconds) with the per-element bound of :mod:`softmax_bench.bounds`:
``within 2 ULP`` (inside the bound's domain, every element within :data:`MAP_ULP_BUDGET` ULPs),
``within bound`` (inside the domain, every element within its bound, some beyond 2 ULPs: the
guarantee holds but is loose there), ``beyond bound``
(inside the domain, some element above its bound: a bug in the kernel or the bound, never
expected), ``outside domain`` (finite, not all zero, but the bound's hypotheses fail: no
guarantee), ``NaN/inf`` and ``all zero``. The grid spans ``c`` from 1.5x the compute format's
underflow edge to 1.5x its overflow edge, and ``s`` from 0 to half of that width.

:func:`run` also records :func:`property_summary`: the seed properties checked on every kernel,
with the predicted failures of naive past its edges reported (not skipped).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from softmax_bench.formats import FORMATS, format_of

__all__ = [
    "property_summary",
    "SHAPES",
    "SIZES",
    "MAP_N",
    "OUTCOMES",
    "row_for",
    "fails",
    "thresholds",
    "failure_map",
    "run",
    "format_table",
]

SHAPES = ("equal", "one_large")
SIZES = (2, 1000)
MAP_N = 64
MAP_GRID = 40
ONE_LARGE_GAP = 30.0
OUTCOMES = ("within 2 ULP", "within bound", "beyond bound", "outside domain", "NaN/inf", "all zero")
#: The failure maps' "within N ULP" class (the audit's default reporting budget).
MAP_ULP_BUDGET = 2.0


# ---------------------------------------------------------------------------------------------
# ordered integer keys of a format's values (bisection on representable values)
# ---------------------------------------------------------------------------------------------
def _uint(dt: np.dtype) -> np.dtype:
    return np.dtype(f"u{dt.itemsize}")


def _key(v: float, dtype) -> int:
    """Integer key, monotone in the float order (sign-magnitude bits to a signed integer)."""
    dt = np.dtype(dtype)
    raw = int(np.array([v], dtype=dt).view(_uint(dt))[0])
    sign = 1 << (8 * dt.itemsize - 1)
    return -(raw & (sign - 1)) if raw & sign else raw


def _from_key(k: int, dtype) -> float:
    dt = np.dtype(dtype)
    sign = 1 << (8 * dt.itemsize - 1)
    raw = k if k >= 0 else (-k) | sign
    return float(np.array([raw], dtype=_uint(dt)).view(dt)[0])


def row_for(shape: str, t: float, n: int, dtype) -> np.ndarray:
    """The row of ``shape`` with maximum ``t`` (module docstring), in ``dtype``."""
    dtype = np.dtype(dtype)
    if shape == "equal":
        return np.full(n, t, dtype=dtype)
    if shape == "one_large":
        fmt = format_of(dtype)
        rest = max(t - ONE_LARGE_GAP, -fmt.max_finite)
        x = np.full(n, rest, dtype=np.float64)
        x[0] = t
        return x.astype(dtype)
    raise ValueError(f"unknown row shape {shape!r}; choose from {SHAPES}")


def fails(y: np.ndarray, function: str = "softmax") -> bool:
    """Some output NaN or inf, or (softmax) every output 0."""
    y = np.asarray(y, dtype=np.float64)
    return bool((~np.isfinite(y)).any() or (function == "softmax" and (y == 0).all()))


def _bisect(pred, lo_key: int, hi_key: int) -> int:
    """Smallest key in (lo_key, hi_key] with pred True, given pred(lo) False and pred(hi) True."""
    while hi_key - lo_key > 1:
        mid = (lo_key + hi_key) // 2
        if pred(mid):
            hi_key = mid
        else:
            lo_key = mid
    return hi_key


def _spacing(v: float, dtype) -> float:
    return float(abs(np.spacing(np.array(v, dtype=dtype).astype(dtype))))


def theory(spec, shape: str, n: int) -> dict:
    """Theoretical thresholds of ``spec`` for a row shape (None: never)."""
    from softmax_bench.bounds import kernel_constants

    if kernel_constants(spec).shifted:  # every exponent <= 0, the sum >= 1
        return {"overflow": None, "underflow": None}
    fc = FORMATS[spec.compute]
    if shape == "equal":
        log_sum = math.log(n)
    else:
        log_sum = math.log1p((n - 1) * math.exp(-ONE_LARGE_GAP))
    return {"overflow": fc.log_overflow_boundary - log_sum, "underflow": fc.exp_underflow}


def _slack(spec, n: int) -> float:
    """Derived width of the computed overflow edge (module docstring)."""
    from softmax_bench.bounds import EXP_ULPS
    from softmax_bench.kernels.arith import sum_depth

    u = FORMATS[spec.compute].unit_roundoff
    return sum_depth(n, spec.compute) * math.log1p(u) + math.log1p(2 * EXP_ULPS[spec.compute] * u)


def thresholds(spec, shape: str, n: int) -> dict:
    """Measured and theoretical overflow/underflow thresholds of one kernel and row shape."""
    dtype = spec.dtype
    fs = format_of(dtype)
    run_ = lambda t: spec(row_for(shape, t, n, dtype))  # noqa: E731
    fn = spec.function
    fails_ = lambda y: fails(y, fn)  # noqa: E731  (below t = 0 nothing overflows: one test serves both edges)
    with np.errstate(all="ignore"):
        th = theory(spec, shape, n)
        out = {"kernel": spec.id, "function": fn, "algorithm": spec.algorithm, "dtype": fs.name,
               "compute": spec.compute, "shape": shape, "n": n,
               "theory_overflow": th["overflow"], "theory_underflow": th["underflow"]}
        top = _key(fs.max_finite, dtype)
        bottom = _key(-fs.max_finite, dtype)
        zero = _key(0.0, dtype)
        at_zero = fails_(run_(0.0))
        # overflow: smallest t >= 0 with a failing row
        if at_zero:
            over = 0.0
        elif not fails_(run_(fs.max_finite)):
            over = None
        else:
            over = _from_key(_bisect(lambda k: fails_(run_(_from_key(k, dtype))), zero, top), dtype)
        # underflow: largest t <= 0 with a failing row
        if at_zero:
            under = 0.0
        elif not fails_(run_(-fs.max_finite)):
            under = None
        else:
            # pred(k) on the mirrored order: True once t is above the underflow region
            k = _bisect(lambda k: not fails_(run_(_from_key(k, dtype))), bottom, zero)
            under = _from_key(k - 1, dtype)
        if over is None and under is None and th["overflow"] is None:
            # the sweep: no failure anywhere on the way up to +-max finite
            ts = np.concatenate([-np.geomspace(1e-3, fs.max_finite, 60), [0.0],
                                 np.geomspace(1e-3, fs.max_finite, 60)])
            bad = [float(t) for t in ts if fails_(run_(float(np.array(t).astype(dtype))))]
            out["sweep_failures"] = bad
    out["overflow"] = "never" if over is None else over
    out["underflow"] = "never" if under is None else under
    for side, meas in (("overflow", over), ("underflow", under)):
        thv = th[side]
        if thv is None:
            out[f"{side}_ok"] = meas is None and not out.get("sweep_failures")
            out[f"{side}_diff"] = None
            continue
        if meas is None:
            out[f"{side}_ok"] = False
            out[f"{side}_diff"] = None
            continue
        diff = meas - thv
        tol = max(0.01, _spacing(thv, dtype)) + (_slack(spec, n) if side == "overflow" else 0.0)
        out[f"{side}_diff"] = diff
        out[f"{side}_tol"] = tol
        out[f"{side}_ok"] = abs(diff) <= tol
    return out


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`thresholds` results."""
    def f(v):
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        return f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"

    lines = [
        "| kernel | shape | n | overflow | theory | diff | underflow | theory | diff | agree |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        th_o = "never" if r["theory_overflow"] is None else f(r["theory_overflow"])
        th_u = "never" if r["theory_underflow"] is None else f(r["theory_underflow"])
        ok = "yes" if r["overflow_ok"] and r["underflow_ok"] else "**NO**"
        lines.append(
            f"| `{r['kernel']}` | {r['shape']} | {r['n']} | {f(r['overflow'])} | {th_o} | "
            f"{f(r['overflow_diff'])} | {f(r['underflow'])} | {th_u} | {f(r['underflow_diff'])} | {ok} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# failure maps
# ---------------------------------------------------------------------------------------------
def map_axes(storage: str, compute: str, grid: int = MAP_GRID):
    """The (c, s) grid of a (storage, compute) mode (module docstring)."""
    fc = FORMATS[compute]
    fs = FORMATS[storage]
    lo, hi = 1.5 * fc.exp_underflow, 1.5 * fc.exp_overflow
    lo, hi = max(lo, -fs.max_finite), min(hi, fs.max_finite)
    cs = np.linspace(lo, hi, grid)
    ss = np.linspace(0.0, 0.5 * (hi - lo), grid)
    return cs, ss


def map_inputs(storage: str, compute: str, grid: int = MAP_GRID, n: int = MAP_N, seed: int = 0):
    """(grid*grid, n) rows ``c + s z`` (row index = i_s * grid + i_c) in the storage dtype."""
    cs, ss = map_axes(storage, compute, grid)
    z = np.random.default_rng(seed).standard_normal(n)
    fs = FORMATS[storage]
    x = cs[None, :, None] + ss[:, None, None] * z[None, None, :]
    x = np.clip(x, -fs.max_finite, fs.max_finite).reshape(grid * grid, n)
    return x.astype(fs.dtype), cs, ss


def classify(spec, x, y, ref) -> np.ndarray:
    """Outcome index into :data:`OUTCOMES` per row."""
    from softmax_bench import bounds
    from softmax_bench.formats import ulp_error

    b = bounds.element_bounds(spec, x, ref)
    y64 = np.asarray(y, dtype=np.float64)
    err = ulp_error(y, ref)
    y64 = y64.reshape(b.ulp_bound.shape)
    err = err.reshape(b.ulp_bound.shape)
    nonfinite = (~np.isfinite(y64)).any(axis=1)
    zero = (y64 == 0).all(axis=1) & (spec.function == "softmax")
    beyond = b.in_domain & (err > b.ulp_bound).any(axis=1)
    loose = (err > MAP_ULP_BUDGET).any(axis=1)
    return np.select(
        [nonfinite, zero, beyond, ~b.in_domain, loose],
        [4, 5, 2, 3, 1],
        default=0,
    )


def failure_map(specs, out_dir: Path, grid: int = MAP_GRID, n: int = MAP_N) -> list[dict]:
    """One PNG per kernel in ``specs`` (all of one (storage, compute) mode share the reference);
    returns per-kernel outcome counts and the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from softmax_bench import reference
    from softmax_bench.report import _save

    out_dir = Path(out_dir)
    by_mode: dict = {}
    for spec in specs:
        by_mode.setdefault((spec.function, spec.dtype.name, spec.compute), []).append(spec)
    results = []
    colours = ["#2b8a3e", "#94d82d", "#e03131", "#fab005", "#343a40", "#1c7ed6"]
    cmap = ListedColormap(colours)
    for (function, storage, compute), mode_specs in by_mode.items():
        x, cs, ss = map_inputs(storage, compute, grid, n)
        ref = getattr(reference, function)(x)
        for spec in mode_specs:
            with np.errstate(all="ignore"):
                y = spec(x)
            cls = classify(spec, x, y, ref).reshape(grid, grid)
            fig, ax = plt.subplots(figsize=(6.4, 5.2))
            ax.imshow(cls, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(OUTCOMES) - 0.5,
                      extent=[cs[0], cs[-1], ss[0], ss[-1]], aspect="auto", interpolation="nearest")
            fc = FORMATS[compute]
            for v in (fc.exp_overflow, fc.exp_underflow):
                ax.axvline(v, color="white", lw=0.8, ls="--")
            ax.set_xlabel("shift c (row centre)")
            ax.set_ylabel("spread s (rows c + s z, z ~ N(0,1))")
            ax.set_title(f"{spec.id}: outcome per cell (n = {n})\n"
                         f"dashed: exp overflow/underflow edges of {compute}", fontsize=9)
            handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
            ax.legend(handles, OUTCOMES, fontsize=7, loc="upper center",
                      bbox_to_anchor=(0.5, -0.13), ncol=3)
            fig.tight_layout()
            name = f"failure_map_{function}_{spec.algorithm}_{storage}_at_{compute}.png"
            _save(fig, out_dir / name)
            plt.close(fig)
            counts = {OUTCOMES[i]: int((cls == i).sum()) for i in range(len(OUTCOMES))}
            results.append({"kernel": spec.id, "png": name, "grid": grid, "n": n,
                            "c_range": [float(cs[0]), float(cs[-1])],
                            "s_range": [float(ss[0]), float(ss[-1])], "counts": counts})
    return results


def property_summary(specs, seed: int = 0) -> list[dict]:
    """The seed properties (:func:`softmax_bench.properties.check_all`) per kernel: how many checks
    hold, were violated (a bug), are predicted failures (naive past its edges: reported, not
    skipped; ``failed_as_predicted`` counts those where the kernel really failed) or unbounded."""
    from softmax_bench import properties

    out = []
    for spec in specs:
        checks = properties.check_all(spec, np.random.default_rng(seed))
        counts = {s: 0 for s in ("holds", "violated", "predicted_failure", "unbounded")}
        failed = 0
        for c in checks:
            counts[c.status] += 1
            if c.status == "predicted_failure":
                failed += all(c.detail.get("failed", []))
        worst = max((c.ratio for c in checks if c.ratio is not None), default=None)
        out.append({"kernel": spec.id, **counts, "failed_as_predicted": failed, "max_ratio": worst})
    return out


#: The functions with thresholds and maps (module docstring).
FUNCTIONS = ("softmax", "log_softmax", "logsumexp")


def run(out_dir: Path = Path("results/ranges"), json_path: Path | None = None, maps: bool = True,
        kernels=None, sizes=SIZES, shapes=SHAPES, functions=FUNCTIONS) -> dict:
    """Every threshold and failure map; writes ``json_path`` (default ``out_dir/ranges.json``)."""
    from softmax_bench.kernels import list_kernels
    from softmax_bench.results_io import write_json_atomic

    specs = [s for s in list_kernels() if s.function in functions and s.function in FUNCTIONS
             and (kernels is None or s.algorithm in kernels)]
    rows = [thresholds(spec, shape, n) for spec in specs for shape in shapes for n in sizes]
    from softmax_bench.results_io import provenance

    result = {"meta": {"tool": "softmax-bench ranges", **provenance()},
              "thresholds": rows,
              "properties": property_summary([s for s in specs if s.function == "softmax"]),
              "maps": failure_map(specs, out_dir) if maps else []}
    json_path = Path(json_path) if json_path is not None else Path(out_dir) / "ranges.json"
    write_json_atomic(json_path, result)
    result["json"] = str(json_path)
    return result
