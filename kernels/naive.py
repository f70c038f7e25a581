"""Naive (textbook) softmax: ``y_i = exp(x_i) / sum_j exp(x_j)``, really.

No shift and no wider type than the compute mode: ``exp`` overflows to inf once ``x_i`` passes
ln(largest finite) of the compute format (float16 11.09, float32 88.72, float64 709.78), and every
term underflows to 0 once every ``x_i`` is below ln(smallest subnormal / 2) (float16 -17.33,
float32 -103.97, float64 -745.13).

Passes (see :mod:`.passes`): ``e_i = exp(x_i)`` summed block by block while in L1 and kept (in
the output row, or a compute-type scratch row) or, for long rows that would need a scratch row,
recomputed; ``y_i = e_i / s``. Memory traffic for rows that do not fit in the caches: 2 reads +
2 writes per element for float32@float32 and float64@float64, 2 reads + 1 write for the other
modes. Summation order: as
:mod:`.arith` (16 lanes per 2048-term block, a depth-4 tree, leftovers, then the blocks in order;
recursive in float16 arithmetic). ``y_i = e_i / s`` is rounded once to the storage format.

What the operations give at the edges (this is the point of the naive kernel):
- an overflowing term: ``s = inf``, so that entry is ``inf/inf = NaN`` and the finite ones are 0;
- every term underflows: ``s = 0``, so the row is ``0/0 = NaN``;
- NaN anywhere: the sum is NaN, so the row is NaN; ``+inf`` entries: NaN there, 0 elsewhere;
  ``-inf`` entries: 0; a row of only ``-inf``: ``0/0 = NaN``.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .arith import kernel_jit, zero
from .passes import (
    SPLIT,
    bundle_exp_sum,
    bundle_rows,
    bundle_scale,
    exp_sum,
    n_groups,
    new_buffer,
    scale,
    split_exp_sum,
    split_scale,
)

__all__ = ["naive_rows"]


@kernel_jit
def _row(x, out, scratch, c):
    """One row on the calling thread."""
    s = exp_sum(x, None, out, scratch, c)
    scale(x, None, out, scratch, s, c)


@kernel_jit
def _split_row(x, out, scratch, c, threads):
    """One long row, each pass split into blocks across threads (same result as :func:`_row`)."""
    s = split_exp_sum(x, None, out, scratch, c, threads)
    split_scale(x, None, out, scratch, s, c)


@kernel_jit
def _bundle(xf, of, n, scratch, ms, sums, c):
    """A bundle of short rows (flat views, ``n`` terms each); same operations as :func:`_row`."""
    bundle_exp_sum(xf, n, None, of, scratch, sums, c)
    bundle_scale(of, scratch, n, sums, c)


@kernel_jit
def _rows_range(x, out, r0, r1, c):
    """Rows ``r0..r1-1`` on the calling thread: short rows in bundles, long rows one by one."""
    n = x.shape[1]
    scratch = new_buffer(n, x, out, c)
    per = bundle_rows(n)
    if per == 1:
        for r in range(r0, r1):
            _row(x[r], out[r], scratch, c)
    else:
        ms = np.full(per, zero(c))
        sums = np.full(per, zero(c))
        xf = x.reshape(x.size)
        of = out.reshape(out.size)
        for b0 in range(r0, r1, per):
            b1 = min(b0 + per, r1)
            _bundle(xf[b0 * n : b1 * n], of[b0 * n : b1 * n], n, scratch, ms, sums, c)


@kernel_jit(parallel=True)
def naive_rows(x, out, c, threads):
    """Naive softmax of each row of the C-contiguous 2-D storage array ``x`` into ``out``, with
    compute marker ``c`` on up to ``threads`` threads (scheduling: :func:`.passes.n_groups`)."""
    rows, n = x.shape
    groups = n_groups(rows, n, c, threads)
    if groups == SPLIT:
        scratch = new_buffer(n, x, out, c)
        for r in range(rows):
            _split_row(x[r], out[r], scratch, c, threads)
    elif groups == 1:
        _rows_range(x, out, 0, rows, c)
    else:
        for g in prange(groups):
            _rows_range(x, out, g * rows // groups, (g + 1) * rows // groups, c)
