"""Shifted ("safe") softmax: ``y_i = exp(x_i - m) / sum_j exp(x_j - m)`` with ``m = max_j x_j``.

Every exponent is ``<= 0``, so no ``exp`` overflows; the largest term is ``exp(0) = 1``, so the sum
is ``>= 1`` (no division by zero) and at least one output is non-zero: a finite row never gives NaN,
inf or an all-zero output.

Passes (see :mod:`..passes`): max by integer keys; ``e_i = exp(x_i - m)`` summed block by block
while in L1 and kept (in the output row, or a compute-type scratch row) or, for long rows that
would need a scratch row, recomputed; ``y_i = e_i / s``. Memory traffic for rows that do not fit
in the caches: 3 reads + 2 writes per element for float32@float32 and float64@float64 (the terms
kept in the output row), 3 reads + 1 write for the other modes (terms recomputed).

Operations, each rounded in the compute mode (:mod:`..arith`): ``d_i = x_i - m`` (exact in float32
and float64 compute for most inputs; rounded to binary16 in float16 arithmetic), ``e_i = exp(d_i)``,
the sum ``s`` in the order of :mod:`..arith` (16 lanes per 2048-term block, a depth-4 tree, leftovers,
then the blocks in order; recursive in float16 arithmetic), ``y_i = e_i / s`` rounded to the
storage format (one rounding: float32 -> float16 when computing in float32, float64 -> float32
when computing in float64; exact in float16 arithmetic, whose quotient is already binary16).

Non-finite inputs give what these operations give:
- NaN anywhere: ``m`` is NaN (as ``np.max``), so the whole row is NaN.
- ``+inf`` anywhere (no NaN): ``m = inf``, ``inf - inf = NaN``, so the whole row is NaN.
- ``-inf`` entries in a row whose maximum is finite: ``exp(-inf) = 0``, output exactly 0.
- a row of only ``-inf``: ``-inf - (-inf) = NaN``, so the whole row is NaN.
"""
from __future__ import annotations

from ..arith import ON
from .rows import softmax_row, softmax_rows, softmax_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "ONE_ROW", "OPTIONS"]

#: The rows functions (row groups; few long rows, each split across threads; one row as 1-D
#: arrays) and its options (``shift``, ``leave_out``: :mod:`.rows`).
ROWS, SPLIT_ROWS, ONE_ROW = softmax_rows, softmax_split_rows, softmax_row
OPTIONS = (ON, None)
