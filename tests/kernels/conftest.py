"""Shared helpers for the kernel tests: kernel parametrisation and the per-element ULP budget.

The ULP budget (:func:`ulp_budget`) is an a-priori error bound for the operations the kernels
really run (kernels/arith.py, kernels/passes.py), evaluated in mpmath for the row at hand, never a
tolerance fitted to observed errors. Derivation (u: unit roundoff of the compute precision, u_s of
the storage format, sub / sub_s their smallest subnormals, E the exp error in ULPs of the compute
format, D = arith.sum_depth(n, compute)):

- shift (shifted only): d_j = fl(x_j - m) = (x_j - m)(1 + alpha), |alpha| <= u (naive: d_j = x_j);
- exp: e^_j = exp(d_j)(1 + eta) + zeta, |eta| <= 2 E u (E ULPs of a normal result, an ULP being
  <= 2u relative), |zeta| <= E sub (E ULPs of the subnormal spacing when the result is subnormal).
  With exp(d_j alpha) <= exp(|d_j| u): |e^_j - e_j| <= t_j := e_j (exp(|d_j| u)(1 + 2 E u) - 1)
  + E sub  (naive: e_j 2 E u + E sub);
- sum in the kernel's order: every term goes through at most D rounded additions (Higham, Accuracy
  and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1 and eq. (4.3)), so
  |s^ - S| <= B := sum_j t_j + gamma_D (S + sum_j t_j), gamma_D = D u / (1 - D u), S = sum_j e_j.
  (For float16 arithmetic D = n - 1, the rigorous gamma_{n-1} bound of recursive summation;
  Blanchard, Higham & Higham 2021 give the same leading terms: naive (n + 3) u, shifted
  (n + 2 + 2 (max - min)) u when exp is correctly rounded.);
- quotient: fl(e^_i / s^) = (e^_i / s^)(1 + delta) + zeta_q, |delta| <= u, |zeta_q| <= sub / 2;
- store (compute wider than storage): one more rounding, (1 + delta_s) + zeta_s, |delta_s| <= u_s,
  |zeta_s| <= sub_s / 2 (exact, so no term, when compute is the storage format).

So |y^_i - y_i| <= (e_i + t_i) / (S - B) (1 + u)(1 + u_s') - e_i / S + sub / 2 + sub_s' / 2 (and the
same on the low side, which is smaller), with u_s' = u_s, sub_s' = sub_s only when compute differs
from storage. Against the correctly rounded reference r_i, |y^_i - r_i| <= |y^_i - y_i| + ulp(r_i)/2,
so the budget in ULPs of r_i (formats.ulp_error's unit) is that bound / ulp(r_i) + 1/2.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from softmax_bench.formats import FORMATS, ulp
from softmax_bench.kernels import KERNELS
from softmax_bench.kernels.arith import sum_depth

#: exp error in ULPs of the compute format, as kernels/exp.py states and tests/kernels/test_exp.py
#: checks: exp16 correctly rounded (1/2 ULP); exp32 and exp64 below 1 ULP.
EXP_ULPS = {"float16": 0.5, "float32": 1.0, "float64": 1.0}


def kernel_id(spec):
    return spec.id


@pytest.fixture(params=KERNELS, ids=kernel_id)
def kernel(request):
    """Every registered kernel."""
    return request.param


def ulp_budget(spec, row: np.ndarray, ref_row: np.ndarray) -> np.ndarray:
    """Per-element bound on ``ulp_error(kernel(row), reference(row))`` for a finite 1-D ``row``
    (module docstring). ``inf`` where the bound says nothing (the sum bound swallows the sum)."""
    fc, fs = FORMATS[spec.compute], FORMATS[spec.dtype.name]
    n = row.size
    D = sum_depth(n, spec.compute)
    with mpmath.workprec(200):
        u = mpmath.ldexp(1, -fc.precision)
        sub = mpmath.ldexp(1, fc.emin - fc.precision + 1)
        wider = fc.precision != fs.precision
        us = mpmath.ldexp(1, -fs.precision) if wider else mpmath.mpf(0)
        sub_s = mpmath.ldexp(1, fs.emin - fs.precision + 1) if wider else mpmath.mpf(0)
        E = mpmath.mpf(EXP_ULPS[spec.compute])
        x = [mpmath.mpf(float(v)) for v in row]
        m = max(x) if spec.algorithm == "shifted" else mpmath.mpf(0)
        d = [xi - m for xi in x]
        e = [mpmath.exp(di) for di in d]
        if spec.algorithm == "shifted":
            t = [ej * (mpmath.exp(abs(dj) * u) * (1 + 2 * E * u) - 1) + E * sub for ej, dj in zip(e, d)]
        else:
            t = [ej * 2 * E * u + E * sub for ej in e]
        S = mpmath.fsum(e)
        T = mpmath.fsum(t)
        gamma = D * u / (1 - D * u)
        B = T + gamma * (S + T)
        out = np.empty(n)
        for i in range(n):
            if B >= S:
                out[i] = np.inf
                continue
            y = e[i] / S
            hi = (e[i] + t[i]) / (S - B) * (1 + u) * (1 + us) + sub / 2 + sub_s / 2
            lo = max(e[i] - t[i], 0) / (S + B) * (1 - u) * (1 - us) - sub / 2 - sub_s / 2
            err = max(hi - y, y - lo)
            out[i] = float(err / mpmath.mpf(float(ulp(ref_row[i : i + 1])[0])) + mpmath.mpf(0.5))
    return out


@pytest.fixture(scope="session")
def budget():
    """:func:`ulp_budget` (a pure function; session scope keeps hypothesis content)."""
    return ulp_budget
