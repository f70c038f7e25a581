"""The log-sum-exp reduction shared by the ``logsumexp`` and ``log_softmax`` kernels.

Per row, for the algorithm's options (each None or :data:`.arith.ON`, pruned at compile time, as
in :mod:`.softmax.rows`): ``shift`` subtracts the row maximum ``m`` before ``exp``; ``leave_out``
(with ``shift``) leaves the maximum's term out of the sum and takes ``log1p`` of the rest
(Blanchard, Higham & Higham 2021, Alg. 4.1). Every operation is rounded in the compute mode
(:mod:`.arith`):

- ``m`` by integer keys (:func:`.arith.row_max`), ``k`` the first index with ``x_k = m``;
- ``e_i = exp(rnd(x_i - m))`` (naive: ``exp(x_i)``) block by block into an L1 buffer, each block
  summed at once in the order of :func:`.arith.block_sum` (term ``k`` counted as 0 when left out);
- ``l = log(s)``, or ``l = log1p(s')`` when the maximum's term was left out (:func:`.arith.logc`,
  :func:`.arith.log1pc`).

logsumexp is ``l`` (naive) or ``rnd(m + l)``; log_softmax is ``y_i = rnd(x_i - l)`` (naive) or
``rnd(rnd(x_i - m) - l)`` (as PyTorch orders it); each rounded once more to the storage format
when the compute format is wider. Rows are scheduled in groups over threads (:func:`.passes.
n_groups`); a single long row runs on one thread.
"""
from __future__ import annotations

from numba import types
from numba.extending import overload

from .arith import BLOCK, kernel_jit, load, log1pc, logc, rnd, zero
from .passes import SPLIT, exp_block, max_index, n_groups, offset, row_shift, sum_leaving_out

__all__ = ["lse_parts", "shift_back", "shifted", "row_groups"]


@kernel_jit
def _sum_terms(x, m, k, buf, c):
    """The sum of the terms of row ``x`` (term ``k`` left out; ``k`` None: none), block by block
    through the L1 buffer ``buf``."""
    n = x.size
    s = zero(c)
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        eb = buf[: hi - lo]
        exp_block(x[lo:hi], m, eb, c)
        s = sum_leaving_out(eb, offset(k, lo), s, c)
    return s


def _log_of_sum(s, c, leave_out):
    """``log(s)``, or ``log1p(s)`` when the maximum's term was left out of ``s``."""


@overload(_log_of_sum)
def _ov_log_of_sum(s, c, leave_out):
    if isinstance(leave_out, types.NoneType):
        return lambda s, c, leave_out: logc(s, c)
    return lambda s, c, leave_out: log1pc(s, c)


@kernel_jit
def lse_parts(x, buf, c, shift, leave_out):
    """``(m, l)`` for one row: the shift (None without ``shift``) and ``l = log(s)``, or
    ``log1p(s')`` with ``leave_out`` (module docstring)."""
    m = row_shift(x, c, shift)
    return m, _log_of_sum(_sum_terms(x, m, max_index(x, m, c, leave_out), buf, c), c, leave_out)


@kernel_jit
def shift_back(m, l, c):
    """``rnd(m + l)`` (``m`` None: ``l``): the logsumexp from :func:`lse_parts`."""
    if m is None:
        return l
    return rnd(m + l, c)


@kernel_jit
def shifted(v, m, c):
    """``rnd(x - m)`` for one storage element (``m`` None: ``x``)."""
    if m is None:
        return load(v, c)
    return rnd(load(v, c) - m, c)


@kernel_jit
def row_groups(rows, n, c, threads):
    """Row groups for a ``prange`` loop (1: the calling thread only); never splits a row."""
    g = n_groups(rows, n, c, threads)
    return 1 if g == SPLIT else g

