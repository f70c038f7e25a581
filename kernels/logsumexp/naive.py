"""Naive log-sum-exp: ``log(sum_j exp(x_j))``, no shift (Blanchard, Higham & Higham 2021, Alg.
3.1). Operations (:mod:`..lse`): ``e_j = exp(x_j)`` summed in the order of :mod:`..arith`, then
``l = log(s)``, rounded to the storage format.

At the edges: an overflowing term or sum gives ``+inf`` (once the largest entry passes about
ln(largest finite) of the compute format, or the sum does); every term underflowing gives
``log(0) = -inf``. NaN anywhere: NaN; ``+inf`` anywhere: ``+inf``; ``-inf`` entries add 0; a row
of only ``-inf``: ``-inf`` (the exact answer).
"""
from __future__ import annotations

from ..lse import LOGSUMEXP, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "OPTIONS"]

#: The rows functions (a few long rows: split across threads) and the options (``shift``,
#: ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS = lse_rows, lse_split_rows
OPTIONS = (None, None, LOGSUMEXP)
