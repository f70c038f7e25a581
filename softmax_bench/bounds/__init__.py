"""A-priori forward error bounds for every registered kernel, per output element.

One source of truth: the audit (``within_bound``), the kernel tests (``tests/kernels/conftest.py``),
the property checks (:mod:`softmax_bench.properties`), the failure maps (:mod:`softmax_bench.ranges`)
and the worst-case search all call :func:`element_bounds`.

Layout (mirrors ``kernels/``): :mod:`.common` holds the constants (exp and log errors) and the
lemma every algorithm shares (the enclosure of the computed row sum, with or without the
maximum's term); :mod:`.softmax` derives the softmax bound (the quotient), :mod:`.logsumexp` the
logsumexp and log_softmax bounds (the logarithm and the last subtraction). Each kernel file's
operation order is the one its derivation models.

Worst cases: :func:`worst_case_search` (a hill climb on measured error / bound) and
``python -m softmax_bench.bounds``, which writes ``results/worst_cases/*.json``; the tests re-check
those rows against the bound.
"""
from __future__ import annotations

import numpy as np

from softmax_bench.formats import FORMATS, format_of, ulp

from .common import EVAL_ABS, EVAL_SAFETY, EXP_ULPS, LOG_ULPS, RowBounds, kernel_constants
from .logsumexp import log_softmax_bounds, logsumexp_bounds
from .softmax import softmax_bounds
from .softmax_vjp import softmax_vjp_bounds

__all__ = [
    "EXP_ULPS",
    "LOG_ULPS",
    "EVAL_SAFETY",
    "EVAL_ABS",
    "REASONS",
    "RowBounds",
    "element_bounds",
    "reference_of",
    "record_fields",
    "kernel_constants",
    "worst_case_search",
    "save_worst_cases",
    "operands",
]

_BOUNDS = {"softmax": softmax_bounds, "log_softmax": log_softmax_bounds,
           "logsumexp": logsumexp_bounds}

#: Reasons a row is outside the bound's domain, with the predicted outcome.
REASONS = {
    "nonfinite_input": "NaN/+inf input or no finite entry: the reference is NaN (or -inf); "
    "the kernels give NaN (naive softmax: NaN at +inf entries and 0 elsewhere)",
    "overflow": "an exp, a partial sum or an intermediate may overflow the compute or storage "
    "format: inf or NaN outputs (softmax: NaN where a term overflowed and 0 elsewhere)",
    "underflow": "the computed sum may be 0 (every term near or below the underflow edge): "
    "a 0/0 NaN or log(0) = -inf, or unboundedly inaccurate subnormals (naive only)",
}


def element_bounds(spec, x, ref=None, g=None) -> RowBounds:
    """The derived bound of kernel ``spec`` on input ``x`` (storage dtype, along the last axis),
    per output element; ``ref``, the correctly rounded reference, is the ULP unit (without it, a
    lower bound of that ULP); ``g`` the cotangent of a softmax_vjp kernel. See :mod:`.softmax`,
    :mod:`.logsumexp` and :mod:`.softmax_vjp`."""
    if spec.function == "softmax_vjp":
        if g is None:
            raise ValueError(f"{spec.id}: the bound of a backward pass needs its cotangent g")
        return softmax_vjp_bounds(spec, x, g, ref)
    return _BOUNDS[spec.function](spec, x, ref)


def b_storage(spec):
    """The storage format of ``spec`` (the unit of its ULPs)."""
    return format_of(spec.dtype)


def reference_of(spec):
    """The reference function (:mod:`softmax_bench.reference`) of ``spec.function`` (for
    softmax_vjp, ``vjp(x, g)``)."""
    from softmax_bench import reference

    return getattr(reference, spec.function)


def record_fields(spec, x, computed, ref, g=None, err=None) -> dict:
    """The audit's bound fields for one case (``x`` inputs, ``computed`` the kernel's output,
    ``ref`` the correctly rounded reference; storage dtype).

    - ``bound_ulp``: the largest per-element bound (ULPs) over the rows inside the domain
      (None when no row is);
    - ``max_ulp_in_domain``: the largest measured error over those rows;
    - ``tightness``: ``max_i err_i / bound_i`` over those elements (<= 1 exactly when every element
      is within its own bound; a per-element ratio, since bounds differ between elements);
    - ``within_bound``: every in-domain element within its bound (True when no row is in the
      domain: nothing to check there, see ``outside_bound_domain_rows``);
    - ``outside_bound_domain_rows`` and ``outside_bound_domain_reasons`` (reason -> rows): rows
      where the theory predicts failure or says nothing (:data:`REASONS`); they are not counted in
      ``within_bound``; ``outside_domain_failed_rows``: how many of them really gave a NaN or inf
      output, or (softmax) an all-zero row (the predicted failure happening);
    - ``bound_violations``: the number of in-domain elements above their bound (0 when within).

    ``err``: ``ulp_error(computed, ref)`` where the caller has it.
    """
    from softmax_bench.formats import ulp_error

    b = element_bounds(spec, x, ref, g)
    cols = b.ulp_bound.shape[1]
    if err is None:
        err = ulp_error(np.asarray(computed), np.asarray(ref))
    err = np.reshape(err, (-1, cols))
    dom = b.in_domain
    out = {}
    reasons = {}
    for r in b.reason[~dom]:
        reasons[r] = reasons.get(r, 0) + 1
    c = np.asarray(computed, dtype=np.float64).reshape(-1, cols)
    failed = (~np.isfinite(c)).any(axis=1)
    if spec.function == "softmax":
        failed |= (c == 0).all(axis=1)
    if dom.any():
        every = dom.all()

        def in_dom(a):  # (no copy when every row is in the domain, as usual)
            return a if every else a[dom]

        eb = in_dom(b.ulp_bound)
        ee = measured = in_dom(err)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = np.where(eb > 0, ee / eb, 0.0)
            # near a zero reference the ULP is the smallest subnormal and both counts can
            # overflow float64 (a float64 error of 1e-10 is 2e313 such steps): compare those
            # elements in absolute terms, |c - r| against abs_bound + ulp(r)/2, the same inequality
            huge = np.isinf(ee) & np.isinf(eb)
            if huge.any():
                r = in_dom(np.asarray(ref, dtype=np.float64).reshape(-1, cols))
                huge &= np.isfinite(in_dom(c)) & np.isfinite(r)
            if huge.any():
                lim = in_dom(b.abs_bound)[huge] + 0.5 * ulp(r[huge], b_storage(spec))
                diff = np.abs(in_dom(c)[huge] - r[huge])
                ratio[huge] = diff / lim
                ee = ee.copy()
                ee[huge] = np.where(diff > lim, np.inf, 0.0)  # within: not a violation
                eb = np.where(huge, np.inf, eb)
        violations = int((ee > eb).sum())  # a NaN error (never expected in the domain) counts too
        violations += int(np.isnan(ee).sum())
        out.update(
            bound_ulp=float(eb.max()),
            max_ulp_in_domain=float(np.nan_to_num(measured, nan=np.inf).max()),
            tightness=float(np.nan_to_num(ratio, nan=np.inf).max()),
            within_bound=violations == 0,
            bound_violations=violations,
        )
    else:
        out.update(bound_ulp=None, max_ulp_in_domain=None, tightness=None, within_bound=True,
                   bound_violations=0)
    out.update(
        outside_bound_domain_rows=int((~dom).sum()),
        outside_bound_domain_reasons=reasons,
        outside_domain_failed_rows=int((failed & ~dom).sum()),
    )
    return out


# ---------------------------------------------------------------------------------------------
# worst-case search
# ---------------------------------------------------------------------------------------------
def operands(spec, rows):
    """(x, extra operands) of a search row: for a backward-pass kernel the row holds ``x``
    followed by its cotangent ``g`` (``2n`` values), else it is ``x``."""
    from softmax_bench.functions import GRADIENTS

    if spec.function in GRADIENTS:
        n = rows.shape[-1] // 2
        return rows[..., :n], (rows[..., n:],)
    return rows, ()


def _scores(spec, rows):
    """Per row: max_i err_i / bound_i (-inf outside the domain), the max error in ULPs, and the
    largest bound."""
    from softmax_bench.formats import ulp_error

    x, extra = operands(spec, rows)
    ref = reference_of(spec)(x, *extra)
    b = element_bounds(spec, x, ref, *extra)
    cols = b.ulp_bound.shape[1]
    with np.errstate(all="ignore"):
        err = ulp_error(spec(x, *extra), ref).reshape(-1, cols)
    ratio = np.where(b.in_domain, (err / b.ulp_bound).max(axis=1), -np.inf)
    return ratio, err.max(axis=1), b.ulp_bound.max(axis=1)


def worst_case_search(spec, seed: int = 0, sizes=(3, 16, 64), steps: int = 40, pop: int = 16):
    """A hill climb on input rows for the largest measured error / bound (the tightness of the
    bound on one row). Per size: start from the best of ``4 pop`` random rows (normal at scales 1, 4
    and 30; naive rows kept inside a third of the compute format's exp range), then ``steps``
    rounds of ``pop`` mutants of the current row (one entry moved by a random amount at a random
    scale, or by a few ULPs), keeping the best mutant when it is no worse. Returns the final rows,
    best first: ``{"row", "n", "ratio", "max_ulp", "bound_ulp"}`` (a backward-pass kernel's row is
    ``x`` followed by ``g``, :func:`operands`; ``g`` drawn normal and mutated like ``x``)."""
    from softmax_bench.functions import GRADIENTS

    rng = np.random.default_rng([seed, zlib_crc(spec.id)])
    fs = format_of(spec.dtype)
    fc = FORMATS[spec.compute]
    lim = fs.max_finite / 2 if kernel_constants(spec).shifted else fc.exp_overflow / 3
    found = []
    width = 2 if spec.function in GRADIENTS else 1
    for n in sizes:
        scales = rng.choice([1.0, 4.0, 30.0], 4 * pop)[:, None]
        x = np.clip(rng.standard_normal((4 * pop, n)) * scales, -lim, lim)
        if width == 2:
            x = np.concatenate([x, rng.standard_normal((4 * pop, n))], axis=1)
        x = x.astype(fs.dtype)
        n = n * width
        ratio, merr, mb = _scores(spec, x)
        best = int(np.argmax(ratio))
        cur, cur_r, cur_e, cur_b = x[best].copy(), ratio[best], merr[best], mb[best]
        for _ in range(steps):
            cand = np.repeat(cur[None, :], pop, axis=0).astype(np.float64)
            idx = rng.integers(0, n, pop)
            kind = rng.random(pop)
            step = rng.standard_normal(pop) * rng.choice([1e-3, 0.1, 1.0, 10.0], pop)
            cand[np.arange(pop), idx] += np.where(kind < 0.7, step, 0.0)
            c = np.clip(cand, -lim, lim).astype(fs.dtype)
            ulps = rng.integers(-4, 5, pop)
            for r in np.nonzero(kind >= 0.7)[0]:
                v = c[r, idx[r]]
                for _ in range(abs(int(ulps[r]))):
                    v = np.nextafter(v, fs.dtype.type(np.inf if ulps[r] > 0 else -np.inf))
                c[r, idx[r]] = v
            ratio, merr, mb = _scores(spec, c)
            j = int(np.argmax(ratio))
            if ratio[j] >= cur_r:
                cur, cur_r, cur_e, cur_b = c[j].copy(), ratio[j], merr[j], mb[j]
        found.append({"row": cur.astype(np.float64).tolist(), "n": n // width, "ratio": float(cur_r),
                      "max_ulp": float(cur_e), "bound_ulp": float(cur_b)})
    return sorted(found, key=lambda f: -f["ratio"])


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def search_sizes(spec) -> tuple:
    """Row lengths the search tries: 3, 16, 64, and for the online and two-pass kernels a row of
    three blocks as well (their moves happen only between blocks; shorter rows are one block)."""
    from softmax_bench.kernels.arith import BLOCK

    from .common import STREAMING

    return (3, 16, 64) + ((2 * BLOCK + 64,) if spec.algorithm in STREAMING else ())


def save_worst_cases(out_dir="results/worst_cases", seed: int = 0, ids=None, **kw) -> list:
    """Run :func:`worst_case_search` for every registered kernel (or those of ``ids``), at
    :func:`search_sizes`; one JSON per kernel."""
    from pathlib import Path

    from softmax_bench.kernels import list_kernels
    from softmax_bench.results_io import write_json_atomic

    summary = []
    for spec in list_kernels():
        if ids is not None and spec.id not in ids:
            continue
        cases = worst_case_search(spec, seed=seed, **{"sizes": search_sizes(spec), **kw})
        name = spec.id.replace("/", "_").replace("@", "_at_")
        write_json_atomic(Path(out_dir) / f"{name}.json", {
            "kernel": spec.id,
            "search": "softmax_bench.bounds.worst_case_search (hill climb on max err/bound)",
            "seed": seed,
            "exp_ulps": kernel_constants(spec).E,
            "log_ulps": LOG_ULPS[spec.compute],
            "cases": cases,
        })
        summary.append((spec.id, cases[0]["ratio"], cases[0]["max_ulp"], cases[0]["bound_ulp"], cases[0]["n"]))
    return summary
