"""softmax_bench.bounds: the float64 evaluation against an mpmath evaluation of the same formula,
the domain (rows outside it are exactly where theory predicts failure), the audit fields, and the
saved worst cases as regression rows."""
from __future__ import annotations

import json
from pathlib import Path

import mpmath
import numpy as np
import pytest

from softmax_bench import audit, bounds, inputs
from softmax_bench.formats import FORMATS, ulp, ulp_error
from softmax_bench.functions import GRADIENTS
from softmax_bench.kernels import KERNELS, get_kernel

#: kernels of one operand (the backward pass's bound: tests/kernels/softmax_vjp)
ONE_OPERAND = [k for k in KERNELS if k.function not in GRADIENTS]
from softmax_bench.kernels.arith import sum_depth
from softmax_bench.bounds.common import EVAL_REL, EXP_PARTS_ULPS, TWO_PASS_UNIT
from softmax_bench.kernels.softmax.streaming import PARTS_LIMITS
from softmax_bench.reference import softmax as reference_softmax

WORST = Path(__file__).resolve().parents[2] / "results" / "worst_cases"


def _mp_sums(spec, row):
    """The sum lemma (bounds/common.py) in mpmath at 200 bits: constants, d, S, and the
    enclosure (s_lo, s_hi) of the summed value (``1 + s'`` when the maximum is left out, before
    any rounding of that addition)."""
    fc, fs = FORMATS[spec.compute], FORMATS[spec.dtype.name]
    n = row.size
    D = sum_depth(n, spec.compute)
    c = dict(u=mpmath.ldexp(1, -fc.precision), sub=mpmath.ldexp(1, fc.emin - fc.precision + 1))
    wider = fc.precision != fs.precision
    c["us"] = mpmath.ldexp(1, -fs.precision) if wider else mpmath.mpf(0)
    c["subs"] = mpmath.ldexp(1, fs.emin - fs.precision + 1) if wider else mpmath.mpf(0)
    # two-pass: exp of y 2**k, its own E, no rounded shift; beyond its domain the online bound
    limit = PARTS_LIMITS[spec.compute]
    two_pass = spec.algorithm == "two_pass" and bool(np.all(np.abs(row.astype(np.float64)) <= limit))
    E = mpmath.mpf((EXP_PARTS_ULPS if two_pass else bounds.EXP_ULPS)[spec.compute])
    u, sub = c["u"], c["sub"]
    c["unit"] = mpmath.mpf(TWO_PASS_UNIT) if two_pass else mpmath.mpf(1)
    x = [mpmath.mpf(float(v)) for v in row]
    shifted = spec.algorithm not in ("naive", "division_free")
    m = max(x) if shifted else mpmath.mpf(0)
    d = [xi - m for xi in x]
    e = [mpmath.exp(di) for di in d]
    rounded_shift = shifted and not two_pass
    rho = [mpmath.exp(abs(dj) * u) * (1 + 2 * E * u) - 1 for dj in d] if rounded_shift else [2 * E * u] * n
    S = mpmath.fsum(e)
    if spec.algorithm.endswith("_log1p"):
        k = d.index(0)
        others = [j for j in range(n) if j != k]
        S1 = mpmath.fsum(e[j] for j in others)
        T1 = mpmath.fsum(e[j] * rho[j] for j in others) + (n - 1) * E * sub
        s_lo = 1 + max(S1 - T1, 0) * (1 - u) ** D
        s_hi = 1 + (S1 + T1) * (1 + u) ** D
    else:
        T = mpmath.fsum(ej * rj for ej, rj in zip(e, rho)) + n * E * sub * c["unit"]
        s_lo, s_hi = (S - T) * (1 - u) ** D, (S + T) * (1 + u) ** D
    return c, E, m, d, e, rho, S, s_lo, s_hi


def mp_bound_ulp(spec, row, ref):
    """The bound of bounds/softmax.py, or of bounds/logsumexp.py, evaluated in mpmath at 200 bits
    (no evaluation slack), in ULPs of ``ref``."""
    with mpmath.workprec(200):
        c, E, m, d, e, rho, S, s_lo, s_hi = _mp_sums(spec, row)
        u, sub, us, subs = c["u"], c["sub"], c["us"], c["subs"]
        units = [mpmath.mpf(float(v)) for v in ulp(np.asarray(ref).reshape(-1))]
        EL = mpmath.mpf(bounds.LOG_ULPS[spec.compute])
        delta = max(mpmath.log(S) - mpmath.log(s_lo), mpmath.log(s_hi) - mpmath.log(S))
        a_l = delta + EL * (2 * u * (abs(mpmath.log(S)) + delta) + sub)
        shifted = spec.algorithm not in ("naive", "division_free")
        if spec.algorithm.startswith("division_free"):
            f = m + mpmath.log(S)
            a_f = a_l + u * (abs(f) + a_l) if shifted else a_l
            out = []
            for i in range(row.size):
                t = mpmath.mpf(float(row[i])) - f
                dl = a_f + u * (abs(t) + a_f)
                y = mpmath.exp(t)
                hi = (y * mpmath.exp(dl) * (1 + 2 * E * u) + E * sub) * (1 + us) + subs / 2
                lo = (y * mpmath.exp(-dl) * (1 - 2 * E * u) - E * sub) * (1 - us) - subs / 2
                out.append(float(max(hi - y, y - lo) / units[i] + mpmath.mpf(0.5)))
            return np.array(out)
        if spec.function == "softmax":
            if spec.algorithm == "shifted_log1p":  # the divisor fl(1 + s') rounds once more
                s_lo, s_hi = s_lo * (1 - u), s_hi * (1 + u)
            out = []
            for i in range(row.size):
                y = e[i] / S
                Es = E * sub * c["unit"]
                hi = ((e[i] * (1 + rho[i]) + Es) / s_lo * (1 + u) + sub / 2) * (1 + us) + subs / 2
                lo = ((e[i] * (1 - rho[i]) - Es) / s_hi * (1 - u) - sub / 2) * (1 - us) - subs / 2
                out.append(float(max(hi - y, y - lo) / units[i] + mpmath.mpf(0.5)))
            return np.array(out)
        if spec.function == "logsumexp":
            y = m + mpmath.log(S)
            a = a_l + u * (abs(y) + a_l) if shifted else a_l
            a = a + us * (abs(y) + a) + subs / 2
            return np.array([float(a / units[0] + mpmath.mpf(0.5))])
        out = []
        for i in range(row.size):
            y = d[i] - mpmath.log(S)
            if shifted:
                a = u * abs(d[i]) + a_l + u * (abs(y) + u * abs(d[i]) + a_l)
            else:
                a = a_l + u * (abs(y) + a_l)
            a = a + us * (abs(y) + a) + subs / 2
            out.append(float(a / units[i] + mpmath.mpf(0.5)))
        return np.array(out)


@pytest.mark.parametrize("spec", ONE_OPERAND, ids=lambda k: k.id)
def test_float64_evaluation_encloses_the_exact_bound(spec):
    """The vectorised float64 evaluation is never below the mpmath value of the same formula and
    exceeds it by no more than the documented evaluation slack."""
    rng = np.random.default_rng(7)
    lim = {"float16": 6.0, "bfloat16": 40.0, "float32": 40.0, "float64": 300.0}[spec.compute]
    top = FORMATS[spec.dtype.name].max_finite  # float8: 448 or 57344
    rows = [rng.uniform(-lim, lim, 9), rng.standard_normal(40) * 3, np.array([1.0, 1.0, -2.0])]
    if spec.algorithm not in ("naive", "division_free"):
        rows.append(rng.standard_normal(20) * min(1e3, top / 8))  # e4m3fn: outputs within 448
        # a dominant entry: S = 1 + 1e-13, where log S needs log1p to be evaluated at all
        rows.append(np.array([0.0, -30.0, -45.0]))
    for row in rows:
        x = np.clip(row, -top, top).astype(spec.dtype)
        ref = bounds.reference_of(spec)(x)
        fast = bounds.element_bounds(spec, x, ref)
        assert fast.in_domain[0]
        exact = mp_bound_ulp(spec, x, ref)
        assert np.all(fast.ulp_bound[0] >= exact), (spec.id, fast.ulp_bound[0] - exact)
        # documented evaluation slack: EVAL_ABS (4 float64 subnormals, times 1 + F) and, for the
        # logarithmic functions, EVAL_REL (u + u_s) times the magnitudes |m| + |log S| + |d_i| + |y|
        unit = ulp(np.asarray(ref).reshape(-1))
        slack = 5 * bounds.EVAL_ABS / unit
        if spec.function != "softmax" or spec.algorithm.startswith("division_free"):
            x64 = x.astype(np.float64)
            m = x64.max() if spec.algorithm not in ("naive", "division_free") else 0.0
            mag = abs(m) + abs(np.log(np.exp(x64 - m).sum())) + np.abs(x64 - m).max() + np.abs(ref).max()
            if spec.function == "log_softmax":  # its slack leaves |m| out (bounds/logsumexp.py)
                mag = mag - abs(m)
            fc, fs = FORMATS[spec.compute], FORMATS[spec.dtype.name]
            u_s = fs.unit_roundoff if fs.precision != fc.precision else 0.0
            slack = slack + 2 * EVAL_REL * (fc.unit_roundoff + u_s) * mag / unit
        assert np.all(fast.ulp_bound[0] <= exact * (1 + 1e-5) + 1e-6 + slack), (spec.id, fast.ulp_bound[0], exact)


def test_exp_ulps_cover_the_measured_figures():
    """The constants are at least the measured exp errors stated in kernels/exp.py."""
    assert bounds.EXP_ULPS["float16"] == 0.5  # correctly rounded
    assert bounds.EXP_ULPS["float32"] >= 0.7644
    assert bounds.EXP_ULPS["float64"] >= 0.7474


def test_domain_is_where_theory_predicts_failure():
    spec = get_kernel("naive", "float32")
    rows = np.array([[89.0, 0.0], [-110.0, -120.0], [np.inf, 0.0], [np.nan, 1.0], [1.0, 2.0],
                     [-np.inf, -np.inf], [88.5, 88.5]], dtype=np.float32)
    b = bounds.element_bounds(spec, rows)
    assert list(b.reason) == ["overflow", "underflow", "nonfinite_input", "nonfinite_input", "",
                              "nonfinite_input", "overflow"]
    with np.errstate(all="ignore"):
        y = spec(rows).astype(np.float64)
    for r in (0, 1, 6):  # the predicted failures happen: NaN, 0/0 or all-zero rows
        assert (~np.isfinite(y[r])).any() or (y[r] == 0).all()
    # the shifted kernel is in the domain for every finite row
    sh = get_kernel("shifted", "float32")
    fin = np.array([[3e38, -3e38], [-110.0, -120.0], [88.0, 88.0]], dtype=np.float32)
    assert bounds.element_bounds(sh, fin).in_domain.all()


def test_float16_recursive_sum_past_2048_terms_is_bounded():
    """The product form (1 + u)^D stays finite where gamma_D = D u/(1 - D u) would not (D u > 1)."""
    spec = get_kernel("shifted", "float16", "float16")
    x = np.zeros(5000, dtype=np.float16)
    ref = reference_softmax(x)
    b = bounds.element_bounds(spec, x, ref)
    assert b.in_domain[0] and np.isfinite(b.ulp_bound).all()
    assert (ulp_error(spec(x), ref) <= b.ulp_bound[0]).all()  # the stagnating sum: 2048, not 5000


def test_audit_records_carry_bounds():
    config = audit.AuditConfig(dtypes=["float16"], families=["normal10", "far_positive", "posinf"],
                               sizes=[10], rows=4, peers=["numpy"], workers=1)
    for r in audit.run(config, None, progress=False)["records"]:
        family = r["family"]
        if r["kind"] == "peer":
            assert r["bound_ulp"] is None and r["within_bound"] is None
            continue
        assert r["within_bound"] is True, r
        if r["bound_ulp"] is not None:
            assert 0 <= r["tightness"] <= 1 and r["max_ulp_in_domain"] <= r["bound_ulp"]
        if family == "posinf":
            assert r["outside_bound_domain_reasons"] == {"nonfinite_input": 4}
        if family == "far_positive" and r["implementation"] == "softmax/naive/float16@float16":
            assert r["outside_bound_domain_reasons"].get("overflow") == 4
            assert r["outside_domain_failed_rows"] == 4
        if r["algorithm"] not in ("naive", "division_free") and family != "posinf":
            assert r["outside_bound_domain_rows"] == 0


def test_inputs_families_within_bound_small():
    """Every kernel, every family, one small case: within bound on the in-domain rows."""
    for spec in ONE_OPERAND:
        for fam in inputs.family_names():
            x = inputs.make(fam, spec.dtype, 3, 12, seed=3)
            ref = bounds.reference_of(spec)(x)
            with np.errstate(all="ignore"):
                y = spec(x)
            f = bounds.record_fields(spec, x, y, ref)
            assert f["within_bound"], (spec.id, fam, f)


def _worst_files():
    return sorted(WORST.glob("*.json")) if WORST.is_dir() else []


@pytest.mark.parametrize("path", _worst_files(), ids=lambda p: p.stem)
def test_saved_worst_cases_within_bound(path):
    """Regression rows: the worst rows the search found (results/worst_cases) stay within bound."""
    data = json.loads(path.read_text())
    spec = next(k for k in KERNELS if k.id == data["kernel"])
    for case in data["cases"]:
        x, extra = bounds.operands(spec, np.array(case["row"], dtype=np.float64).astype(spec.dtype))
        ref = bounds.reference_of(spec)(x, *extra)
        b = bounds.element_bounds(spec, x, ref, *extra)
        err = ulp_error(spec(x, *extra), ref).reshape(-1)
        assert b.in_domain[0]
        assert (err <= b.ulp_bound[0]).all(), (spec.id, case)


def test_worst_case_search_runs_and_stays_within_bound():
    spec = get_kernel("shifted", "float32")
    found = bounds.worst_case_search(spec, seed=1, sizes=(4,), steps=3, pop=4)
    assert len(found) == 1 and 0 <= found[0]["ratio"] <= 1
    assert found[0]["max_ulp"] <= found[0]["bound_ulp"]


def test_shifted_float16_arithmetic_long_rows_stay_in_domain():
    """The recursive float16 sum of terms <= 1 stagnates (at 2048 for ones) and never overflows,
    so shifted rows of any length are inside the domain (a finite, if large, bound)."""
    spec = get_kernel("shifted", "float16", "float16")
    x = np.zeros(20000, dtype=np.float16)
    b = bounds.element_bounds(spec, x, reference_softmax(x))
    assert b.in_domain[0] and np.isfinite(b.ulp_bound).all()
    assert float(spec(x)[0]) == 1 / 2048


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_shared_sums_give_every_kernel_the_bounds_it_gets_alone(dtype, monkeypatch):
    """The audit bounds a case's kernels inside ``shared_sums(x)``: the same bounds, field by
    field, as each kernel's alone, from one sum enclosure per set of constants (read-only), with
    ``x`` read-only meanwhile and writeable again after."""
    from softmax_bench.bounds import common

    specs = [k for k in KERNELS if k.dtype == np.dtype(dtype)]
    x = np.concatenate([inputs.make(f, np.dtype(dtype), 2, 40, seed=5)
                        for f in ("normal10", "posinf", "masked", "far_positive")])
    g = inputs.cotangent(x, 5)
    alone = [bounds.element_bounds(s, x, None, g) for s in specs]
    made = []
    monkeypatch.setattr(common, "_sum_enclosure",
                        lambda *a, _f=common._sum_enclosure: made.append(a[0]) or _f(*a))
    with common.shared_sums(x):
        assert not x.flags.writeable
        shared = [bounds.element_bounds(s, x, None, g) for s in specs]
    assert x.flags.writeable
    assert len(made) == len(set(made)) < len(specs)
    for s, a, b in zip(specs, alone, shared):
        for name, value in vars(a).items():
            assert np.array_equal(value, getattr(b, name), equal_nan=value.dtype != object), (s.id, name)
