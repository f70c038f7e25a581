"""log-softmax by Blanchard, Higham & Higham 2021, Alg. 4.1: ``y_i = (x_i - a) - log1p(s')``, with
``a`` and ``s'`` as in :mod:`..logsumexp.shifted_log1p`. Operations (:mod:`..lse`): as
:mod:`.shifted` with ``l = log1p(s')`` (the maximum's term left out of the sum): the maximum's
own output ``-log1p(s')`` keeps its relative accuracy when ``s'`` is tiny, where ``-log(1 + s')``
loses it.

Edges as :mod:`.shifted`, but one ``+inf`` entry leaves its NaN term out of the sum: NaN at the
``+inf`` entry, ``-inf`` elsewhere.
"""
from __future__ import annotations

from ..arith import ON
from ..lse import LOG_SOFTMAX, lse_row, lse_rows, lse_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (a few long rows: split across threads; one row as 1-D arrays) and the
#: options (``shift``, ``leave_out``, the output: :mod:`..lse`).
ROWS, SPLIT_ROWS, ONE_ROW = lse_rows, lse_split_rows, lse_row
OPTIONS = (ON, ON, LOG_SOFTMAX)
