"""The log_softmax rows function, written once over the algorithm's options (:mod:`..lse`)."""
from __future__ import annotations

from numba import prange

from ..arith import BLOCK, kernel_jit, put, rnd
from ..lse import lse_parts, row_groups, shifted
from ..passes import compute_array

__all__ = ["log_softmax_rows"]


@kernel_jit
def _rows_range(x, out, r0, r1, c, shift, leave_out):
    buf = compute_array(BLOCK, c)
    for r in range(r0, r1):
        xr = x[r]
        orow = out[r]
        m, l = lse_parts(xr, buf, c, shift, leave_out)
        for i in range(xr.size):
            put(orow, i, rnd(shifted(xr[i], m, c) - l, c))


@kernel_jit(parallel=True)
def log_softmax_rows(x, out, c, threads, shift, leave_out):
    """log_softmax of each row of the C-contiguous 2-D storage array ``x`` into ``out``, compute
    marker ``c``, up to ``threads`` threads."""
    rows, n = x.shape
    groups = row_groups(rows, n, c, threads)
    if groups == 1:
        _rows_range(x, out, 0, rows, c, shift, leave_out)
    else:
        for g in prange(groups):
            _rows_range(x, out, g * rows // groups, (g + 1) * rows // groups, c, shift, leave_out)
