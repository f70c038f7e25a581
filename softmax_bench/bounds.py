"""A-priori forward error bounds for every registered kernel, per output element.

One source of truth: the audit (``within_bound``), the kernel tests (``tests/kernels/conftest.py``),
the property checks (:mod:`softmax_bench.properties`), the failure maps (:mod:`softmax_bench.ranges`)
and the worst-case search all call :func:`element_bounds`.

Model of the kernels (``kernels/arith.py``, ``kernels/passes.py``)
------------------------------------------------------------------
Notation: ``u`` unit roundoff of the compute precision, ``sub`` its smallest subnormal; ``u_s``,
``sub_s`` those of the storage format when the compute precision is wider (else 0: the quotient is
already a storage value); ``E`` the exp error in ULPs of the compute format (:data:`EXP_ULPS`);
``D = arith.sum_depth(n, compute)``: the largest number of rounded additions on the path of any
one term into the row sum, for the summation order the kernel really runs (16 lanes, depth-4
tree, leftovers, blocks of 2048 in order for float32/float64 compute; recursive, ``D = n - 1``,
in float16 arithmetic). ``m = max_j x_j`` (shifted; exact: a float max), ``d_j = x_j - m``
(naive: ``d_j = x_j``), ``e_j = exp(d_j)``, ``S = sum_j e_j``, ``y_i = e_i / S`` (exact values).

1. shift: ``fl(x_j - m) = d_j (1 + alpha_j)``, ``|alpha_j| <= u`` (a difference of two floats that
   lands in the subnormal range is exact, so no absolute term; naive: ``alpha_j = 0``).
2. exp: ``ê_j = exp(d_j (1 + alpha_j)) (1 + eta_j) + zeta_j``, ``|eta_j| <= 2 E u`` (E ULPs of a
   normal result, an ULP being at most 2u relative), ``|zeta_j| <= E sub`` (subnormal result).
   With ``|exp(d_j alpha_j) - 1| <= expm1(|d_j| u)``:
   ``|ê_j - e_j| <= t_j := e_j rho_j + E sub``, ``rho_j = exp(|d_j| u)(1 + 2 E u) - 1``
   (naive: ``rho_j = 2 E u``). The rounding of ``x_j - m`` is amplified by ``|d_j|``: the data
   dependence of the shifted bound. ``T = sum_j t_j``.
3. sum: each rounded addition of non-negative floats is ``(a + b)(1 + delta)``, ``|delta| <= u``
   (an addition whose result is subnormal is exact), so with ``k_j <= D`` roundings on term j,
   ``ŝ = sum_j ê_j prod(1 + delta)`` and, **rigorously, without any first-order truncation**,
   ``s_lo := (S - T)(1 - u)^D <= ŝ <= (S + T)(1 + u)^D =: s_hi``. This product form is exact;
   ``gamma_D = D u / (1 - D u)`` is only its usual upper bound for ``(1 + u)^D - 1`` and blows
   up at ``D u >= 1`` (float16 arithmetic, n > 2048), where the product form stays finite.
4. quotient: ``fl(ê_i / ŝ) = (ê_i / ŝ)(1 + delta_q) + zeta_q``, ``|delta_q| <= u``,
   ``|zeta_q| <= sub / 2``; store (compute wider than storage): one more rounding,
   ``(1 + delta_s) + zeta_s``, ``|delta_s| <= u_s``, ``|zeta_s| <= sub_s / 2``.

So, with ``tau = T / S = (sum_j e_j rho_j + n E sub) / S``, ``log(s_lo / S) = log1p(-tau) +
D log1p(-u)`` and ``log(s_hi / S) = log1p(tau) + D log1p(u)`` (computed as such: never ``S - T``
in float64, which would lose ``tau`` when it is a few float64 ulps):

    ŷ_i <= ((e_i (1 + rho_i) + E sub) / s_lo (1 + u) + sub/2)(1 + u_s) + sub_s/2
    ŷ_i >= ((e_i (1 - rho_i) - E sub) / s_hi (1 - u) - sub/2)(1 - u_s) - sub_s/2

and ``|ŷ_i - y_i| <= y_i F_i + A_i`` with the relative factor
``F_i = max(expm1(log1p(rho_i) + log1p(u) + log1p(u_s) - log(s_lo / S)),
            -expm1(log1p(-rho_i) + log1p(-u) + log1p(-u_s) - log(s_hi / S)))``
(log1p/expm1 form: no cancellation even when F is 1e-16) and the absolute part
``A_i = E sub (1 + u)(1 + u_s) / s_lo + (sub/2)(1 + u_s) + sub_s/2``.
Against the correctly rounded reference ``r_i`` (what ``formats.ulp_error`` measures against),
``|ŷ_i - r_i| <= |ŷ_i - y_i| + ulp(r_i)/2``, so the bound in ULPs of ``r_i`` is
``(y_i F_i + A_i) / ulp(r_i) + 1/2``. To first order ``F_i = rho_i + tau + (D + 1) u + u_s``:
naive ``(D + 1 + 4E) u + u_s``, shifted ``(D + 1 + 4E + |d_i| + sum_j y_j |d_j|) u + u_s``
relative, the shape of Blanchard, Higham & Higham (2021) (their ``(n + 3) u`` for recursive
summation, ``D = n - 1``, and a correctly rounded exp, ``E = 1/2``), here for the real summation
order and the measured exp.

Domain (the bound's hypotheses): every partial sum stays below the compute format's largest
finite number, ``s_hi < max_finite``, and the sum cannot vanish, ``s_lo > 0``. Rows outside
are reported with a reason and the predicted outcome, never bounded:

- ``"nonfinite_input"``: NaN or ``+inf`` in the row, or no finite entry. The reference is a NaN row;
  shifted gives a NaN row, naive gives NaN at ``+inf`` entries and 0 elsewhere.
- ``"overflow"``: ``s_hi >= max_finite`` (naive past its exp/sum overflow edge): an exp or a partial
  sum may be inf; the row is then NaN where a term overflowed and 0 elsewhere, or all 0 when
  only the sum overflowed. Never for shifted:
  every term is ``exp(d <= 0) <= 1``, so in float32/float64 a partial sum is at most
  ``n (1 + u)^D``, far below the largest finite; in float16 arithmetic the recursive sum of terms
  ``<= 1`` never exceeds 4096 (from 2048 on, ``s + e`` with ``e <= 1`` rounds to ``s`` or, on a
  tie, ``s + 2``; at 4096 the spacing is 4 and ``s + 1`` rounds back to ``s``), below 65504, even
  when ``s_hi`` (which ignores this stagnation) is larger.
- ``"underflow"``: ``tau >= 1``, i.e. ``s_lo <= 0`` (naive, every term below or near the underflow
  edge): the sum may be 0, giving a 0/0 NaN row, or a few subnormals with errors no relative bound can describe.

Evaluating the bound in float64 (:func:`element_bounds`): ``d_j``, ``e_j``, ``S`` and ``y_i`` are
computed in float64 with relative errors below ``1e-12`` wherever they matter (``|d_j| < 800``
whenever ``e_j`` is not negligible, and ``np.sum`` is pairwise), and ``F`` in log1p/expm1 form, so
the computed bound is within a relative ``1e-11`` of the exact one; it is multiplied by
:data:`EVAL_SAFETY` ``= 1 + 2**-20``. Values that float64 itself underflows (``e_j`` or ``y_i``
below 2**-1022) carry an absolute error of up to one float64 subnormal, covered by adding
:data:`EVAL_ABS` (= 4 float64 subnormals, times ``1 + F``) to the absolute part. For float16 and
float32 compute these slacks are far below any ULP; for float64 compute they add at most a few
ULPs on subnormal outputs only.

In the audit (:func:`record_fields`): ``within_bound`` is evaluated on the rows inside the domain;
rows outside are counted in ``outside_bound_domain_rows`` (by reason), with
``outside_domain_failed_rows`` saying how many really failed (NaN, inf or all-zero row). The domain
test is the theory above, never the observed outcome.

Worst cases: :func:`worst_case_search` (a hill climb on measured error / bound) and
``python -m softmax_bench.bounds``, which writes ``results/worst_cases/*.json``; the tests re-check
those rows against the bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from softmax_bench.formats import FORMATS, Format, format_of, ulp

__all__ = [
    "EXP_ULPS",
    "EVAL_SAFETY",
    "EVAL_ABS",
    "REASONS",
    "RowBounds",
    "element_bounds",
    "record_fields",
    "kernel_constants",
    "worst_case_search",
    "save_worst_cases",
]

#: exp error in ULPs of the compute format, as stated in ``kernels/exp.py`` and checked by
#: ``tests/kernels/test_exp.py``:
#: - float16: ``exp16`` is correctly rounded for all 65,536 inputs (exhaustive): 0.5 ULP.
#: - bfloat16: ``expbf16`` likewise, all 65,536 inputs (exhaustive): 0.5 ULP.
#: - float32: ``exp32`` max 0.7644 ULP over all 2**32 inputs (exhaustive, at x = -87.71553, a
#:   subnormal result; 0.6546 over normal results); we use 0.77 (the figure rounded up).
#: - float64: ``exp64`` max 0.7474 ULP on 10**6 sampled inputs (not exhaustive); we use 1.0,
#:   keeping 0.25 ULP of margin for the unsampled inputs (an assumption, not a proof: the
#:   algorithm's own error analysis in kernels/exp.py gives 1/2 ULP for the final addition plus
#:   about 0.15 for the small term, plus one more rounding for subnormal results).
EXP_ULPS = {"float16": 0.5, "bfloat16": 0.5, "float32": 0.77, "float64": 1.0}

#: Relative safety factor on the bound's float64 evaluation (module docstring).
EVAL_SAFETY = 1.0 + 2.0**-20
#: Absolute slack for float64 values that underflow during the evaluation (4 float64 subnormals).
EVAL_ABS = 4 * 2.0**-1074

#: Reasons a row is outside the bound's domain, with the predicted outcome.
REASONS = {
    "nonfinite_input": "NaN/+inf input or no finite entry: reference NaN row; shifted NaN row, "
    "naive NaN at +inf entries and 0 elsewhere",
    "overflow": "an exp or partial sum may overflow the compute format: NaN where a term "
    "overflowed and 0 elsewhere, or an all-zero row (naive only)",
    "underflow": "the computed sum may be 0 (every term near or below the underflow edge): "
    "0/0 NaN row or unboundedly inaccurate subnormals (naive only)",
}


@dataclass(frozen=True)
class KernelConstants:
    u: float
    sub: float
    u_s: float
    sub_s: float
    E: float
    compute: Format
    storage: Format
    shifted: bool


def kernel_constants(spec) -> KernelConstants:
    """The constants of the derivation for a registered kernel (``spec.algorithm`` naive/shifted,
    ``spec.dtype`` storage, ``spec.compute``)."""
    if spec.algorithm not in ("naive", "shifted"):
        raise ValueError(f"no error bound derived for algorithm {spec.algorithm!r}")
    fc = FORMATS[spec.compute]
    fs = format_of(spec.dtype)
    wider = fc.precision != fs.precision
    return KernelConstants(
        u=fc.unit_roundoff,
        sub=fc.smallest_subnormal,
        u_s=fs.unit_roundoff if wider else 0.0,
        sub_s=fs.smallest_subnormal if wider else 0.0,
        E=EXP_ULPS[spec.compute],
        compute=fc,
        storage=fs,
        shifted=spec.algorithm == "shifted",
    )


@dataclass
class RowBounds:
    """Per-element and per-row results of :func:`element_bounds` (2-D: rows x n).

    ``abs_bound``: bound on ``|ŷ_i - y_i|`` (exact softmax), inf outside the domain.
    ``ulp_bound``: bound on ``ulp_error(ŷ_i, r_i)`` against the correctly rounded reference
    (``abs_bound / ulp(r_i) + 1/2``), inf outside the domain.
    ``in_domain``: per row; ``reason``: per row, "" in the domain, else a key of :data:`REASONS`.
    ``y``: the exact softmax evaluated in float64 (NaN outside the domain)."""

    abs_bound: np.ndarray
    ulp_bound: np.ndarray
    in_domain: np.ndarray
    reason: np.ndarray
    y: np.ndarray


def element_bounds(spec, x, ref=None) -> RowBounds:
    """Evaluate the module docstring's bound for kernel ``spec`` on input ``x`` (storage dtype,
    softmax along the last axis; any leading shape is flattened to rows).

    ``ref``: the correctly rounded reference (same shape), whose ULP is the unit of ``ulp_bound``;
    without it a lower bound of ``ulp(r_i)`` is used (the ULP of ``y_i`` itself, taken just below
    it: ``r_i = RN(y_i)`` never has a smaller ULP), which only makes ``ulp_bound`` larger."""
    k = kernel_constants(spec)
    x = np.asarray(x)
    n = x.shape[-1]
    x64 = x.astype(np.float64).reshape(-1, n)
    rows = x64.shape[0]
    D = _sum_depth(n, spec.compute)
    with np.errstate(all="ignore"):
        finite = np.isfinite(x64)
        special = np.isnan(x64).any(axis=1) | np.isposinf(x64).any(axis=1) | ~finite.any(axis=1)
        xs = np.where(special[:, None], 0.0, x64)  # keep the arithmetic quiet on special rows
        if k.shifted:
            m = xs.max(axis=1, keepdims=True)
            d = xs - m  # -inf for -inf entries; rel. error <= 2**-53 for float64 storage
            absd = np.abs(d)
            rho = np.expm1(absd * k.u + math.log1p(2 * k.E * k.u))
        else:
            d = xs
            rho = np.full_like(d, math.expm1(math.log1p(2 * k.E * k.u)))
        e = np.exp(d)
        pos = e > 0
        erho = np.where(pos, e * rho, 0.0)
        S = e.sum(axis=1)
        # everything relative to S, never S - T in float64: for float64 compute T/S is a few
        # float64 ulps and the subtraction would lose it
        Sd = np.where(S > 0, S, 1.0)
        tau = erho.sum(axis=1) / Sd + n * (k.E * k.sub + EVAL_ABS) / Sd  # T / S
        log_lo = np.log1p(-np.minimum(tau, 0.5)) + D * math.log1p(-k.u)  # log(s_lo / S)
        log_hi = np.log1p(tau) + D * math.log1p(k.u)  # log(s_hi / S)
        s_lo = S * np.exp(log_lo)
        s_hi = S * np.exp(log_hi)
        overflow = ~special & ~(s_hi < k.compute.max_finite)
        if k.shifted:  # no partial sum can overflow (module docstring, "Domain")
            overflow[:] = False
        underflow = ~special & ~overflow & ~((tau < 1) & (S > 0) & (s_lo > 0))
        in_domain = ~(special | overflow | underflow)
        reason = np.full(rows, "", dtype=object)
        reason[special] = "nonfinite_input"
        reason[overflow] = "overflow"
        reason[underflow] = "underflow"

        Sg = np.where(in_domain, S, 1.0)[:, None]
        # tau >= 1/2 inside the domain: log_lo above used 1/2; redo it exactly for 1/2 <= tau < 1
        log_lo = np.where(tau < 0.5, log_lo, np.log1p(-np.where(tau < 1, tau, 0.0)) + D * math.log1p(-k.u))
        log_lo = np.where(in_domain, log_lo, 0.0)[:, None]
        log_hi = np.where(in_domain, log_hi, 0.0)[:, None]
        y = e / Sg
        rho_i = np.where(pos, rho, 0.0)  # a zero (or -inf) entry: its error is in the absolute part
        f_hi = np.expm1(np.log1p(rho_i) + math.log1p(k.u) + math.log1p(k.u_s) - log_lo)
        small = rho_i < 1
        f_lo = np.where(
            small,
            -np.expm1(np.log1p(-np.where(small, rho_i, 0.0)) + math.log1p(-k.u)
                      + math.log1p(-k.u_s) - log_hi),
            1.0,
        )
        F = np.maximum(f_hi, f_lo)
        s_lo_g = np.where(in_domain, s_lo, 1.0)[:, None]
        A = (
            k.E * k.sub * (1 + k.u) * (1 + k.u_s) / s_lo_g
            + 0.5 * k.sub * (1 + k.u_s)
            + 0.5 * k.sub_s
            + EVAL_ABS * (1 + F)
        )
        abs_bound = (np.where(y > 0, y * F, 0.0) + A) * EVAL_SAFETY
        abs_bound = np.where(in_domain[:, None], abs_bound, np.inf)
        if ref is not None:
            unit = ulp(np.asarray(ref).reshape(rows, n), k.storage)
        else:
            unit = ulp(np.where(np.isfinite(y), y * (1 - 2.0**-40), 0.0), k.storage)
        ulp_bound = abs_bound / unit + 0.5
        ulp_bound = np.where(in_domain[:, None], ulp_bound, np.inf)
    y = np.where(in_domain[:, None], y, np.nan)
    return RowBounds(abs_bound, ulp_bound, in_domain, reason, y)


def _sum_depth(n: int, compute: str) -> int:
    from softmax_bench.kernels.arith import sum_depth

    return sum_depth(n, compute)


def record_fields(spec, x, computed, ref) -> dict:
    """The audit's bound fields for one case (``x`` inputs, ``computed`` the kernel's output,
    ``ref`` the correctly rounded reference; all the same shape, storage dtype).

    - ``bound_ulp``: the largest per-element bound (ULPs) over the rows inside the domain
      (None when no row is);
    - ``max_ulp_in_domain``: the largest measured error over those rows;
    - ``tightness``: ``max_i err_i / bound_i`` over those elements (<= 1 exactly when every element
      is within its own bound; a per-element ratio, since bounds differ between elements);
    - ``within_bound``: every in-domain element within its bound (True when no row is in the
      domain: nothing to check there, see ``outside_bound_domain_rows``);
    - ``outside_bound_domain_rows`` and ``outside_bound_domain_reasons`` (reason -> rows): rows
      where the theory predicts failure or says nothing (:data:`REASONS`); they are not counted in
      ``within_bound``; ``outside_domain_failed_rows``: how many of them really gave a NaN, inf or
      all-zero row (the predicted failure happening);
    - ``bound_violations``: the number of in-domain elements above their bound (0 when within).
    """
    from softmax_bench.formats import ulp_error

    b = element_bounds(spec, x, ref)
    n = np.shape(x)[-1]
    err = ulp_error(np.asarray(computed), np.asarray(ref)).reshape(-1, n)
    dom = b.in_domain
    out = {}
    reasons = {}
    for r in b.reason[~dom]:
        reasons[r] = reasons.get(r, 0) + 1
    c = np.asarray(computed, dtype=np.float64).reshape(-1, n)
    failed = (~np.isfinite(c)).any(axis=1) | (c == 0).all(axis=1)
    if dom.any():
        eb = b.ulp_bound[dom]
        ee = err[dom]
        ratio = ee / eb
        violations = int((ee > eb).sum())  # a NaN error (never expected in the domain) counts too
        violations += int(np.isnan(ee).sum())
        out.update(
            bound_ulp=float(eb.max()),
            max_ulp_in_domain=float(np.nan_to_num(ee, nan=np.inf).max()),
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
def _scores(spec, x):
    """Per row: max_i err_i / bound_i (-inf outside the domain), and the max error in ULPs."""
    from softmax_bench import reference
    from softmax_bench.formats import ulp_error

    ref = reference.softmax(x)
    b = element_bounds(spec, x, ref)
    with np.errstate(all="ignore"):
        err = ulp_error(spec(x), ref)
    ratio = np.where(b.in_domain, (err / b.ulp_bound).max(axis=1), -np.inf)
    return ratio, err.max(axis=1), b.ulp_bound.max(axis=1)


def worst_case_search(spec, seed: int = 0, sizes=(3, 16, 64), steps: int = 40, pop: int = 16):
    """A hill climb on input rows for the largest measured error / bound (the tightness of the
    bound on one row). Per size: start from the best of ``4 pop`` random rows (normal at scales 1, 4
    and 30; naive rows kept inside a third of the compute format's exp range), then ``steps``
    rounds of ``pop`` mutants of the current row (one entry moved by a random amount at a random
    scale, or by a few ULPs), keeping the best mutant when it is no worse. Returns the final rows,
    best first: ``{"row", "n", "ratio", "max_ulp", "bound_ulp"}``."""
    rng = np.random.default_rng([seed, zlib_crc(spec.id)])
    fs = format_of(spec.dtype)
    fc = FORMATS[spec.compute]
    lim = fs.max_finite if spec.algorithm == "shifted" else fc.exp_overflow / 3
    found = []
    for n in sizes:
        scales = rng.choice([1.0, 4.0, 30.0], 4 * pop)[:, None]
        x = np.clip(rng.standard_normal((4 * pop, n)) * scales, -lim, lim).astype(fs.dtype)
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
        found.append({"row": cur.astype(np.float64).tolist(), "n": n, "ratio": float(cur_r),
                      "max_ulp": float(cur_e), "bound_ulp": float(cur_b)})
    return sorted(found, key=lambda f: -f["ratio"])


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def save_worst_cases(out_dir="results/worst_cases", seed: int = 0, **kw) -> list:
    """Run :func:`worst_case_search` for every registered kernel; one JSON per kernel."""
    from pathlib import Path

    from softmax_bench.kernels import list_kernels
    from softmax_bench.results_io import write_json_atomic

    summary = []
    for spec in list_kernels():
        cases = worst_case_search(spec, seed=seed, **kw)
        name = spec.id.replace("/", "_").replace("@", "_at_")
        write_json_atomic(Path(out_dir) / f"{name}.json", {
            "kernel": spec.id,
            "search": "softmax_bench.bounds.worst_case_search (hill climb on max err/bound)",
            "seed": seed,
            "exp_ulps": EXP_ULPS[spec.compute],
            "cases": cases,
        })
        summary.append((spec.id, cases[0]["ratio"], cases[0]["max_ulp"], cases[0]["bound_ulp"], cases[0]["n"]))
    return summary


if __name__ == "__main__":  # python -m softmax_bench.bounds: refresh results/worst_cases
    import argparse as _argparse
    import time as _time

    _argparse.ArgumentParser(
        prog="python -m softmax_bench.bounds",
        description="Search every kernel for the rows with the largest error relative to its "
                    "derived bound (about 20 s) and save them in results/worst_cases/.",
    ).parse_args()
    _t = _time.perf_counter()
    for _row in save_worst_cases():
        print("%-26s worst err/bound %.3f  (err %.3g ULP, bound %.3g ULP, n=%d)" % _row)
    print(f"{_time.perf_counter() - _t:.1f} s")
