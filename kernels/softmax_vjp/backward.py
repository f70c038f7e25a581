"""The softmax backward pass given the stored forward output: ``z_i = y_i (g_i - <g, y>)``.

Operations, each rounded in the compute mode (:mod:`..arith`): ``p_j = fl(g_j y_j)``,
``c = sum_j p_j`` in the summation order of :func:`..arith.block_sum` (blocks of ``BLOCK``, 16
lanes, the fixed tree; recursive in 16-bit arithmetic), then ``z_i = fl(fl(g_i - c) y_i)``,
rounded once to the storage format. ``y`` and ``g`` are loaded exactly. This is PyTorch's CPU
order (``grad_input = output * (grad_output - sum(grad_output * output))``), with our lanes.

Rows are independent: a batch is cut into row groups run in ``prange`` (:func:`..passes.n_groups`;
a long row is never split, so every schedule gives the same bits). Non-finite values propagate
by IEEE arithmetic (a NaN or inf in ``y`` or ``g`` makes ``c``, and so the row, NaN or inf).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..arith import BLOCK, block_sum, kernel_entry_jit, kernel_jit, load, put, rnd, zero
from ..passes import block_on_stack, borrowed, n_groups

__all__ = ["vjp_rows"]


@kernel_jit
def _row(y, g, out, buf, c):
    buf = borrowed(buf)
    n = y.size
    s = zero(c)
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        pb = buf[: hi - lo]
        for i in range(hi - lo):
            pb[i] = rnd(load(g[lo + i], c) * load(y[lo + i], c), c)
        s = block_sum(pb, s, c)
    for i in range(n):
        put(out, i, rnd(rnd(load(g[i], c) - s, c) * load(y[i], c), c))


@kernel_jit
def _rows_range(y, g, out, r0, r1, c):
    y, g, out = borrowed(y), borrowed(g), borrowed(out)  # (views without owners: passes.borrowed)
    buf = block_on_stack(c)
    for r in range(r0, r1):
        _row(y[r], g[r], out[r], buf, c)


@kernel_entry_jit(parallel=True)
def vjp_rows(y, g, out, c, threads):
    """``out = y * (g - <g, y>)`` row by row for C-contiguous 2-D storage arrays (module
    docstring), with compute marker ``c``, on up to ``threads`` threads."""
    rows, n = y.shape
    groups = n_groups(rows, n, threads)
    if groups == 1:  # (an int64 0: a literal 0 would compile _rows_range a second time)
        _rows_range(y, g, out, np.int64(0), rows, c)
    else:
        for k in prange(groups):
            _rows_range(y, g, out, k * rows // groups, (k + 1) * rows // groups, c)
