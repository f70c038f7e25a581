"""Error metrics of a computed softmax (log_softmax, logsumexp) against the correctly rounded
reference.

Per element: the error in ULPs of the output format (``formats.ulp_error``) and the relative error.
Per row: one class, the first that applies in this order:

``missed_nan``     a number where the reference is NaN (rows with NaN or +inf inputs: the
                   reference row is all NaN, so any number there is wrong, however it looks)
``nan``            a NaN where the reference has a number
``inf``            an infinity where the reference has a number
``all_zero``       every output 0 while the reference has a non-zero
``spurious_zero``  some output 0 where the reference is non-zero
``finite_wrong``   all finite, some element more than ``k`` ULPs off
``within_k``       all finite, every element within ``k`` ULPs, not all exact
``correct``        every element equal to the correctly rounded reference
                   (a reference NaN row matched by an all-NaN row counts here)

``k`` (``ulp_budget``) is a reporting threshold only; the pass/fail verdict of the audit comes
from the error bounds. The sum-to-one defect ``|sum(y) - 1|`` is measured exactly (math.fsum of
the outputs as float64, exact for these formats) and reported in ULPs of 1 (that is, eps/2 = u).
"""
from __future__ import annotations

import math

import numpy as np

from softmax_bench.formats import exact_ulp_error, format_of, ulp_error

__all__ = ["ROW_CLASSES", "ROW_CLASS_MEANING", "relative_error", "row_classes", "sum_defect", "summarise"]

#: Best to worst; the record field of each is ``<class>_rows``. Meanings: the module docstring
#: (and ROW_CLASS_MEANING, which the report prints).
ROW_CLASSES = ("correct", "within_k", "finite_wrong", "spurious_zero", "all_zero", "inf", "nan", "missed_nan")
ROW_CLASS_MEANING = {
    "correct": "every element equal to the correctly rounded reference (NaN where it is NaN)",
    "within_k": "all finite, every element within k ULPs, not all exact",
    "finite_wrong": "all finite, some element more than k ULPs off",
    "spurious_zero": "some output 0 where the reference is not",
    "all_zero": "every output 0 while the reference has a non-zero",
    "inf": "an infinity where the reference has a number",
    "nan": "a NaN where the reference has a number",
    "missed_nan": "a number where the reference is NaN (rows with NaN or +inf inputs)",
}


def relative_error(computed: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """``|c - r| / |r|``; 0 where both are 0 (or equal infinities, or both NaN), inf where ``r``
    is 0 and ``c`` is not, or where exactly one side is non-finite."""
    c = np.asarray(computed, dtype=np.float64)
    r = np.asarray(exact, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(c - r) / np.abs(r)
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    rel = np.where(same, 0.0, rel)
    return np.where(np.isnan(rel), np.inf, rel)


def row_classes(computed: np.ndarray, exact: np.ndarray, ulp_budget: float = 2.0, err=None) -> np.ndarray:
    """Class index into ``ROW_CLASSES`` for every row (last axis is the softmax axis). ``err``:
    the elements' ``ulp_error(computed, exact)`` if the caller has it already."""
    if err is None:
        err = ulp_error(np.asarray(computed), np.asarray(exact))
    c = np.asarray(computed, dtype=np.float64).reshape(-1, np.shape(computed)[-1])
    r = np.asarray(exact, dtype=np.float64).reshape(c.shape)
    err = np.asarray(err).reshape(c.shape)
    ref_num = ~np.isnan(r)
    missed_nan = (~np.isnan(c) & ~ref_num).any(axis=1)
    nan = (np.isnan(c) & ref_num).any(axis=1)
    inf = (np.isinf(c) & ~np.isinf(r) & ref_num).any(axis=1)
    ref_nonzero = ref_num & (r != 0)
    all_zero = ((c == 0) | ~ref_num).all(axis=1) & ref_nonzero.any(axis=1)
    spurious = ((c == 0) & ref_nonzero).any(axis=1)
    exact_match = (err == 0).all(axis=1)
    within = (err <= ulp_budget).all(axis=1)
    cls = np.select(
        [missed_nan, nan, inf, all_zero, spurious, exact_match, within],
        [7, 6, 5, 4, 3, 0, 1],
        default=2,
    )
    return cls


def sum_defect(computed: np.ndarray, dtype=None) -> np.ndarray:
    """Per row ``|sum(y) - 1|`` in units of u = 2**-t of the output format (``dtype``, default
    ``computed``'s; NaN for non-finite rows). The exact sum of correctly rounded outputs is
    already off by up to n u / 2."""
    fmt = format_of(np.asarray(computed).dtype if dtype is None else dtype)
    rows = np.asarray(computed, dtype=np.float64).reshape(-1, np.shape(computed)[-1])
    finite = np.isfinite(rows).all(axis=1)
    out = np.full(rows.shape[0], np.nan)
    for i in np.flatnonzero(finite):  # (fsum of a list: 1.6x faster than of an array's scalars)
        out[i] = abs(math.fsum(rows[i].tolist()) - 1.0) / fmt.unit_roundoff
    return out


def summarise(computed: np.ndarray, exact: np.ndarray, ulp_budget: float = 2.0,
              function: str = "softmax", values=None, err=None) -> dict:
    """The audit record's measured fields for one case (plain Python numbers, JSON-ready).

    ULP and relative errors are taken over elements where the reference is a number and the
    computed value is finite; non-finite outputs, and numbers where the reference is NaN, are
    counted in the row classes instead (``max_ulp`` alone never tells a row is right).
    ``function``: logsumexp outputs (one per row) are taken as rows of one element; the
    sum-to-one defect is measured for softmax only (None otherwise). ``values``: the exact
    values ``(hi, lo)`` (``reference.exact``); with them ``max_ulp_exact`` is the largest error
    in ULPs of the exact value (``formats.exact_ulp_error``: < 0.5 correctly rounded, < 1
    faithful), over every element (a NaN or infinity where the reference has a number counts
    as inf), else None. ``err``: ``ulp_error(computed, exact)`` where the caller has it."""
    fmt = np.asarray(computed).dtype  # the unit of every ULP here
    c = np.asarray(computed, dtype=np.float64)  # each converted once, here
    r = np.asarray(exact, dtype=np.float64)
    exact_err = None if values is None else exact_ulp_error(c, *values, r, dtype=fmt)
    if function == "logsumexp":
        c, r = c.reshape(-1, 1), r.reshape(-1, 1)
    err = ulp_error(c, r, fmt) if err is None else np.reshape(err, c.shape)
    rel = relative_error(c, r)
    comparable = np.isfinite(c) & ~np.isnan(r)
    finite_err = err[comparable]
    classes = row_classes(c, r, ulp_budget, err)
    counts = np.bincount(classes, minlength=len(ROW_CLASSES))
    defect = sum_defect(c, fmt) if function == "softmax" else np.full(classes.size, np.nan)
    flat = np.where(comparable, err, -1.0).reshape(classes.size, -1)
    worst = np.unravel_index(int(np.argmax(flat)), flat.shape) if finite_err.size else (None, None)
    return {
        "rows": int(classes.size),
        "max_ulp": float(finite_err.max()) if finite_err.size else 0.0,
        "max_ulp_exact": None if exact_err is None else float(np.max(exact_err, initial=0.0)),
        # where max_ulp is: row index in the case's batch and element in that row (a reproducer)
        "worst_row": None if worst[0] is None else int(worst[0]),
        "worst_element": None if worst[1] is None else int(worst[1]),
        "median_ulp": float(np.median(finite_err)) if finite_err.size else 0.0,
        "mean_ulp": float(finite_err.mean()) if finite_err.size else 0.0,
        "max_rel": float(rel[comparable].max()) if finite_err.size else 0.0,
        **{f"{name}_rows": int(count) for name, count in zip(ROW_CLASSES, counts)},
        "spurious_zero": int(((c == 0) & (r != 0) & ~np.isnan(r)).sum()),
        # rows with any NaN out, whether or not the reference is NaN there too (e.g. +inf input)
        "nan_output_rows": int(np.isnan(c.reshape(-1, c.shape[-1])).any(axis=1).sum()),
        "ulp_budget": ulp_budget,
        "max_sum_defect_u": float(np.nanmax(defect)) if np.isfinite(defect).any() else None,
    }
