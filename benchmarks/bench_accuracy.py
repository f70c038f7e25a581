"""Accuracy tracked over commits, so accuracy regressions show in the asv graphs like speed ones.

- ``Ulp.track_max_ulp``: max error in ULPs of the storage format, per kernel and input family, on a
  fixed seeded set (``softmax_bench.inputs.make(family, dtype, ROWS, N, seed=SEED)``) against the
  correctly rounded reference of the kernel's function (``softmax_bench.reference``), over the
  elements where the
  kernel's output is finite (``softmax_bench.metrics.summarise``'s ``max_ulp``).
- ``Ulp.track_max_ulp_exact``: the same against the *exact* value (``reference.exact``),
  fractional: below 0.5 correctly rounded, below 1 faithful (``max_ulp_exact``); n/a for commits
  before exact values existed.
- ``Ulp.track_bad_rows``: rows whose output has a NaN, an infinity, or a zero where the
  reference is non-zero (all-zero and spurious-zero rows), per kernel and family: the failures
  that ``max_ulp`` cannot show.
- ``BackwardUlp.track_max_ulp`` / ``track_bad_rows``: the same for the backward-pass kernels,
  with the audit's cotangent ``g = inputs.cotangent(x, SEED)`` and ``reference.vjp(x, g)`` (a
  family whose reference gives up is n/a). In ULPs of tiny cancelled outputs these are large for
  every implementation: the track watches for change, the audit judges against the bound.
- ``OverflowThreshold.track_overflow_threshold``: the measured overflow threshold per kernel, as
  log2 of the largest input x (representable in the storage format) for which ``softmax([x, 0])``
  (softmax, log_softmax; logsumexp: its one value) is finite, found by bisection over the bit
  patterns of [0, max finite]. A kernel that never
  overflows (shifted) reports log2 of the format's max finite value (about 16, 128, 1024): "never"
  is not a number, so the graph shows the top of the range instead. log2, because asv's step
  detection (``asv publish``) hangs on values near 1.8e308 (it squares them).

The references are computed once per commit and environment in ``setup_cache``: 10 families x 4
formats x 16 rows x 64 = 40,960 elements per function (about two minutes each when the reference
ran in mpmath; a second or two since its compiled phase 1).
"""
from __future__ import annotations

import numpy as np

from ._common import FUNCTIONS, KERNEL_IDS, VJP_IDS, kernel, storage_of

SEED = 20241125
ROWS, N = 16, 64
#: every seeded family except ``posinf`` (its reference is a NaN row: no ULP error to track).
FAMILIES = (
    "normal1",
    "normal10",
    "normal100",
    "uniform",
    "wide",
    "far_positive",
    "far_negative",
    "ties",
    "one_hot",
    "masked",
)
DTYPES = ("float16", "bfloat16", "float32", "float64")


class Ulp:
    params = (list(KERNEL_IDS), list(FAMILIES))
    param_names = ("kernel", "family")
    timeout = 300

    def setup_cache(self):
        """{(dtype, family): (x, {function: its correctly rounded reference}, {function: its
        exact values, or nothing before reference.exact})}, computed once."""
        from softmax_bench import inputs, reference

        cases = {}
        for dtype in DTYPES:
            for family in FAMILIES:
                if family not in inputs.FAMILIES:
                    continue
                try:
                    x = inputs.make(family, dtype, ROWS, N, seed=SEED)
                except TypeError:  # a commit without this format (bfloat16 came later)
                    continue
                functions = [f for f in FUNCTIONS if hasattr(reference, f)]
                values = ({f: reference.exact(f, x) for f in functions}
                          if hasattr(reference, "exact") else {})
                cases[(dtype, family)] = (x, {f: getattr(reference, f)(x) for f in functions}, values)
        return cases

    def setup(self, cases, kid, family):
        dtype = storage_of(kid)
        if (dtype, family) not in cases:
            raise NotImplementedError(f"no input family {family!r} in {dtype} in this commit")
        from softmax_bench import metrics

        x, exact, values = cases[(dtype, family)]
        function = kid.split("/")[0]
        with np.errstate(all="ignore"):
            y = kernel(kid)(x)
        self.summary = metrics.summarise(y, exact[function], function=function,
                                         values=values.get(function))

    def track_max_ulp(self, cases, kid, family):
        return self.summary["max_ulp"]

    track_max_ulp.unit = "ULP"

    def track_max_ulp_exact(self, cases, kid, family):
        return self.summary["max_ulp_exact"]

    track_max_ulp_exact.unit = "ULP of the exact value"

    def track_bad_rows(self, cases, kid, family):
        s = self.summary
        return (
            s["nan_rows"] + s["inf_rows"] + s["all_zero_rows"] + s["spurious_zero_rows"]
        )

    track_bad_rows.unit = "rows"


class BackwardUlp:
    params = (list(VJP_IDS), list(FAMILIES))
    param_names = ("kernel", "family")
    timeout = 600

    def setup_cache(self):
        """{(dtype, family): (x, g, reference J(x)^T g)}, computed once."""
        from softmax_bench import inputs, reference

        cases = {}
        if not hasattr(inputs, "cotangent"):  # a commit before the backward pass
            return cases
        for dtype in DTYPES:
            for family in FAMILIES:
                x = inputs.make(family, dtype, ROWS, N, seed=SEED)
                g = inputs.cotangent(x, SEED)
                try:
                    cases[(dtype, family)] = (x, g, reference.vjp(x, g))
                except reference.ReferencePrecisionError:
                    continue
        return cases

    def setup(self, cases, kid, family):
        dtype = storage_of(kid)
        if (dtype, family) not in cases:
            raise NotImplementedError(f"no reference for {family!r} in {dtype} in this commit")
        from softmax_bench import metrics

        x, g, exact = cases[(dtype, family)]
        with np.errstate(all="ignore"):
            y = kernel(kid)(x, g)
        self.summary = metrics.summarise(y, exact, function="softmax_vjp")

    def track_max_ulp(self, cases, kid, family):
        return self.summary["max_ulp"]

    track_max_ulp.unit = "ULP"

    def track_bad_rows(self, cases, kid, family):
        s = self.summary
        return s["nan_rows"] + s["inf_rows"] + s["spurious_zero_rows"]

    track_bad_rows.unit = "rows"


def _overflow_threshold(f, dtype: str) -> float:
    """Largest x >= 0 in ``dtype`` with ``f([x, 0])`` all finite (bisection over bit patterns;
    assumes finite below and non-finite above some point, true for exp-based softmax)."""
    dt = np.dtype(dtype)
    itype = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
    try:
        fmax = np.finfo(dt).max
    except ValueError:  # bfloat16 (ml_dtypes): not numpy's own; this file avoids softmax_bench.formats
        import ml_dtypes

        fmax = ml_dtypes.finfo(dt).max
    top = np.array(fmax, dtype=dt).view(itype)

    def finite(bits) -> bool:
        x = np.array([bits, 0], dtype=itype).view(dt)
        with np.errstate(all="ignore"):
            return bool(np.isfinite(f(x)).all())

    if finite(top):
        return float(fmax)
    lo, hi = 0, int(top)  # finite(lo) (softmax([0, 0]) = [1/2, 1/2]), not finite(hi)
    if not finite(lo):
        return float("nan")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if finite(mid):
            lo = mid
        else:
            hi = mid
    return float(np.array(lo, dtype=itype).view(dt))


class OverflowThreshold:
    params = (list(KERNEL_IDS),)
    param_names = ("kernel",)
    timeout = 300  # the first run in a fresh environment compiles the kernel

    def setup(self, kid):
        self.f = kernel(kid)
        self.dtype = storage_of(kid)

    def track_overflow_threshold(self, kid):
        return float(np.log2(_overflow_threshold(self.f, self.dtype)))

    track_overflow_threshold.unit = "log2(input value)"
