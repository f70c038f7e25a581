"""Shifted ("safe") softmax: ``y_i = exp(x_i - m) / sum_j exp(x_j - m)`` with ``m = max_j x_j``.

Every exponent is ``<= 0``, so no ``exp`` overflows; the largest term is ``exp(0) = 1``, so the sum
is ``>= 1`` (no division by zero) and at least one output is non-zero: a finite row never gives NaN,
inf or an all-zero output.

Passes (see :mod:`.passes`): max by integer keys; ``e_i = exp(x_i - m)`` summed block by block
while in L1 and kept (in the output row, or a compute-type scratch row) or, for long rows that
would need a scratch row, recomputed; ``y_i = e_i / s``. Memory traffic for rows that do not fit
in the caches: 3 reads + 2 writes per element for float32@float32 and float64@float64 (the terms
kept in the output row), 3 reads + 1 write for the other modes (terms recomputed).

Operations, each rounded in the compute mode (:mod:`.arith`): ``d_i = x_i - m`` (exact in float32
and float64 compute for most inputs; rounded to binary16 in float16 arithmetic), ``e_i = exp(d_i)``,
the sum ``s`` in the order of :mod:`.arith` (16 lanes per 2048-term block, a depth-4 tree, leftovers,
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

import numpy as np
from numba import prange

from .arith import kernel_jit, row_max, zero
from .passes import (
    SPLIT,
    bundle_exp_sum,
    bundle_max,
    bundle_rows,
    bundle_scale,
    exp_sum,
    n_groups,
    new_buffer,
    scale,
    split_exp_sum,
    split_max,
    split_scale,
)

__all__ = ["shifted_rows"]


@kernel_jit
def _row(x, out, scratch, c):
    """One row on the calling thread."""
    m = row_max(x, c)
    s = exp_sum(x, m, out, scratch, c)
    scale(x, m, out, scratch, s, c)


@kernel_jit
def _split_row(x, out, scratch, c, threads):
    """One long row, each pass split into blocks across threads (same result as :func:`_row`)."""
    m = split_max(x, c)
    s = split_exp_sum(x, m, out, scratch, c, threads)
    split_scale(x, m, out, scratch, s, c)


@kernel_jit
def _bundle(xf, of, n, scratch, ms, sums, c):
    """A bundle of short rows (flat views, ``n`` terms each); same operations as :func:`_row`."""
    bundle_max(xf, n, ms, c)
    bundle_exp_sum(xf, n, ms, of, scratch, sums, c)
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
def shifted_rows(x, out, c, threads):
    """Shifted softmax of each row of the C-contiguous 2-D storage array ``x`` into ``out``, with
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
