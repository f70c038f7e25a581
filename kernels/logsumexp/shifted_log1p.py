"""log-sum-exp by Blanchard, Higham & Higham 2021, Alg. 4.1: ``a + log1p(s')`` with ``a = max_j x_j
= x_k`` (``k`` the first such index) and ``s' = sum_{j != k} exp(x_j - a)``. Operations
(:mod:`..lse`): as :mod:`.shifted`, but the maximum's term is left out of the sum (counted as 0 in
the same order) and ``l = log1p(s')``: no ``log`` of a number near 1, so no cancellation when the
maximum dominates (the case where the exact answer is close to ``a``).

Edges as :mod:`.shifted`, but for one ``+inf`` entry: its own term ``exp(inf - inf)`` is NaN and
left out, so the result is ``inf + log1p(s') = +inf``, the exact answer (two ``+inf`` entries: NaN).
"""
from __future__ import annotations

from ..arith import ON
from ..lse import LOGSUMEXP, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "OPTIONS"]

#: The rows functions (a few long rows: split across threads) and the options (``shift``,
#: ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS = lse_rows, lse_split_rows
OPTIONS = (ON, ON, LOGSUMEXP)
