"""The log-sum-exp reduction shared by the ``logsumexp``, ``log_softmax`` and division-free
softmax kernels, and their one rows function :func:`lse_rows`.

Per row, for the algorithm's options (each None or :data:`.arith.ON`, pruned at compile time, as
in :mod:`.softmax.rows`): ``shift`` subtracts the row maximum ``m`` before ``exp``; ``leave_out``
(with ``shift``) leaves the maximum's term out of the sum and takes ``log1p`` of the rest
(Blanchard, Higham & Higham 2021, Alg. 4.1). Every operation is rounded in the compute mode
(:mod:`.arith`):

- ``m`` by integer keys (:func:`.arith.row_max`; for the rows after the first of a batch's rows
  taken one by one, tracked in the previous row's output pass, as :func:`.passes.scale` does),
  ``k`` the first index with ``x_k = m``;
- ``e_i = exp(rnd(x_i - m))`` (naive: ``exp(x_i)``) block by block into an L1 buffer (log_softmax
  float32@float32, float64@float64: into the output row, :func:`row_terms_sum`), each block
  summed at once in the order of :func:`.arith.block_sum` (term ``k`` counted as 0 when left out);
- ``l = log(s)``, or ``l = log1p(s')`` when the maximum's term was left out (:func:`.arith.logc`,
  :func:`.arith.log1pc`).

logsumexp is ``f = l`` (naive) or ``rnd(m + l)``; log_softmax is ``y_i = rnd(x_i - l)`` (naive)
or ``rnd(rnd(x_i - m) - l)`` (as PyTorch orders it); the division-free softmax is
``y_i = exp(rnd(x_i - f))``; each rounded once more to the storage format when the compute format
is wider. Rows are scheduled in groups over threads (:func:`.passes.
n_groups`), short rows of the shifted algorithm in bundles (the same operations, vectorised
across rows: :func:`_bundle`, the terms kept in the output rows where they can be:
:func:`terms_home`; rows of fewer than :data:`.arith.LANES` terms as vector lanes:
:func:`_lane_bundle`). A batch of fewer rows than threads, of long rows, goes to
:func:`lse_split_rows` instead (float32/float64 compute), each row's passes split into blocks
across the threads, as :func:`.softmax.rows.softmax_split_rows` does for softmax.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from softmax_bench.jit import linked_only_overload

from .arith import (BLOCK, LANES, expc, kernel_entry_jit, kernel_jit, key_range_of, key_start,
                    key_step, load, log1pc, logc, nan_like, put, rnd, zero)
from .float16 import always_inline
from .passes import (ahead_keys, apart, block_on_stack, borrowed, bundle_buffers, bundle_exp_sum,
                     bundle_max_indices, bundle_rows, bundle_shifts, compute_array, exp_block,
                     exp_sum, index, keep_alive, lane_terms, max_index, n_groups, offset, row_shift,
                     shift_of, split_exp_sum, split_shift, stores_in_out, sum_leaving_out,
                     takes_bundles)

__all__ = ["lse_rows", "lse_row", "lse_split_rows", "LOGSUMEXP", "LOG_SOFTMAX", "DIVISION_FREE"]

#: What :func:`lse_rows` writes per row, chosen by the marker's *type* (as the compute markers
#: of :mod:`.arith`; the values do not matter): the logsumexp ``f`` (one value), the log_softmax
#: row ``rnd(x_i - m) - l``, or the division-free softmax row ``exp(rnd(x_i - f))``.
LOGSUMEXP, LOG_SOFTMAX, DIVISION_FREE = np.uint8(0), np.uint16(0), np.uint32(0)


@kernel_jit
def _sum_terms(x, m, k, buf, c):
    """The sum of the terms of row ``x`` (term ``k`` left out; ``k`` None: none), block by block
    through the L1 buffer ``buf``."""
    x = borrowed(x)
    buf = borrowed(buf)
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


@linked_only_overload(_log_of_sum)
def _ov_log_of_sum(s, c, leave_out):
    if isinstance(leave_out, types.NoneType):
        return lambda s, c, leave_out: logc(s, c)
    return lambda s, c, leave_out: log1pc(s, c)


def row_terms_sum(x, m, k, orow, buf, c, output):
    """:func:`_sum_terms` of row ``x``, for log_softmax float32@float32 and float64@float64 with
    the terms written into its output row ``orow`` instead of ``buf``, as softmax keeps its terms
    (:func:`.passes.exp_sum`; :func:`terms_home` does the same for bundles): the output pass then
    overwrites them, its stores no longer the first to reach ``orow``'s lines. Same terms, same
    sum. float32 4096 x 1024, one process, Zen 4: 0.78 of the time on one thread, 0.84 on two;
    float64 0.77; 64 x 128,000 on two threads 0.95; 1,024 x 600 (in cache) 1.01. Not for the
    division-free softmax, whose output pass computes an exp (4096 x 1024: 1.03)."""


@linked_only_overload(row_terms_sum)
def _ov_row_terms_sum(x, m, k, orow, buf, c, output):
    if output == types.uint16 and stores_in_out(orow, c):  # LOG_SOFTMAX, compute values
        return lambda x, m, k, orow, buf, c, output: exp_sum(x, m, k, orow, buf, c)
    return lambda x, m, k, orow, buf, c, output: _sum_terms(x, m, k, buf, c)


@kernel_jit
def log_of_sum(x, m, orow, buf, c, leave_out, output):
    """``l = log(s)``, or ``log1p(s')`` with ``leave_out``, for one row of shift ``m`` (None
    without ``shift``; module docstring), its terms where :func:`row_terms_sum` puts them."""
    k = max_index(x, m, c, leave_out)
    return _log_of_sum(row_terms_sum(x, m, k, orow, buf, c, output), c, leave_out)


@kernel_jit
def shift_back(m, l, c):
    """``rnd(m + l)`` (``m`` None: ``l``): the logsumexp from :func:`log_of_sum`. A NaN is made
    the positive quiet NaN: which NaN operand of ``m + l`` the code passes on (its sign and
    payload) depends on how LLVM ordered the commutative addition, which differed between a row
    alone and a row in a batch, and between builds of the same source."""
    f = l if m is None else rnd(m + l, c)
    return f if f == f else nan_like(c)


@kernel_jit
def shifted(v, m, c):
    """``rnd(x - m)`` for one storage element (``m`` None: ``x``)."""
    if m is None:
        return load(v, c)
    return rnd(load(v, c) - m, c)


def row_constant(m, l, c, output):
    """What every output element of a row takes beside its input (:func:`element`): ``l``
    (log_softmax), or the logsumexp ``f`` (:func:`shift_back`; the division-free softmax)."""


def element(v, m, a, c, output):
    """The output for one storage element ``v`` of a row of shift ``m`` and row constant ``a``
    (:func:`row_constant`): log_softmax ``rnd(rnd(x - m) - l)``, division-free softmax
    ``exp(rnd(x - f))``."""


@linked_only_overload(row_constant)
def _ov_row_constant(m, l, c, output):
    if output == types.uint16:  # LOG_SOFTMAX
        return lambda m, l, c, output: l
    return lambda m, l, c, output: shift_back(m, l, c)


@linked_only_overload(element)
def _ov_element(v, m, a, c, output):
    if output == types.uint16:  # LOG_SOFTMAX

        def impl(v, m, a, c, output):
            always_inline()
            return rnd(shifted(v, m, c) - a, c)

    elif output == types.uint32:  # DIVISION_FREE

        def impl(v, m, a, c, output):
            always_inline()
            return expc(rnd(load(v, c) - a, c), c)

    else:
        return None
    return impl


def write_row(xr, out, r, m, l, c, output, ahead):
    """Row ``r``'s output from its shift ``m`` and ``l`` (:func:`log_of_sum`), as ``output``
    selects; returns the key range of ``ahead`` (the next row's integer view, or None), tracked
    in the output pass as :func:`.passes.scale` does (logsumexp, which has no such pass, finds it
    in a pass of its own)."""


@linked_only_overload(write_row)
def _ov_write_row(xr, out, r, m, l, c, output, ahead):
    if output == types.uint8:  # LOGSUMEXP

        def impl(xr, out, r, m, l, c, output, ahead):
            put(out, r, shift_back(m, l, c))
            return key_range_of(ahead)

        return impl

    def impl(xr, out, r, m, l, c, output, ahead):  # LOG_SOFTMAX, DIVISION_FREE
        a = row_constant(m, l, c, output)
        orow = out[r]
        hi, lo = key_start(ahead)
        for i in range(xr.size):
            put(orow, i, element(xr[i], m, a, c, output))
            hi, lo = key_step(hi, lo, ahead, i)
        return hi, lo

    return impl


def terms_home(out, b0, b1, n, buf, output):
    """Where a bundle's terms go before its output pass: the bundle's own output rows (flat) for
    the outputs that are rows (log_softmax, division-free softmax), which the output pass then
    overwrites; ``buf`` for logsumexp (one value a row). :func:`.passes.term_buffer` takes the
    output rows only where they hold compute values (float32@float32, float64@float64). Why: out
    of cache the output pass's stores miss, and with nothing to compute but two subtractions it
    waits for them; stored among the exps, as softmax keeps its terms, the misses overlap them.
    log_softmax, against the terms in ``buf`` (one process, Zen 4, the same bits): float32 rows of
    32-256 0.85-0.95 of the time on one or two threads, float64 0.80-0.84, rows of 16 and the
    division-free softmax (its output pass computes an exp) 1.00."""


@linked_only_overload(terms_home)
def _ov_terms_home(out, b0, b1, n, buf, output):
    if output == types.uint8:  # LOGSUMEXP
        return lambda out, b0, b1, n, buf, output: buf
    return lambda out, b0, b1, n, buf, output: out.reshape(out.size)[b0 * n : b1 * n]


@kernel_jit
def _bundle(x, out, b0, b1, buf, ms, ks, sums, c, shift, leave_out, output):
    """Rows ``b0..b1-1``, short, as a bundle: their maxima, terms and sums by the bundle passes of
    :mod:`.passes` (the operations of :func:`log_of_sum`, in the same order, vectorised across
    the bundle's rows; the terms kept where :func:`terms_home` says), then each row's ``l`` and
    output."""
    x = borrowed(x)
    out = borrowed(out)
    buf = borrowed(buf)
    ms = borrowed(ms)
    ks = borrowed(ks)
    n = x.shape[1]
    g = b1 - b0
    xf = x.reshape(x.size)[b0 * n : b1 * n]
    bms = bundle_shifts(xf, n, ms[:g], c, shift)
    bks = bundle_max_indices(xf, n, bms, ks[:g], c, leave_out)
    bundle_exp_sum(xf, n, bms, bks, terms_home(out, b0, b1, n, buf, output), buf, sums, c)
    for r in range(g):  # the logarithms in a loop of their own: it vectorises (kernels/log.py)
        sums[r] = _log_of_sum(sums[r], c, leave_out)
    for r in range(g):
        write_row(x[b0 + r], out, b0 + r, index(bms, r), sums[r], c, output, None)


@kernel_jit
def _lane_bundle(x, out, b0, b1, columns, ms, sums, c, output):
    """Rows ``b0..b1-1``, of fewer than :data:`.arith.LANES` terms, as vector lanes: their maxima,
    terms and sums by :func:`.passes.lane_terms` (the operations of :func:`log_of_sum`, in the same
    order: the same bits), then each row's ``l`` and output. float32 logsumexp 65536 x 10 on 2
    threads: 303 us against 893 us by the bundle passes (log_softmax: 401 against 1,003 us; its
    output pass stays a loop per row, recomputing ``rnd(x - m)``, which the terms overwrote)."""
    x = borrowed(x)
    out = borrowed(out)
    n = x.shape[1]
    lane_terms(x.reshape(x.size)[b0 * n : b1 * n], n, columns, ms, sums, c)
    for r in range(b1 - b0):  # (no term left out in a bundle: l = log(s)), as in _bundle
        sums[r] = logc(sums[r], c)
    for r in range(b1 - b0):
        write_row(x[b0 + r], out, b0 + r, ms[r], sums[r], c, output, None)


@kernel_jit
def _rows_one_by_one(x, out, r0, r1, c, shift, leave_out, output):
    x = borrowed(x)
    out = borrowed(out)
    buf = block_on_stack(c)
    m = row_shift(x[r0], c, shift)
    for r in range(r0, r1):
        l = log_of_sum(x[r], m, out[r], buf, c, leave_out, output)
        if r + 1 < r1:  # the output pass finds the next row's shift
            keys = write_row(x[r], out, r, m, l, c, output, ahead_keys(x[r + 1], shift))
            m = shift_of(keys, x[r + 1], c, shift)
        else:
            write_row(x[r], out, r, m, l, c, output, None)


@kernel_jit
def _rows_in_bundles(x, out, r0, r1, c, shift, leave_out, output):
    x = borrowed(x)
    out = borrowed(out)
    per = bundle_rows(x.shape[1])
    if per == 1 or r1 - r0 == 1:
        _rows_one_by_one(x, out, r0, r1, c, shift, leave_out, output)
        return
    buf = block_on_stack(c)  # (bundle_rows keeps a bundle's terms within one block)
    size = min(per, r1 - r0)
    ms, ks, sums = bundle_buffers(size, c)
    if x.shape[1] < LANES:  # rows as lanes
        for b0 in range(r0, r1, per):
            _lane_bundle(x, out, b0, min(b0 + per, r1), buf, ms, sums, c, output)
        return
    for b0 in range(r0, r1, per):
        _bundle(x, out, b0, min(b0 + per, r1), buf, ms, ks, sums, c, shift, leave_out, output)


def _schedule(x, out, r0, r1, c, shift, leave_out, output):
    """Rows ``r0..r1-1`` on the calling thread, scheduled as :func:`.passes.takes_bundles` says
    for the algorithm (the shifted one's short rows in bundles: 2.4x faster on rows of 10)."""


@linked_only_overload(_schedule)
def _ov_schedule(x, out, r0, r1, c, shift, leave_out, output):
    if takes_bundles(shift, leave_out):
        return lambda x, out, r0, r1, c, shift, leave_out, output: _rows_in_bundles(
            x, out, r0, r1, c, shift, leave_out, output)
    return lambda x, out, r0, r1, c, shift, leave_out, output: _rows_one_by_one(
        x, out, r0, r1, c, shift, leave_out, output)


@kernel_jit
def _rows_range(x, out, r0, r1, c, shift, leave_out, output):
    # (a jit function over the overload: numba compiles an overload again for a prange body)
    _schedule(x, out, r0, r1, c, shift, leave_out, output)


@kernel_entry_jit(parallel=True)
def lse_rows(x, out, c, threads, shift, leave_out, output):
    """Every row of the C-contiguous 2-D storage array ``x``: ``(m, l)`` by the options'
    algorithm, then ``output``'s result into ``out`` (1-D for :data:`LOGSUMEXP`), with compute
    marker ``c``, rows in groups over up to ``threads`` threads. ``out`` may overlap ``x``
    (:func:`.passes.apart`); the work runs on borrowed arrays (:func:`.passes.borrowed`)."""
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    rows, n = x.shape
    groups = n_groups(rows, n, threads)  # (a few long rows go to lse_split_rows: api.py)
    if groups == 1:  # (an int64 0: a literal 0 would compile _rows_range a second time)
        _rows_range(x, out, np.int64(0), rows, c, shift, leave_out, output)
    else:
        for g in prange(groups):
            _rows_range(x, out, g * rows // groups, (g + 1) * rows // groups, c, shift, leave_out, output)
    keep_alive(owner)


@njit(error_model="numpy")  # not cached: as softmax.rows.softmax_row (the same crash)
def lse_row(x, out, c, threads, shift, leave_out, output):
    """:func:`lse_rows` of one row given as 1-D arrays, for the outputs that are rows (log_softmax,
    the division-free softmax): api.py's fast path for short 1-D rows, as
    :func:`.softmax.rows.softmax_row` is softmax's. Without it the path made the 2-D views in
    Python (``x[None]``, ``out[None]``): a float32 log_softmax call on a 1,000-element 1-D row took
    1.65 us against 1.38 us on the same row as a (1, 1,000) array (Zen 4, one process)."""
    lse_rows(x[np.newaxis], out[np.newaxis], c, threads, shift, leave_out, output)


# ---------------------------------------------------------------------------------------------
# a few long rows, each split across threads
# ---------------------------------------------------------------------------------------------
@kernel_jit
def _output_block(xb, ob, m, a, c, output):
    """The :func:`element` of each of the block ``xb`` of a row into ``ob``."""
    for i in range(xb.size):
        put(ob, i, element(xb[i], m, a, c, output))


@kernel_jit(parallel=True)
def _split_output(xr, orow, m, l, c, output):
    """The output pass of one long row (log_softmax, division-free softmax), its blocks across
    threads."""
    a = row_constant(m, l, c, output)
    n = xr.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        _output_block(xr[lo:hi], orow[lo:hi], m, a, c, output)


def _split_write_row(xr, out, r, m, l, c, output):
    """:func:`write_row` for a row split across threads (logsumexp: its one value)."""


@linked_only_overload(_split_write_row)
def _ov_split_write_row(xr, out, r, m, l, c, output):
    if output == types.uint8:  # LOGSUMEXP
        return lambda xr, out, r, m, l, c, output: put(out, r, shift_back(m, l, c))
    return lambda xr, out, r, m, l, c, output: _split_output(xr, out[r], m, l, c, output)


@kernel_entry_jit
def lse_split_rows(x, out, c, threads, shift, leave_out, output):
    """As :func:`lse_rows` (same bits), one row after another, each split across ``threads``
    threads: for batches of a few long rows (:func:`.passes.splits`), float32/float64 compute.
    The maximum, the sum (its block sums added in block order) and the output pass run on the
    threads; ``k`` (``leave_out``) and the logarithm once. A 10**7-element row on 2 threads: ~2x
    the speed of one thread."""
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    none_kept = compute_array(0, c)
    for r in range(x.shape[0]):
        xr = x[r]
        m = split_shift(xr, c, shift)
        k = max_index(xr, m, c, leave_out)
        l = _log_of_sum(split_exp_sum(xr, m, k, none_kept, False, c, threads), c, leave_out)
        _split_write_row(xr, out, r, m, l, c, output)
    keep_alive(owner)
