"""Shifted softmax with the maximum's term left out of the sum (Blanchard, Higham & Higham 2021,
"Accurately computing the log-sum-exp and softmax functions", Alg. 4.1):
``a = max_j x_j = x_k`` (``k`` the first such index), ``s = sum_{i != k} exp(x_i - a)``,
``y_i = exp(x_i - a) / (1 + s)``.

Why: in :mod:`.shifted` the maximum's term, exactly 1, enters the sum among the others, and every
later addition rounds relative to a sum of at least 1, so the small terms' rounding errors are
all counted at the scale of 1. Here the terms other than the maximum are summed alone (their
partial sums are smaller, so their roundings are smaller in absolute terms) and the exact 1 is
added last, with one rounding: the sum's relative error is ``s / (1 + s)`` times that of the
others' sum, plus one ``u``. The paper's Alg. 4.1 also gives ``logsumexp = a + log1p(s)``
(:mod:`..logsumexp.shifted_log1p`), hence the name.

Operations, each rounded in the compute mode (:mod:`..arith`): ``m`` by integer keys, ``k`` the
first index with ``x_k = m``, ``d_i = x_i - m``, ``e_i = exp(d_i)`` (``e_k = exp(0) = 1``
exactly), ``s'`` the sum of the ``e_i`` in the order of :mod:`..arith` with ``e_k`` counted as 0,
``s = 1 + s'`` (one rounding), ``y_i = e_i / s`` rounded to the storage format (one rounding, as
:mod:`.shifted`). Ties: only the first maximum is left out; the others are ordinary terms.
Passes and memory traffic as :mod:`.shifted`, plus a scan for ``k`` (it stops at the maximum).

Non-finite inputs give what :mod:`.shifted` gives (NaN anywhere, or two ``+inf`` entries: a NaN
row; ``-inf`` entries in a row with a finite maximum: exactly 0; a row of only ``-inf``: NaN),
except for one ``+inf`` entry: its term ``exp(inf - inf) = NaN`` is the one left out of the sum,
so the row is NaN there and 0 elsewhere (the reference, as for every row holding ``+inf``: NaN).
"""
from __future__ import annotations

from ..arith import ON
from .rows import softmax_row, softmax_rows, softmax_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (row groups; few long rows, each split across threads; one row as 1-D
#: arrays) and its options (``shift``, ``leave_out``: :mod:`.rows`).
ROWS, SPLIT_ROWS, ONE_ROW = softmax_rows, softmax_split_rows, softmax_row
OPTIONS = (ON, ON)
