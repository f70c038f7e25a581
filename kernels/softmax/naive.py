"""Naive (textbook) softmax: ``y_i = exp(x_i) / sum_j exp(x_j)``, really.

No shift and no wider type than the compute mode: ``exp`` overflows to inf once ``x_i`` passes
ln(largest finite) of the compute format (float16 11.09, float32 88.72, float64 709.78), and every
term underflows to 0 once every ``x_i`` is below ln(smallest subnormal / 2) (float16 -17.33,
float32 -103.97, float64 -745.13).

Passes (see :mod:`..passes`): ``e_i = exp(x_i)`` summed block by block while in L1 and kept (in
the output row, or a compute-type scratch row) or, for long rows that would need a scratch row,
recomputed; ``y_i = e_i / s``. Memory traffic for rows that do not fit in the caches: 2 reads +
2 writes per element for float32@float32 and float64@float64, 2 reads + 1 write for the other
modes. Summation order: as
:mod:`..arith` (16 lanes per 2048-term block, a depth-4 tree, leftovers, then the blocks in order;
recursive in float16 arithmetic). ``y_i = e_i / s`` is rounded once to the storage format.

What the operations give at the edges (this is the point of the naive kernel):
- an overflowing term: ``s = inf``, so that entry is ``inf/inf = NaN`` and the finite ones are 0;
- every term underflows: ``s = 0``, so the row is ``0/0 = NaN``;
- NaN anywhere: the sum is NaN, so the row is NaN; ``+inf`` entries: NaN there, 0 elsewhere;
  ``-inf`` entries: 0; a row of only ``-inf``: ``0/0 = NaN``.
"""
from __future__ import annotations

from .rows import softmax_row, softmax_rows, softmax_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (row groups; few long rows, each split across threads; one row as 1-D
#: arrays) and its options (``shift``, ``leave_out``: :mod:`.rows`).
ROWS, SPLIT_ROWS, ONE_ROW = softmax_rows, softmax_split_rows, softmax_row
OPTIONS = (None, None)
