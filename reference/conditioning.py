"""The componentwise relative condition number of softmax: what the error bounds scale with.

Perturb each input relatively, ``x_j -> x_j (1 + delta_j)`` with ``|delta_j| <= eps``. To first
order ``dy_i = sum_j J_ij x_j delta_j`` with ``J_ij = y_i (delta_ij - y_j)``, so

    |dy_i| / y_i <= eps * kappa_i,   kappa_i = sum_j |delta_ij - y_j| |x_j|
                                             = |x_i| (1 - 2 y_i) + sum_j y_j |x_j|,

and the bound is attained (choose the signs of delta_j). ``kappa_i`` is the factor by which the
rounding of the inputs alone (``eps = u``) is amplified in output ``i``; no algorithm that starts
from rounded inputs can beat ``kappa_i u`` in general. It is not shift invariant: the shifted
algorithm's rounding of ``x_j - m`` is amplified by ``|x_j - m|``, the same quantity for the
shifted data, which is why its error bound carries ``max(x) - min(x)``.
"""
from __future__ import annotations

import mpmath
import numpy as np

from .correctly_rounded import _check_input, _rows

__all__ = ["condition_number"]


#: Relative accuracy every kappa_i is computed to (the issue asked for 1e-12).
TARGET_REL = 2.0**-60


def _row_kappa(row: np.ndarray) -> list:
    """``kappa_i = |x_i| (S - e_i)/S + B_i`` with ``B_i = sum_{j != i} y_j |x_j|``: every term
    non-negative, so no cancellation but in two differences, each handled:

    - ``S - e_i`` (that is ``1 - y_i``): for the first maximum ``k`` it is ``R``, the other terms
      summed directly; for ``i != k`` it contains ``e_k = 1 >= e_i``, so ``S - e_i >= S/2``;
    - ``B_i = A - y_i |x_i|`` with ``A = sum_j y_j |x_j|``: exactly 0 when every other unmasked
      ``x_j`` is 0; otherwise its absolute error at ``p`` bits is below ``2**(6-p) A`` (each
      ``y_j`` within 4 roundings of ``p`` bits), and the precision doubles until that is below
      ``TARGET_REL`` of ``B_i`` (``[100, 0]``: ``B_0 = 100 e^-100 / (1 + e^-100)``)."""
    if np.isnan(row).any() or np.isposinf(row).any():
        return [np.nan] * row.shape[0]
    unmasked = [j for j in range(row.shape[0]) if row[j] != -np.inf]
    if not unmasked:
        return [np.nan] * row.shape[0]
    p = 96
    while True:
        with mpmath.workprec(p):
            xs = {j: mpmath.mpf(float(row[j])) for j in unmasked}
            m = max(xs.values())
            k = next(j for j in unmasked if xs[j] == m)
            e = {j: mpmath.exp(xj - m) for j, xj in xs.items()}
            r = mpmath.fsum(e[j] for j in unmasked if j != k)
            s = 1 + r
            y = {j: ej / s for j, ej in e.items()}
            a = mpmath.fsum(y[j] * abs(xs[j]) for j in unmasked)
            err = mpmath.ldexp(a, 6 - p)
            kappa, decided = {}, True
            for i in unmasked:
                rest = (r if i == k else s - e[i]) / s  # 1 - y_i without cancellation
                if all(xs[j] == 0 for j in unmasked if j != i):
                    b = mpmath.mpf(0)
                else:
                    b = a - y[i] * abs(xs[i])
                    decided &= b > 0 and err <= TARGET_REL * b
                kappa[i] = abs(xs[i]) * rest + b
        if decided:
            # Masked entries: y_j |x_j| -> 0 as x_j -> -inf, and their own output is exactly 0
            # whatever finite perturbation they get, so their kappa is 0.
            return [float(kappa[j]) if j in kappa else 0.0 for j in range(row.shape[0])]
        p *= 2


def condition_number(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``kappa_i`` (see the module docstring) for every component, as float64 of ``x``'s shape.

    Rows with NaN or +inf, and all-masked rows, give NaN. Take ``.max(axis)`` for the row's
    normwise-worst figure."""
    x_last, _, axis = _check_input(x, None, axis)
    out = np.array([_row_kappa(row) for row in _rows(x_last)], dtype=np.float64)
    return np.moveaxis(out.reshape(x_last.shape), -1, axis)
