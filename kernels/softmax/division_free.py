"""Division-free softmax with the naive log-sum-exp: ``y_i = exp(x_i - f)``, ``f = log(sum_j
exp(x_j))`` (Blanchard, Higham & Higham 2021, the "alternative" formula of their eq. (3.3),
analysed in their Thm 3.4). No division: the normalisation is inside the exponent.

Operations, each rounded in the compute mode (:mod:`..arith`): ``f`` as
:mod:`..logsumexp.naive` (the sum of ``exp(x_j)`` in the order of :mod:`..arith`, then ``log``),
then ``y_i = exp(rnd(x_i - f))``, rounded to the storage format. Two passes over the row (the sum,
then the outputs); rows in groups over threads (:mod:`..lse`).

Why it is less accurate (BHH): the rounding of ``x_i - f`` is relative to ``|x_i - f|``, and exp
turns that absolute error into a relative one: the error grows with ``|f| + |x_i - f|``.

At the edges (as :mod:`..logsumexp.naive`): ``f = +inf`` once the sum overflows, so every ``y_i =
exp(-inf) = 0`` (an all-zero row; NaN at ``+inf`` entries); ``f = -inf`` when every term
underflows, so ``y_i = exp(+inf) = inf``. NaN anywhere: NaN row; ``-inf`` entries: 0.
"""
from __future__ import annotations

from ..lse import DIVISION_FREE, lse_row, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (a few long rows: split across threads; one row as 1-D arrays) and the
#: options (``shift``, ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS, ONE_ROW = lse_rows, lse_split_rows, lse_row
OPTIONS = (None, None, DIVISION_FREE)
