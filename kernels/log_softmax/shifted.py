"""Shifted log-softmax: ``y_i = (x_i - m) - log(sum_j exp(x_j - m))``, ``m = max_j x_j``, in
PyTorch's order. Operations (:mod:`..lse`): ``l`` as :mod:`..logsumexp.shifted` without the final
``m + l``, then ``y_i = rnd(rnd(x_i - m) - l)`` and the storage rounding.

Never overflows: ``0 <= l <= log(n)``. NaN or ``+inf`` anywhere: NaN row; ``-inf`` entries give
``-inf``; a row of only ``-inf``: NaN.
"""
from __future__ import annotations

from ..arith import ON
from ..lse import LOG_SOFTMAX, lse_row, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (a few long rows: split across threads; one row as 1-D arrays) and the
#: options (``shift``, ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS, ONE_ROW = lse_rows, lse_split_rows, lse_row
OPTIONS = (ON, None, LOG_SOFTMAX)
