"""The logsumexp rows function, written once over the algorithm's options (:mod:`..lse`)."""
from __future__ import annotations

from numba import prange

from ..arith import BLOCK, kernel_jit, put
from ..lse import lse_parts, row_groups, shift_back
from ..passes import compute_array

__all__ = ["logsumexp_rows"]


@kernel_jit
def _rows_range(x, out, r0, r1, c, shift, leave_out):
    buf = compute_array(BLOCK, c)
    for r in range(r0, r1):
        m, l = lse_parts(x[r], buf, c, shift, leave_out)
        put(out, r, shift_back(m, l, c))


@kernel_jit(parallel=True)
def logsumexp_rows(x, out, c, threads, shift, leave_out):
    """``out[r]`` = logsumexp of row ``r`` of the C-contiguous 2-D storage array ``x`` (``out``:
    1-D, storage dtype), compute marker ``c``, up to ``threads`` threads."""
    rows, n = x.shape
    groups = row_groups(rows, n, c, threads)
    if groups == 1:
        _rows_range(x, out, 0, rows, c, shift, leave_out)
    else:
        for g in prange(groups):
            _rows_range(x, out, g * rows // groups, (g + 1) * rows // groups, c, shift, leave_out)
