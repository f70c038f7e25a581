"""Naive log-softmax: ``y_i = x_i - log(sum_j exp(x_j))``, no shift. Operations (:mod:`..lse`):
``l`` as :mod:`..logsumexp.naive`, then ``y_i = x_i - l``, rounded in the compute mode and to the
storage format.

At the edges: an overflowing sum gives ``l = inf``, so every ``y_i = -inf`` (NaN at ``+inf``
entries); every term underflowing gives ``l = -inf``, so every ``y_i = +inf``. NaN anywhere: NaN
row.
"""
from __future__ import annotations

from ..lse import LOG_SOFTMAX, lse_row, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (a few long rows: split across threads; one row as 1-D arrays) and the
#: options (``shift``, ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS, ONE_ROW = lse_rows, lse_split_rows, lse_row
OPTIONS = (None, None, LOG_SOFTMAX)
