"""The softmax passes of every three-pass algorithm, written once over the algorithm's options
(the division-free softmax runs on :func:`..lse.lse_rows`).

An algorithm is a choice of two options (each None or :data:`.arith.ON`, pruned at compile time):

- ``shift``: subtract the row maximum ``m`` before ``exp`` (else ``exp(x_i)`` itself);
- ``leave_out``: leave the maximum's term (``exp(0) = 1``, the first index ``k`` where
  ``x_k = m``) out of the sum and add it last, ``s = 1 + sum_{i != k} e_i`` (Blanchard, Higham &
  Higham 2021, Alg. 4.1). The other terms are summed in the usual order with term ``k`` counted
  as 0 (:func:`..passes.sum_leaving_out`), so the summation depth is that of ``n`` terms.

Then ``y_i = e_i / s``, rounded once to the storage format. The schedule (one row, bundles of
short rows for the shifted algorithm, one long row split across threads, row groups in ``prange``)
is :mod:`..passes`'; every path runs the same operations in the same order, so where a row is
computed never changes it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from softmax_bench.jit import linked_only_overload

from ..arith import LANES, kernel_entry_jit, kernel_jit, one, rnd
from ..passes import (
    apart,
    borrowed,
    keep_alive,
    bundle_exp_sum,
    bundle_max_indices,
    bundle_shifts,
    bundle_rows,
    block_on_stack,
    bundle_buffers,
    bundle_scale,
    exp_sum,
    keeps_terms,
    lane_bundle,
    max_index,
    n_groups,
    new_buffer,
    row_shift,
    scale,
    shift_of,
    ahead_keys,
    split_exp_sum,
    split_shift,
    split_scale,
    takes_bundles,
    term_buffer,
)

__all__ = ["softmax_rows", "softmax_split_rows", "softmax_row", "rows_range"]


def _finish(s, c, leave_out):
    """The divisor: ``s``, or ``1 + s`` (one rounding) when the maximum's term was left out."""


@linked_only_overload(_finish)
def _ov_finish(s, c, leave_out):
    if isinstance(leave_out, types.NoneType):
        return lambda s, c, leave_out: s
    return lambda s, c, leave_out: rnd(one(c) + s, c)


@kernel_jit
def _row_sum(x, out, scratch, m, c, leave_out):
    """Pass 2 of one row on the calling thread, its shift ``m`` found already: the divisor."""
    k = max_index(x, m, c, leave_out)
    return _finish(exp_sum(x, m, k, out, scratch, c), c, leave_out)


@kernel_jit
def _split_row(x, out, scratch, c, threads, shift, leave_out):
    """One long row, each pass split into blocks across threads (same result as on one thread)."""
    m = split_shift(x, c, shift)
    k = max_index(x, m, c, leave_out)
    s = split_exp_sum(x, m, k, term_buffer(out, scratch), keeps_terms(x, out, c), c, threads)
    s = _finish(s, c, leave_out)
    split_scale(x, m, out, scratch, s, c)


@kernel_jit
def _bundle(xf, of, n, scratch, ms, ks, sums, c, shift, leave_out):
    """A bundle of short rows (flat views, ``n`` terms each); same operations as a row alone."""
    xf = borrowed(xf)
    of = borrowed(of)
    scratch = borrowed(scratch)
    ms = borrowed(ms)
    ks = borrowed(ks)
    g = xf.size // n
    bms = bundle_shifts(xf, n, ms[:g], c, shift)
    bks = bundle_max_indices(xf, n, bms, ks[:g], c, leave_out)
    bundle_exp_sum(xf, n, bms, bks, of, scratch, sums, c)
    for r in range(g):
        sums[r] = _finish(sums[r], c, leave_out)
    bundle_scale(of, scratch, n, sums, c)


@kernel_jit
def _rows_one_by_one(x, out, r0, r1, c, shift, leave_out):
    x = borrowed(x)
    out = borrowed(out)
    n = x.shape[1]
    scratch = new_buffer(n, x, out, c, block_on_stack(c))
    m = row_shift(x[r0], c, shift)
    for r in range(r0, r1):
        s = _row_sum(x[r], out[r], scratch, m, c, leave_out)
        if r + 1 < r1:  # pass 3 finds the next row's shift
            keys = scale(x[r], m, out[r], scratch, s, c, ahead_keys(x[r + 1], shift))
            m = shift_of(keys, x[r + 1], c, shift)
        else:
            scale(x[r], m, out[r], scratch, s, c, None)


@kernel_jit
def _rows_in_bundles(x, out, r0, r1, c, shift, leave_out):
    x = borrowed(x)
    out = borrowed(out)
    n = x.shape[1]
    per = bundle_rows(n)
    if per == 1 or r1 - r0 == 1:  # long rows, or one row (no bundle buffers: same operations)
        _rows_one_by_one(x, out, r0, r1, c, shift, leave_out)
        return
    size = min(per, r1 - r0)  # each bundle fills what it uses: no initial values needed
    stack = block_on_stack(c)
    ms, ks, sums = bundle_buffers(size, c)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    if n < LANES:  # rows as lanes (shifted only, as every bundle: see _schedule)
        for b0 in range(r0, r1, per):
            b1 = min(b0 + per, r1)
            lane_bundle(xf[b0 * n : b1 * n], of[b0 * n : b1 * n], n, stack, ms, sums, c)
        return
    scratch = new_buffer(size * n, x, out, c, stack)
    for b0 in range(r0, r1, per):
        b1 = min(b0 + per, r1)
        _bundle(xf[b0 * n : b1 * n], of[b0 * n : b1 * n], n, scratch, ms, ks, sums, c, shift,
                leave_out)


def _schedule(x, out, r0, r1, c, shift, leave_out):
    """:func:`rows_range`'s schedule, chosen by the algorithm (:func:`..passes.takes_bundles`:
    the shifted softmax, and so the online kernel's rows of one block, in bundles; naive and
    shifted_log1p one row after another)."""


@linked_only_overload(_schedule)
def _ov_schedule(x, out, r0, r1, c, shift, leave_out):
    if takes_bundles(shift, leave_out):
        return lambda x, out, r0, r1, c, shift, leave_out: _rows_in_bundles(
            x, out, r0, r1, c, shift, leave_out)
    return lambda x, out, r0, r1, c, shift, leave_out: _rows_one_by_one(
        x, out, r0, r1, c, shift, leave_out)


@kernel_jit
def rows_range(x, out, r0, r1, c, shift, leave_out):
    """Rows ``r0..r1-1`` on the calling thread: short rows in bundles (shifted only: see
    ``_schedule``), long rows one by one."""
    _schedule(x, out, r0, r1, c, shift, leave_out)


@kernel_entry_jit(parallel=True)
def softmax_rows(x, out, c, threads, shift, leave_out):
    """Softmax of each row of the C-contiguous 2-D storage array ``x`` into ``out``, with compute
    marker ``c``, on up to ``threads`` threads (row groups: :func:`..passes.n_groups`), for the
    algorithm given by the options ``shift`` and ``leave_out`` (module docstring). ``out`` may
    overlap ``x`` (:func:`..passes.apart`); the work runs on borrowed arrays
    (:func:`..passes.borrowed`)."""
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    rows, n = x.shape
    groups = n_groups(rows, n, threads)
    if groups == 1:  # (an int64 0: a literal 0 would compile rows_range a second time)
        rows_range(x, out, np.int64(0), rows, c, shift, leave_out)
    else:
        for g in prange(groups):
            rows_range(x, out, g * rows // groups, (g + 1) * rows // groups, c, shift, leave_out)
    keep_alive(owner)


@kernel_entry_jit
def softmax_split_rows(x, out, c, threads, shift, leave_out):
    """As :func:`softmax_rows` (same bits), one row after another, each split across ``threads``
    threads: for batches of a few long rows (:func:`..passes.splits`), float32/float64 compute."""
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    scratch = new_buffer(x.shape[1], x, out, c, None)  # (a split row is longer than a block)
    for r in range(x.shape[0]):
        _split_row(x[r], out[r], scratch, c, threads, shift, leave_out)
    keep_alive(owner)


@njit(error_model="numpy")  # not cached (kernel_entry_jit): loaded from numba's cache, it crashed
def softmax_row(x, out, c, threads, shift, leave_out):
    """:func:`softmax_rows` of one row given as 1-D arrays (for api.py's fast path: the new axis
    here costs less than ``x[None]`` and ``out[None]`` in Python, 0.09 us of a 1.2 us call on a
    1,000-element row; ``x[np.newaxis]`` is a C-contiguous 2-D view, as ``x.reshape(1, n)``,
    without the call to numba's reshape helper: 24 ns less for the two). Compiled in each
    process on its first call (0.4 s; it calls the cached rows function): loaded from numba's
    on-disk cache, this wrapper of a ``parallel=True`` function crashed the process (segfault)
    on its first call, where compiled in the process it runs (seen in the asv run of CI and
    reproduced, numba 0.68.1)."""
    softmax_rows(x[np.newaxis], out[np.newaxis], c, threads, shift, leave_out)
