"""Division-free softmax with Blanchard, Higham & Higham's Alg. 4.1 log-sum-exp: ``y_i = exp(x_i -
f)``, ``f = a + log1p(sum_{j != k} exp(x_j - a))``, ``a = max_j x_j = x_k`` (their Thm 4.4, the
"alternative shifted" formula).

Operations, each rounded in the compute mode (:mod:`..arith`): ``f`` as
:mod:`..logsumexp.shifted_log1p`, then ``y_i = exp(rnd(x_i - f))``, rounded to the storage format.
Never overflows: ``x_i - f <= 0``.

At the edges: NaN anywhere, or two ``+inf`` entries: NaN row; one ``+inf`` entry: ``f = +inf``
(its NaN term is left out of the sum), so NaN there (``inf - inf``) and 0 elsewhere; ``-inf``
entries: 0; a row of only ``-inf``: NaN.
"""
from __future__ import annotations

from ..arith import ON
from ..lse import DIVISION_FREE, lse_row, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (a few long rows: split across threads; one row as 1-D arrays) and the
#: options (``shift``, ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS, ONE_ROW = lse_rows, lse_split_rows, lse_row
OPTIONS = (ON, ON, DIVISION_FREE)
