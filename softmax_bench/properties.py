"""The seed properties of softmax (``../shared/SEED_NOTES.md``) as checks on a kernel's outputs.

Every tolerance is derived from the kernel's a-priori bound (:func:`softmax_bench.bounds.
element_bounds`): for an input row ``x`` the kernel's output satisfies ``|ŷ_i - y_i| <= B_i``
around the exact softmax ``y``, so ``ŷ_i = y_i (1 + delta_i)`` with ``|delta_i| <= r_i = B_i / y_i``.
Each property is an exact identity between exact softmax values; plugging in the computed ones
turns it into an inequality whose slack is a function of the ``B_i`` / ``r_i`` (given per check
below), plus the float64 evaluation error of the check itself (:data:`EVAL_REL`, stated where it
is used). Nothing is tuned to observed errors.

Domain: when a row the check needs is outside its bound's domain (naive past its overflow or
underflow edge), the property legitimately fails in floating point. The check then does not
skip: it returns ``status = "predicted_failure"`` with the reason and whether the kernel really
failed there (``failed``: NaN, inf or an all-zero row), so a caller can report it; ``"holds"`` and
``"violated"`` are for rows inside the domain. A check whose derived tolerance is not finite
(some relative bound ``r_i >= 1/2`` where the identity divides or takes powers) returns
``"unbounded"``: the bound says nothing useful there, and that is reported, not passed.

Each check returns a :class:`Check` (``property``, ``status``, ``ratio`` = the largest
measured deviation / its tolerance, ``<= 1`` when it holds, and ``detail``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from softmax_bench.bounds import element_bounds
from softmax_bench.formats import format_of

__all__ = [
    "Check",
    "EVAL_REL",
    "shift_invariance",
    "inverse",
    "power_superposition",
    "sharpness_limit",
    "logistic",
    "jacobian",
    "ALL",
    "grid",
    "on_grid",
    "past_the_edge",
]

#: Relative error allowed for evaluating a check in float64 (products, powers, sums, logs of a
#: handful of values: a few dozen float64 roundings at most, 2**-53 each; 1e-12 is generous).
EVAL_REL = 1e-12
_TINY = 4 * 2.0**-1074


@dataclass
class Check:
    property: str
    kernel: str
    status: str  # "holds" | "violated" | "predicted_failure" | "unbounded"
    ratio: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True unless a row inside the bound's domain broke the property (a bug)."""
        return self.status != "violated"


def _run(spec, x):
    x = np.asarray(x, dtype=spec.dtype)
    with np.errstate(all="ignore"):
        y = spec(x)
    return x, np.asarray(y, dtype=np.float64)


def _failed(y) -> bool:
    return bool((~np.isfinite(y)).any() or (y == 0).all())


def _eval(spec, x):
    """(x as storage, ŷ float64, bounds) for one row."""
    x, y = _run(spec, x)
    return x, y, element_bounds(spec, x)


def _predicted(name, spec, parts) -> Check | None:
    """A predicted-failure Check if any (x, ŷ, bounds) in ``parts`` is outside the domain."""
    out = [(b.reason[0], _failed(y)) for _, y, b in parts if not b.in_domain[0]]
    if not out:
        return None
    return Check(name, spec.id, "predicted_failure", None,
                 {"reasons": [r for r, _ in out], "failed": [f for _, f in out]})


def _verdict(name, spec, dev, tol, detail=None) -> Check:
    dev = np.asarray(dev, dtype=np.float64)
    tol = np.asarray(tol, dtype=np.float64)
    if not np.all(np.isfinite(tol)):
        return Check(name, spec.id, "unbounded", None, detail or {})
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dev == 0, 0.0, dev / tol)
    ratio = float(np.nan_to_num(ratio, nan=np.inf).max()) if ratio.size else 0.0
    return Check(name, spec.id, "holds" if ratio <= 1 else "violated", ratio, detail or {})


def _same_exact(y1, b1, y2, b2, v):
    """Two computed vectors of one exact vector ``v``: ``|ŷ1 - ŷ2| <= B1 + B2`` (+ eval)."""
    return np.abs(y1 - y2), b1 + b2 + EVAL_REL * v + _TINY


# ---------------------------------------------------------------------------------------------
def shift_invariance(spec, x, c) -> Check:
    """S(x + c 1) = S(x). ``c`` must make ``x + c`` exact in the storage format (the caller
    chooses such pairs; it is checked). Tolerance: both outputs approximate the same exact ``y``:
    ``|ŷ(x) - ŷ(x + c)|_i <= B_i(x) + B_i(x + c)``."""
    name = "shift_invariance"
    x = np.asarray(x, dtype=spec.dtype)
    xc = (x.astype(np.float64) + c).astype(spec.dtype)
    if not np.array_equal(xc.astype(np.float64), x.astype(np.float64) + c):
        raise ValueError("x + c is not exact in the storage format")
    p1, p2 = _eval(spec, x), _eval(spec, xc)
    pred = _predicted(name, spec, [p1, p2])
    if pred:
        return pred
    dev, tol = _same_exact(p1[1], p1[2].abs_bound[0], p2[1], p2[2].abs_bound[0], p1[2].y[0])
    return _verdict(name, spec, dev, tol, {"c": c})


def inverse(spec, x) -> Check:
    """log S(x) - x is constant. With ``ŷ_i = y_i (1 + delta_i)``,
    ``log ŷ_i - x_i = -logsumexp(x) + log(1 + delta_i)``, so the spread
    ``max_i - min_i`` of ``log ŷ_i - x_i`` is at most ``max_i log1p(r_i) - min_i log1p(-r_i)``
    (plus float64 evaluation: ``EVAL_REL * max(|x_i|, |log ŷ_i|)``). Needs every ``r_i < 1/2``."""
    name = "inverse"
    p = _eval(spec, x)
    pred = _predicted(name, spec, [p])
    if pred:
        return pred
    xs, y, b = p
    r = b.abs_bound[0] / b.y[0]
    if not np.all(r < 0.5) or not np.all(y > 0):
        return Check(name, spec.id, "unbounded", None, {"max_r": float(np.nanmax(r))})
    c = np.log(y) - xs.astype(np.float64)
    spread = c.max() - c.min()
    tol = np.log1p(r).max() - np.log1p(-r).min()
    tol += 2 * EVAL_REL * max(np.abs(xs.astype(np.float64)).max(), np.abs(np.log(y)).max(), 1.0)
    return _verdict(name, spec, spread, tol)


def power_superposition(spec, xs, coeffs) -> Check:
    """S(sum_k a_k x_k) ∝ prod_k S(x_k)^a_k (superposition a = (1, 1), quotient (1, -1), scaling
    (a,), inversion (-1,)). The target ``t = sum_k a_k x_k`` must be exact in the storage format.

    Tolerance: ``ŷ_k = y_k m_k`` with ``m_k in [1 - r_k, 1 + r_k]``, so ``ŷ_k^a = y_k^a M``,
    ``M in [lo_k, hi_k]`` (the two ends of ``(1 +- r_k)^a``); the product over k gives per-element
    factor intervals ``[L_i, U_i]``, and after renormalising, ``q_i / v_i in [L_i / max_j U_j,
    U_i / min_j L_j]`` with ``v = S(t)`` exact. The kernel's ``ŷ(t)_i = v_i (1 +- r_t,i)``, so
    ``|ŷ(t)_i - q_i| <= v_i (r_t,i + max(U_i / min L - 1, 1 - L_i / max U))`` (+ eval)."""
    name = "power_superposition"
    xs = [np.asarray(v, dtype=spec.dtype) for v in xs]
    t64 = sum(a * v.astype(np.float64) for a, v in zip(coeffs, xs))
    t = t64.astype(spec.dtype)
    if not np.array_equal(t.astype(np.float64), t64):
        raise ValueError("sum_k a_k x_k is not exact in the storage format")
    parts = [_eval(spec, v) for v in xs]
    pt = _eval(spec, t)
    pred = _predicted(name, spec, parts + [pt])
    if pred:
        return pred
    L = np.ones(t.size)
    U = np.ones(t.size)
    log_q = np.zeros(t.size)
    for (_, y, b), a in zip(parts, coeffs):
        r = b.abs_bound[0] / b.y[0]
        if not np.all(r < 0.5) or not np.all(y > 0):
            return Check(name, spec.id, "unbounded", None, {"coeffs": list(coeffs)})
        ends = np.stack([(1 - r) ** a, (1 + r) ** a])
        L *= ends.min(axis=0)
        U *= ends.max(axis=0)
        log_q += a * np.log(y)
    q = np.exp(log_q - log_q.max())
    q /= q.sum()
    v = pt[2].y[0]
    rt = pt[2].abs_bound[0] / np.where(v > 0, v, 1.0)
    slack = np.maximum(U / L.min() - 1, 1 - L / U.max())
    tol = v * (rt + slack) + pt[2].abs_bound[0] * (v == 0) + EVAL_REL * (1 + sum(map(abs, coeffs))) * v + _TINY
    return _verdict(name, spec, np.abs(pt[1] - q), tol, {"coeffs": list(coeffs)})


def sharpness_limit(spec, x, a) -> Check:
    """The temperature limits (5a, ties, 5b, 5c): for ``t = fl(a x)`` the limit vector ``L`` is
    one-hot on the maximum of ``t`` (``1/k`` on ``k`` tied maxima; a < 0 puts it on the minimum of
    ``x``: softmin) when ``|a|`` is large, and uniform ``1/n`` when ``a -> 0``. Check:
    ``|ŷ(t)_i - L_i| <= B_i(t) + |y_i(t) - L_i|``: the kernel is within its bound of the exact
    value, whose distance to the limit is computed (float64, + ``EVAL_REL``). ``limit`` in the
    detail says which limit applies (for large ``|a|`` the exact distance is below the output
    format's smallest subnormal, so the output must be the limit itself to within the bound)."""
    name = "sharpness_limit"
    t = np.float64(a) * np.asarray(x, dtype=np.float64)
    fs = format_of(spec.dtype)
    if not fs.has_inf:  # e4m3fn: saturate (as a framework's finfo.min/max would), never NaN
        t = np.clip(t, -fs.max_finite, fs.max_finite)
    t = t.astype(spec.dtype)
    p = _eval(spec, t)
    pred = _predicted(name, spec, [p])
    if pred:
        pred.detail["a"] = a
        return pred
    t64 = t.astype(np.float64)
    n = t.size
    if abs(a) >= 1:
        top = t64 == t64.max()
        L = top / top.sum()
        kind = f"one-hot on {int(top.sum())} maxima" + (" (softmin of x)" if a < 0 else "")
    else:
        L = np.full(n, 1.0 / n)
        kind = "uniform"
    y, b = p[1], p[2]
    dist = np.abs(b.y[0] - L)
    tol = b.abs_bound[0] + dist * (1 + EVAL_REL) + EVAL_REL + _TINY
    return _verdict(name, spec, np.abs(y - L), tol,
                    {"a": a, "limit": kind, "max_exact_distance": float(dist.max())})


def logistic(spec, z1, z2) -> Check:
    """Two classes: ``S([z1, z2]) = (sigma(z1 - z2), sigma(z2 - z1))``, ``sigma(d) = 1/(1 + e^-d)``,
    evaluated in float64 from the exact difference (its relative error: ``|z1 - z2| 2**-53`` from
    rounding the difference, amplified by exp, plus 4 roundings: ``(|d| + 4) 2**-53``).
    Tolerance: ``B_i`` + that."""
    name = "logistic"
    x = np.array([z1, z2], dtype=spec.dtype)
    p = _eval(spec, x)
    pred = _predicted(name, spec, [p])
    if pred:
        return pred
    z = x.astype(np.float64)
    with np.errstate(over="ignore"):
        d = z[0] - z[1]
        s = np.array([1 / (1 + np.exp(-d)), 1 / (1 + np.exp(d))])
    ev = (abs(d) + 4) * 2.0**-53 * s
    return _verdict(name, spec, np.abs(p[1] - s), p[2].abs_bound[0] + ev + _TINY)


def jacobian(spec, x, ref_jacobian=None) -> Check:
    """``J = diag(y) - y y^T`` from the kernel's ``ŷ`` against the reference Jacobian (mpmath,
    correctly rounded to float64; half a float64 ULP). With ``ŷ_i = y_i + delta_i``,
    ``|delta_i| <= B_i``: off the diagonal ``|Ĵ_ir - J_ir| <= B_i y_r + y_i B_r + B_i B_r``, on it
    ``<= B_i |1 - 2 y_i| + B_i^2``; plus float64 evaluation of Ĵ (``EVAL_REL (ŷ_i + ŷ_i ŷ_r)``)
    and the reference's rounding."""
    name = "jacobian"
    p = _eval(spec, x)
    pred = _predicted(name, spec, [p])
    if pred:
        return pred
    xs, y, b = p
    if ref_jacobian is None:
        from softmax_bench import reference

        ref_jacobian = reference.jacobian(xs, dtype=np.float64)
    Jr = np.asarray(ref_jacobian, dtype=np.float64)
    Jh = np.diag(y) - np.outer(y, y)
    B = b.abs_bound[0]
    v = b.y[0]
    tol = np.outer(B, v) + np.outer(v, B) + np.outer(B, B)
    np.fill_diagonal(tol, B * np.abs(1 - 2 * v) + B**2)
    tol = tol + EVAL_REL * (np.abs(y)[:, None] + np.outer(y, y)) + np.spacing(np.abs(Jr)) + _TINY
    return _verdict(name, spec, np.abs(Jh - Jr), tol)


ALL = ("shift_invariance", "inverse", "power_superposition", "sharpness_limit", "logistic",
       "jacobian")


def grid(dtype) -> tuple[float, int]:
    """``(step, largest shift)`` of the dyadic grid the checks draw rows on: rows of multiples of
    ``step`` in ``[-2, 2]`` and integer shifts up to the largest shift, so that shifts, sums and
    differences of two rows and doubling are exact in the storage format. 1/16 and 4 (6
    significant bits) for formats of 8 bits of precision or more; float8 (3 or 4 bits): 1/2 and 2
    (sums stay multiples of 1/2 within [-4, 4]: 3 bits)."""
    return (1 / 16, 4) if format_of(dtype).precision >= 8 else (0.5, 2)


def on_grid(x, dtype) -> np.ndarray:
    """``x`` (float64) snapped to :func:`grid`'s rows for ``dtype``."""
    step, _ = grid(dtype)
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / step) * step, -2.0, 2.0)


def past_the_edge(dtype) -> tuple[np.ndarray, float]:
    """``(row, c)``: ``row + c`` is past every compute format's exp overflow edge (naive must
    fail) and exact in ``dtype``: ``[-8, 0, 8] + 1024`` (8 significant bits, bfloat16's; ``c`` at
    most half the largest finite), ``[-32, 0, 32] + 128`` in float8 (3 bits)."""
    if format_of(dtype).precision >= 8:
        return np.array([-8.0, 0.0, 8.0]), min(format_of(dtype).max_finite / 2, 1024.0)
    return np.array([-32.0, 0.0, 32.0]), 128.0


def check_all(spec, rng: np.random.Generator, rows: int = 5, n: int = 6) -> list[Check]:
    """A small sample of every property on rows of a dyadic grid (:func:`grid`: shifts, sums and
    scalings by small integers are exact in the storage format), plus the naive kernels past
    their edges (which must come out as ``predicted_failure``)."""
    out = []
    step, shift = grid(spec.dtype)
    half = int(round(2 / step))
    for _ in range(rows):
        x1 = rng.integers(-half, half + 1, n) * step  # |x| <= 2
        x2 = rng.integers(-half, half + 1, n) * step
        out.append(shift_invariance(spec, x1, float(rng.integers(-shift, shift + 1))))
        out.append(inverse(spec, x1))
        for coeffs, parts in (((1, 1), (x1, x2)), ((1, -1), (x1, x2)), ((2,), (x1,)), ((-1,), (x1,))):
            out.append(power_superposition(spec, parts, coeffs))
        for a in (1e4, -1e4, 2.0**-60):
            out.append(sharpness_limit(spec, x1, a))
        out.append(logistic(spec, x1[0], x2[0]))
        out.append(jacobian(spec, x1))
    # past the overflow edge: naive predicted to fail, shifted must hold
    out.append(shift_invariance(spec, *past_the_edge(spec.dtype)))
    return out
