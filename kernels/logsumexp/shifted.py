"""Shifted log-sum-exp: ``m + log(sum_j exp(x_j - m))``, ``m = max_j x_j`` (Blanchard, Higham &
Higham 2021, the shifted form of Alg. 3.1 analysed in their Thm 4.2). Operations (:mod:`..lse`):
``d_j = x_j - m``, ``e_j = exp(d_j)`` summed in the order of :mod:`..arith` (the maximum's term,
1, among the others), ``l = log(s)``, ``m + l``, each rounded in the compute mode, then to the
storage format.

Never overflows or underflows in the sum (``1 <= s <= n``); ``m + l`` overflows only when the
exact answer is within ``log(n)`` of the largest finite. NaN or ``+inf`` anywhere: NaN (``inf -
inf``); ``-inf`` entries add 0; a row of only ``-inf``: NaN (``-inf - -inf``; the exact answer is
``-inf``).
"""
from __future__ import annotations

from ..arith import ON
from ..lse import LOGSUMEXP, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "OPTIONS"]

#: The rows functions (a few long rows: split across threads) and the options (``shift``,
#: ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS = lse_rows, lse_split_rows
OPTIONS = (ON, None, LOGSUMEXP)
