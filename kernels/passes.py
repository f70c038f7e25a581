"""Passes shared by the softmax kernels: exponentiate-and-sum, scale, and the thread scheduling.

Every pass is generic in the storage row (float32, float64, or the uint16 view of float16) and in
the compute marker ``c`` (:mod:`.arith`); ``m`` is the shift subtracted before ``exp``, or ``None``
for no subtraction at all (numba prunes the ``m is None`` branch at compile time, so an unshifted
kernel really computes ``exp(x_i)``). Every term is ``e_i = exp(rnd(x_i - m))`` (:func:`term`),
computed the same way on every path, so where a row is computed never changes its result.

Pass structure and memory traffic
---------------------------------
An algorithm runs up to three passes over a row:

1. (shifted only) ``m = max(x)`` by integer keys (:func:`.arith.row_max`): 1 read. In a batch,
   the next row's keys are tracked by this row's pass 3 (:func:`scale`'s ``ahead``): its loads
   from memory then overlap arithmetic instead of stalling a pass of their own.
2. :func:`exp_sum`: the terms ``e_i``, block by block (:data:`.arith.BLOCK` terms), each block
   summed (:func:`.arith.block_sum`) right after it is computed, while it is in L1: 1 read.
3. :func:`scale`: ``y_i = e_i / s`` (one division, rounded once to the storage format): 1 read +
   1 write.

When the compute type is the storage type (float32@float32, float64@float64) the terms of pass 2
are *kept* in the output row itself and pass 3 divides in place: 3 reads + 2 writes per element
(shifted; naive has no pass 1). Otherwise they are kept in a scratch row of the compute type when
the row is shorter than :data:`RECOMPUTE_BYTES`, and *recomputed* in pass 3 for longer rows (pass 2
then only fills an L1-sized block buffer): 3 reads + 1 write of the storage type, and one more exp
per element, instead of a scratch row twice the storage size written and read again. (Measured on
a 2-core Zen 3 with 1e7-element rows: keeping in ``out`` beats recomputing for float32@float32 by
about 30%; recomputing beats a float64 scratch for float32@float64 by about 35%.) Kept or
recomputed, the terms are the same bits.

Short rows (``n < BLOCK // 4``; the shifted algorithm's, see :func:`.softmax.rows.rows_range`) go
in bundles of ``BLOCK // n`` rows (:func:`bundle_rows`): the terms of the whole bundle are computed
by one flat loop (one vector loop instead of one short loop per row whose scalar remainder would
dominate; rows of whole vectors row by row where that is faster: :func:`terms_by_row`), then
summed and divided row by row. Rows of fewer than :data:`.arith.LANES` terms
go further: each row of the bundle is a vector lane and every pass a loop over the rows
(:func:`lane_terms`; softmax's :func:`lane_bundle`, and the log-sum-exp kernels' through
:mod:`.lse`). (Longer rows go one by one: for float32 rows of 600-1,024 that was 5-15%
faster than bundles, the next row's maximum found in pass 3; 16-bit rows of 300-600 are faster
in bundles, float32 rows of 300 too.)

Threads
-------
The rows functions take the thread count as an argument (``numba.get_num_threads()`` from the
caller; calling it inside a cached function is not possible: numba "cannot cache ... dynamic
globals"). :func:`n_groups` decides how a rows function schedules a batch (:func:`splits`, in the
caller, whether it goes to the split rows function instead). Batches of fewer than
:data:`PARALLEL_MIN` elements, or with
one thread, run row after row on the calling thread (starting the worker threads costs
microseconds on an idle machine and milliseconds on a busy one). Other batches are cut into
contiguous row groups, one ``prange`` iteration per group (each group allocates its buffers once).
A batch with fewer rows than threads and rows of at least :data:`SPLIT_MIN` terms (:func:`splits`)
is instead done row by row, each row split into blocks across threads: block maxima, block terms
and block sums, and the division run in parallel; the block sums are added in block order by one
thread, so the sum is bit-identical to the single-thread order. That is a rows function of its own
(an algorithm's ``SPLIT_ROWS``, called by api.py), compiled on its first use: its three parallel
passes were 30% of a softmax kernel's compile time (2 s of 6.5), which a command that never meets
such a batch (the audit) need not pay. Only float32/float64 compute splits (:data:`.arith.SPLITTABLE`).
"""
from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array
from numba.np.numpy_support import as_dtype

# overloads linked only (no machine code of their own: compile time), but for those that a bundle
# of short rows runs per row, plain numba overloads (softmax_bench.jit.linked_only_overload)
from softmax_bench.jit import linked_only_overload

from .float16 import always_inline, target_has
from .arith import (BLOCK, LANES, block_sum, expc, expc_shifted, kernel_jit, key_start, key_step,
                    key_to_max, key_view, load, minus_inf, nan_like, put, rnd, row_max, zero)

__all__ = [
    "SPLIT_MIN",
    "splits",
    "PARALLEL_MIN",
    "RECOMPUTE_BYTES",
    "GROUPS_PER_THREAD",
    "term",
    "keeps_terms",
    "term_buffer",
    "new_buffer",
    "bundle_shifts",
    "bundle_max_indices",
    "block_on_stack",
    "bundle_buffers",
    "compute_array",
    "exp_sum",
    "first_max_index",
    "row_shift",
    "split_shift",
    "max_index",
    "sum_leaving_out",
    "scale",
    "ahead_keys",
    "takes_bundles",
    "shift_of",
    "bundle_rows",
    "bundle_max",
    "bundle_exp_sum",
    "bundle_scale",
    "lane_terms",
    "lane_bundle",
    "n_groups",
    "split_max",
    "split_exp_sum",
    "split_scale",
    "apart",
    "borrowed",
    "keep_alive",
]

#: Shortest row that is split across threads when a batch has fewer rows than threads.
SPLIT_MIN = 8 * BLOCK
#: Fewest elements (rows x n) worth a parallel region; smaller batches run on the calling thread.
PARALLEL_MIN = 1 << 15
#: Rows of at least this many bytes (storage) recompute their terms in pass 3 instead of keeping
#: them (about the size of the L2 caches of a few cores: beyond it every pass is a memory pass).
RECOMPUTE_BYTES = 4 << 20
#: Row groups per thread in a batch. numba's ``prange`` hands each thread an equal run of them
#: (static scheduling), so more than one does not even out uneven threads; dynamic chunks
#: (``numba.set_parallel_chunksize(1)``) measured no faster: 1.00-1.04x the time, Zen 4.
GROUPS_PER_THREAD = 4


def stores_in_out(out, c):
    """True when the terms can be kept in the output row itself (same float type)."""
    dt = out.dtype
    return (dt == types.float32 and c == types.float32) or (dt == types.float64 and c == types.float64)


@kernel_jit
def apart(x, out):
    """``x``, or a copy of it where its memory overlaps ``out``'s: a rows function writes ``out``
    while it still reads ``x``. (Deciding here, by address range, costs nanoseconds;
    ``np.may_share_memory`` in the caller cost 0.2 us, a tenth of a 1,000-element call.)"""
    xa = x.ctypes.data
    oa = out.ctypes.data
    if xa < oa + out.nbytes and oa < xa + x.nbytes:
        return x.copy()
    return x


@intrinsic
def borrowed(typingctx, x):
    """The array ``x`` (its data, shape and strides) without its owner: numba counts references
    to an array's owner on every view and call (an atomic increment and decrement each, ~40% of
    a 1-element row's time in the rows function); on an array without one the count is a null
    test. The caller keeps ``x`` itself alive while the borrowed array is in use
    (:func:`keep_alive` after its last use).

    Every function that makes views in a loop (a row or a block per iteration) borrows its array
    arguments again itself, though its caller passed borrowed ones: a function cannot see that
    its arguments have no owner, so numba emits for each view a call of ``NRT_incref`` and
    ``NRT_decref`` (not inlined; the null test is inside them), with ``vzeroupper`` and vector
    registers spilled around each call. Borrowed in the function, the owner is a null constant
    and the calls fold away: a bundle's per-row maxima of 16-term float32 rows 10 -> 6 ns a row
    (3.3 with :func:`.arith.row_max` inlined), the whole 65536 x 16 batch 2x faster. (An
    argument outlives the call, so no :func:`keep_alive` is needed there.)"""
    if not isinstance(x, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(x)(context, builder, value=args[0])
        dst = context.make_array(x)(context, builder)
        populate_array(dst, data=src.data, shape=src.shape, strides=src.strides,
                       itemsize=src.itemsize, meminfo=None)
        return dst._getvalue()

    return x(x), codegen


@intrinsic
def block_on_stack(typingctx, c):
    """An uninitialised array of :data:`.arith.BLOCK` compute values (8 or 16 KB) in the stack
    frame of the function that calls this (allocated once, on entry: free), without an owner
    (as :func:`borrowed`): a heap buffer costs an allocation, a free and two atomic counts,
    ~55 ns, a fifth of a 1,000-element 16-bit row's arithmetic. Valid until that function
    returns: it must not return the array or keep it beyond. Call it once per function: each
    call site is a slot of its own in the frame (worker threads have MBs of stack; a frame with
    a few of these stays within tens of KB)."""
    dtype = _compute_type(c)
    arrty = types.Array(dtype, 1, "C")

    def codegen(context, builder, signature, args):
        data = cgutils.alloca_once(builder, context.get_value_type(dtype), size=BLOCK)
        itemsize = context.get_constant(types.intp, dtype.bitwidth // 8)
        ary = context.make_array(arrty)(context, builder)
        populate_array(ary, data=data, shape=[context.get_constant(types.intp, BLOCK)],
                       strides=[itemsize], itemsize=itemsize, meminfo=None)
        return ary._getvalue()

    return arrty(c), codegen


@intrinsic
def keep_alive(typingctx, x):
    """A use of ``x`` that does nothing: numba releases a variable after its last use, so the
    owner of a :func:`borrowed` array must be used after the borrowed array's last use."""
    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return types.none(x), codegen


def exp_of_difference(d, m, c):
    """exp of a term's difference ``d = fl(x - m)`` (:func:`.arith.expc_shifted`: ``m`` is the
    maximum of ``x``'s row, NaN if the row holds a NaN, so ``d`` is ``<= 0`` or a NaN), or of
    ``d = x`` when ``m`` is None (:func:`.arith.expc`)."""


@linked_only_overload(exp_of_difference)
def _ov_exp_of_difference(d, m, c):
    if isinstance(m, types.NoneType):
        return lambda d, m, c: expc(d, c)
    return lambda d, m, c: expc_shifted(d, c)


@kernel_jit
def term(v, m, c):
    """``exp(x - m)`` for one storage element ``v``, each operation in the compute mode
    (``m`` None: ``exp(x)``), ``m`` the maximum of ``v``'s row."""
    return exp_of_difference(load(v, c) if m is None else rnd(load(v, c) - m, c), m, c)


def keeps_terms(x, out, c):
    """Whether the terms of storage row ``x`` are kept for pass 3 (else recomputed): always when
    they go into ``out`` itself, else when the row is shorter than :data:`RECOMPUTE_BYTES`."""


@linked_only_overload(keeps_terms)
def _ov_keeps_terms(x, out, c):
    if stores_in_out(out, c):
        return lambda x, out, c: True
    return lambda x, out, c: x.size * x.itemsize < RECOMPUTE_BYTES


def new_buffer(n, x, out, c, stack):
    """The buffer ``n`` terms held at once (a row's, or a bundle's of short rows) need, compute
    type: all ``n`` when they are kept but cannot go into ``out`` (``stack``, the caller's
    :func:`block_on_stack`, when they fit in it; None where they never do); one block when they
    are recomputed (rows of at least :data:`RECOMPUTE_BYTES`); none when they are kept in
    ``out`` (an empty view of ``out``: no allocation). ``x`` is a row (or any array) of the
    storage type."""


def term_buffer(out, scratch):
    """Where the kept terms of the current row go: ``out`` itself or ``scratch``."""


def compute_array(n, c):
    """An uninitialised array of ``n`` values of the compute value type of ``c``."""


def _compute_type(c):
    """The numba type of the compute values of marker type ``c`` (16-bit arithmetic is carried
    in float32 values)."""
    return types.float64 if c == types.float64 else types.float32


@overload(compute_array)
def _ov_compute_array(n, c):
    dtype = as_dtype(_compute_type(c))
    return lambda n, c: np.empty(n, dtype)


@kernel_jit
def bundle_buffers(size, c):
    """The per-row values of a bundle of up to ``size`` rows: shifts, maximum indices, sums."""
    return compute_array(size, c), np.empty(size, np.int64), compute_array(size, c)


@kernel_jit
def _heap_buffer(n, x, c):
    """:func:`new_buffer`'s heap cases."""
    if n * x.itemsize >= RECOMPUTE_BYTES:  # terms recomputed: one block buffer
        return compute_array(BLOCK, c)
    return compute_array(n, c)


@overload(new_buffer)
def _ov_new_buffer(n, x, out, c, stack):
    if stores_in_out(out, c):  # terms kept in out
        return lambda n, x, out, c, stack: out.ravel()[:0]

    if isinstance(stack, types.NoneType):
        return lambda n, x, out, c, stack: _heap_buffer(n, x, c)

    def impl(n, x, out, c, stack):
        if n <= BLOCK:
            return stack[:n]
        return _heap_buffer(n, x, c)

    return impl


@overload(term_buffer)
def _ov_term_buffer(out, scratch):
    if out.dtype == scratch.dtype:
        return lambda out, scratch: out
    return lambda out, scratch: scratch


def exp_block(xb, m, eb, c):
    """``eb[i] = term(xb[i])``."""


@kernel_jit
def _exp_block_fused(xb, m, eb, c):
    for i in range(xb.size):
        eb[i] = term(xb[i], m, c)


@kernel_jit
def _exp_block_split(xb, m, eb, c):
    for i in range(xb.size):  # the operations of term, in two loops
        eb[i] = load(xb[i], c) if m is None else rnd(load(xb[i], c) - m, c)
    for i in range(xb.size):
        eb[i] = exp_of_difference(eb[i], m, c)


def _load_converts(x, e):
    """Whether loading an element of the storage array ``x`` into the compute array ``e``
    converts it (16-bit or 8-bit storage, float32 computing in float64): numba array types, at
    compile time. Such a load vectorises better in a loop of its own: the two loops of
    :func:`exp_block` cost 14% less than one for float16@float32, 9% less for float32@float64, 5%
    less for bfloat16@float32, but 7% more for float32@float32."""
    return x.dtype != e.dtype


@linked_only_overload(exp_block)
def _ov_exp_block(xb, m, eb, c):
    if not _load_converts(xb, eb):
        return lambda xb, m, eb, c: _exp_block_fused(xb, m, eb, c)
    return lambda xb, m, eb, c: _exp_block_split(xb, m, eb, c)


# The pass-3 loops also track the keys of ``ahead``, the integer view of the next row to do (or
# None): the next row's maximum (its pass 1) is found while this row is divided, so its loads from
# memory overlap this row's divisions and stores instead of stalling a pass of their own (the
# three-pass float32 4096 x 1024 batch out of cache: ~10% faster). They return the key range.
@kernel_jit
def _scale_inplace(ob, s, c, ahead):
    # one array, not two views of it: LLVM's runtime alias check sends two aliasing views to the
    # scalar loop
    hi, lo = key_start(ahead)
    for i in range(ob.size):
        put(ob, i, rnd(ob[i] / s, c))
        hi, lo = key_step(hi, lo, ahead, i)
    return hi, lo


@kernel_jit
def _scale_from(eb, ob, s, c, ahead):
    hi, lo = key_start(ahead)
    for i in range(eb.size):
        put(ob, i, rnd(eb[i] / s, c))
        hi, lo = key_step(hi, lo, ahead, i)
    return hi, lo


@kernel_jit
def _exp_scale(xb, m, ob, s, c, ahead):
    hi, lo = key_start(ahead)
    for i in range(xb.size):
        put(ob, i, rnd(term(xb[i], m, c) / s, c))
        hi, lo = key_step(hi, lo, ahead, i)
    return hi, lo


def scale_range(out, scratch, lo, hi, s, c, ahead):
    """``out_i = e_i / s`` for ``lo <= i < hi``, rounded once to the storage format, the kept
    terms read from where :func:`term_buffer` put them; returns the key range of ``ahead``
    (``hi - lo`` keys, or None: see above)."""


@overload(scale_range)
def _ov_scale_range(out, scratch, lo, hi, s, c, ahead):
    if out.dtype == scratch.dtype:
        return lambda out, scratch, lo, hi, s, c, ahead: _scale_inplace(out[lo:hi], s, c, ahead)
    return lambda out, scratch, lo, hi, s, c, ahead: _scale_from(scratch[lo:hi], out[lo:hi], s, c,
                                                                 ahead)


def ahead_keys(nxt, shift):
    """What a pass 3 tracks the keys of: the integer view of the next row ``nxt`` when ``shift``
    is on, else None (no pass 1)."""


def shift_of(keys, nxt, c, shift):
    """The maximum of the row ``nxt`` from the key range ``keys`` of its :func:`ahead_keys`, or
    None when ``shift`` is off."""


@linked_only_overload(ahead_keys)
def _ov_ahead_keys(nxt, shift):
    if isinstance(shift, types.NoneType):
        return lambda nxt, shift: None
    return lambda nxt, shift: key_view(nxt)


@linked_only_overload(shift_of)
def _ov_shift_of(keys, nxt, c, shift):
    if isinstance(shift, types.NoneType):
        return lambda keys, nxt, c, shift: None
    return lambda keys, nxt, c, shift: key_to_max(keys[0], keys[1], nxt, c)


# ---------------------------------------------------------------------------------------------
# one row on the calling thread
# ---------------------------------------------------------------------------------------------
def offset(k, lo):
    """``k - lo``, or None when ``k`` is None (chosen by type: numba prunes ``k is None`` only
    when ``k`` is None, and an int ``k`` would otherwise make the result Optional)."""


def index(ks, r):
    """``ks[r]``, or None when ``ks`` is None (chosen by type, as :func:`offset`)."""


@linked_only_overload(offset)
def _ov_offset(k, lo):
    if isinstance(k, types.NoneType):
        return lambda k, lo: None
    return lambda k, lo: k - lo


@overload(index)
def _ov_index(ks, r):
    if isinstance(ks, types.NoneType):
        return lambda ks, r: None
    return lambda ks, r: ks[r]


def row_shift(x, c, shift):
    """The row maximum (:func:`.arith.row_max`) when ``shift`` is on, else None."""


def split_shift(x, c, shift):
    """The row maximum across threads (:func:`split_max`) when ``shift`` is on, else None."""


def max_index(x, m, c, leave_out):
    """:func:`first_max_index` when ``leave_out`` is on, else None."""


# numba prunes ``if opt is None`` only when ``opt`` *is* None: with an int8 option both branches
# stay and the variable becomes Optional (checked at run time, and broken in parallel regions).
# So the option decides by type, in overloads.
@linked_only_overload(row_shift)
def _ov_row_shift(x, c, shift):
    if isinstance(shift, types.NoneType):
        return lambda x, c, shift: None
    return lambda x, c, shift: row_max(x, c)


@linked_only_overload(split_shift)
def _ov_split_shift(x, c, shift):
    if isinstance(shift, types.NoneType):
        return lambda x, c, shift: None
    return lambda x, c, shift: split_max(x, c)


@linked_only_overload(max_index)
def _ov_max_index(x, m, c, leave_out):
    if isinstance(leave_out, types.NoneType):
        return lambda x, m, c, leave_out: None
    return lambda x, m, c, leave_out: first_max_index(x, m, c)


@kernel_jit
def sum_leaving_out(eb, j, s, c):
    """``s`` plus the terms of block ``eb`` in the order of :func:`.arith.block_sum`, with term
    ``j`` (if ``0 <= j < eb.size``; ``j`` None: none) counted as 0: the sum's order, and so its
    depth, is unchanged, and adding a zero is exact. The term itself is left in place."""
    always_inline()
    if j is None or j < 0 or j >= eb.size:
        return block_sum(eb, s, c)
    kept = eb[j]
    eb[j] = zero(c)
    s = block_sum(eb, s, c)
    eb[j] = kept
    return s


@kernel_jit
def first_max_index(x, m, c):
    """The first ``i`` with ``x_i == m`` (``m`` the row maximum, a compute value), -1 if none
    (``m`` NaN)."""
    for i in range(x.size):
        if load(x[i], c) == m:
            return i
    return -1


@kernel_jit
def exp_sum(x, m, k, out, scratch, c):
    """Pass 2 of one row: the terms, block by block, and their sum in the order of :mod:`.arith`
    (kept in ``out`` or ``scratch`` for pass 3 when :func:`keeps_terms`); term ``k`` left out of
    the sum (``k`` None: none)."""
    x = borrowed(x)
    out = borrowed(out)
    scratch = borrowed(scratch)
    keep = keeps_terms(x, out, c)
    kept = term_buffer(out, scratch)
    n = x.size
    s = zero(c)
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        eb = kept[lo:hi] if keep else scratch[: hi - lo]
        exp_block(x[lo:hi], m, eb, c)
        s = sum_leaving_out(eb, offset(k, lo), s, c)
    return s


@kernel_jit
def scale(x, m, out, scratch, s, c, ahead):
    """Pass 3 of one row: ``out_i = e_i / s``, the terms kept or recomputed; returns the key range
    of ``ahead`` (the next row's integer view, or None)."""
    if keeps_terms(x, out, c):
        return scale_range(out, scratch, 0, out.size, s, c, ahead)
    return _exp_scale(x, m, out, s, c, ahead)


# ---------------------------------------------------------------------------------------------
# bundles of short rows on the calling thread
# ---------------------------------------------------------------------------------------------
def takes_bundles(shift, leave_out) -> bool:
    """Whether the algorithm with these option *types* (at compile time, in a row schedule's
    overload) takes short rows in bundles: only the shifted one (``shift`` on, no left-out term),
    the one frameworks run and ``bench`` compares. The others take rows one by one: the bundle
    code cost each of their kernels 0.7-2 s more to compile (the default audit's cold start),
    and their short rows run 2-4x slower without it (naive float32 65536 x 10: 441 us in
    bundles, 1,749 us one by one; 4096 x 100: 83 and 161 us)."""
    return not isinstance(shift, types.NoneType) and isinstance(leave_out, types.NoneType)


@kernel_jit
def bundle_rows(n):
    """Rows per bundle for rows of ``n`` terms: ``BLOCK // n`` for short rows
    (``n < BLOCK // 4``), else 1 (rows one by one)."""
    return BLOCK // n if n < BLOCK // 4 else 1


@kernel_jit
def bundle_max(xf, n, ms, c):
    """Pass 1 for a bundle: ``ms[r]`` = maximum of row ``r`` of the flat rows ``xf``."""
    xf = borrowed(xf)
    ms = borrowed(ms)
    for r in range(xf.size // n):
        ms[r] = row_max(xf[r * n : (r + 1) * n], c)


def bundle_shifts(xf, n, ms, c, shift):
    """``ms`` filled with the maxima of the bundle's rows (:func:`bundle_max`) when
    ``shift`` is on, else None."""


def bundle_max_indices(xf, n, ms, ks, c, leave_out):
    """``ks`` filled with each row's first maximum index when ``leave_out`` is on, else None."""


@overload(bundle_shifts)
def _ov_bundle_shifts(xf, n, ms, c, shift):
    if isinstance(shift, types.NoneType):
        return lambda xf, n, ms, c, shift: None

    def impl(xf, n, ms, c, shift):
        bundle_max(xf, n, ms, c)
        return ms

    return impl


@kernel_jit
def _first_max_indices(xf, n, ms, ks, c):
    xf = borrowed(xf)
    for r in range(ks.size):
        ks[r] = first_max_index(xf[r * n : (r + 1) * n], ms[r], c)
    return ks


@overload(bundle_max_indices)
def _ov_bundle_max_indices(xf, n, ms, ks, c, leave_out):
    if isinstance(leave_out, types.NoneType):
        return lambda xf, n, ms, ks, c, leave_out: None
    return lambda xf, n, ms, ks, c, leave_out: _first_max_indices(xf, n, ms, ks, c)


@kernel_jit
def exp_inplace(e, c):
    """``e_k = exp(e_k)`` in the compute mode, for shifted differences ``e_k = x - max``
    (:func:`.arith.expc_shifted`)."""
    for k in range(e.size):
        e[k] = expc_shifted(e[k], c)


#: Shortest rows whose bundle terms are computed row by row in one loop (:func:`terms_by_row`).
FUSED_ROW_MIN = 48
#: Whether the target has 512-bit vectors (:func:`terms_by_row`).
WIDE_VECTORS = target_has("avx512f")


def terms_by_row(xf, e, n):
    """Whether a bundle's terms ``e = exp(x - m)`` are computed row by row in one loop, rather than
    as the differences row by row, then their exps in one loop over the whole bundle (same
    operations, same bits): on AVX-512 targets, when the load converts nothing
    (:func:`_load_converts`) and the rows are whole vectors, at least :data:`FUSED_ROW_MIN` terms
    (a row's loop would end in scalar exps otherwise). Out of cache, the exps then overlap the
    stores' cache misses, which the loop of differences alone waits for: float32 batches of rows
    of 48-496 terms (bundles stop below 512), one thread, 4-18% less time (8192 x 256: 0.82-0.84);
    in cache about the same (1,000 x 128: 1.03). Rows of 72 or 130 terms ran 5% slower
    so, shorter ones no faster; and AVX2 code, whose exps cost twice the time per term, 0.98-1.14
    (8192 x 256: 1.14)."""


@overload(terms_by_row)
def _ov_terms_by_row(xf, e, n):
    if _load_converts(xf, e) or not WIDE_VECTORS:
        return lambda xf, e, n: False
    return lambda xf, e, n: n >= FUSED_ROW_MIN and n % LANES == 0


@kernel_jit
def bundle_exp_sum(xf, n, ms, ks, of, scratch, sums, c):
    """Pass 2 for a bundle of short rows (flat views ``xf``, ``of``): the terms of the whole
    bundle (kept, in ``of`` or ``scratch``), then ``sums[r]`` = the sum of row ``r``, in the order
    of :func:`exp_sum`, term ``ks[r]`` of row ``r`` left out. ``ms`` None: no shift; ``ks`` None:
    nothing left out. Same operations as :func:`term`: the shifted difference is rounded, then
    exponentiated, in one loop per row or in two loops (:func:`terms_by_row`)."""
    xf = borrowed(xf)
    of = borrowed(of)
    scratch = borrowed(scratch)
    e = term_buffer(of, scratch)[: xf.size]
    g = xf.size // n
    if ms is None:
        for k in range(xf.size):
            e[k] = term(xf[k], None, c)
    elif terms_by_row(xf, e, n):
        for r in range(g):
            _exp_block_fused(xf[r * n : (r + 1) * n], ms[r], e[r * n : (r + 1) * n], c)
    else:
        for r in range(g):
            m = ms[r]
            xr = xf[r * n : (r + 1) * n]
            er = e[r * n : (r + 1) * n]
            for i in range(n):
                er[i] = rnd(load(xr[i], c) - m, c)
        exp_inplace(e, c)
    for r in range(g):
        sums[r] = sum_leaving_out(e[r * n : (r + 1) * n], index(ks, r), zero(c), c)


@kernel_jit
def bundle_scale(of, scratch, n, sums, c):
    """Pass 3 for a bundle: row ``r`` of the flat output ``of`` divided by ``sums[r]``."""
    of = borrowed(of)
    scratch = borrowed(scratch)
    for r in range(of.size // n):
        scale_range(of, scratch, r * n, (r + 1) * n, sums[r], c, None)


@kernel_jit
def lane_terms(xf, n, columns, ms, sums, c):
    """The maxima ``ms``, terms and sums ``sums`` of a bundle of shifted rows of ``n < LANES``
    terms (flat view ``xf``), each row a vector lane: the bundle is copied column by column into
    ``columns`` (compute type, ``columns[j g + r] = x_rj`` for its ``g`` rows), so that every pass
    is a loop over the rows, one vector operation for 8 or 16 of them, instead of a loop of
    ``n`` terms per row, whose set-up and scalar remainder cost more than its terms. The terms
    stay in ``columns``, column by column.

    Same operations in the same order as :func:`bundle_max` and :func:`bundle_exp_sum`, so the
    same bits: a sum of fewer than :data:`.arith.LANES` terms in :func:`.arith.block_sum`'s order
    is recursive from 0, ``((0 + e_0) + e_1) + ...``, which is the running sum down a column. The
    maximum is found by comparisons, a NaN made :func:`.arith.nan_like` as
    :func:`.arith.key_to_max` gives it; where the keys give +0 this may give -0 (a row holding
    both zeros, -0 first), which changes no term: ``x - (-0) = x - (+0)`` for every ``x`` but -0,
    whose term is ``exp(+-0) = 1`` either way; nor a log-softmax output ``rnd(x - m) - l``, as
    that row's sum is at least 2, so ``l > 0`` absorbs the zero's sign."""
    g = xf.size // n
    for r in range(g):
        ms[r] = minus_inf(c)
        sums[r] = zero(c)
    for j in range(n):
        for r in range(g):
            v = load(xf[r * n + j], c)
            columns[j * g + r] = v
            m = ms[r]
            ms[r] = v if (v > m or v != v) else m
    for r in range(g):
        if ms[r] != ms[r]:
            ms[r] = nan_like(c)
    for j in range(n):
        for r in range(g):
            columns[j * g + r] = rnd(columns[j * g + r] - ms[r], c)
    exp_inplace(columns[: g * n], c)
    for j in range(n):
        for r in range(g):
            sums[r] = rnd(sums[r] + columns[j * g + r], c)


@kernel_jit
def lane_bundle(xf, of, n, columns, ms, sums, c):
    """A bundle of shifted softmax rows of ``n < LANES`` terms (flat views ``xf``, ``of``) as
    vector lanes (:func:`lane_terms`), divided as :func:`bundle_scale` divides them, in place,
    then stored column by column: float32 1,000 x 10 on one thread 13.3 us against 27.9 us by
    the row loops; 1,000 x 2: 3.4 against 24.5 us; 1,000 x 15: 19.3 against 36.9 us. Slower than
    the row loops from about 20 terms on (the two transposes cost ~1 ns per element). The
    divisions in a loop of their own, not in the strided stores' loop: that loop's divisions did
    not vectorise (65536 rows of 2-15 terms, one thread, Zen 4: 0.76-0.84 of the time, float64
    rows of 10 0.84; same operations, same bits). Stored row by row instead (contiguous stores,
    strided loads): 1.13-1.28x slower."""
    lane_terms(xf, n, columns, ms, sums, c)
    g = xf.size // n
    for j in range(n):
        for r in range(g):
            columns[j * g + r] = rnd(columns[j * g + r] / sums[r], c)
    for j in range(n):
        for r in range(g):
            put(of, r * n + j, columns[j * g + r])


# ---------------------------------------------------------------------------------------------
# scheduling, and one long row split across threads
# ---------------------------------------------------------------------------------------------
def splits(rows: int, n: int, threads: int) -> bool:
    """Whether a (rows, n) batch on ``threads`` threads is done one row after another, each row
    split across the threads (module docstring): fewer rows than threads, long rows, a batch
    worth a parallel region."""
    return 1 < threads and rows < threads and n >= SPLIT_MIN and rows * n >= PARALLEL_MIN


@kernel_jit
def n_groups(rows, n, threads):
    """How a (rows, n) batch is scheduled by a rows function: 1 for all rows on the calling
    thread (small batches, one thread), else that many row groups for a ``prange`` loop."""
    if threads <= 1 or rows * n < PARALLEL_MIN:
        return 1
    return max(1, min(rows, GROUPS_PER_THREAD * threads))


@kernel_jit(parallel=True)
def split_max(x, c):
    """Pass 1 of one long row, split into blocks across threads (NaN if the row holds a NaN)."""
    n = x.size
    nb = (n + BLOCK - 1) // BLOCK
    ms = np.full(nb, zero(c))
    for k in prange(nb):
        ms[k] = row_max(x[k * BLOCK : min((k + 1) * BLOCK, n)], c)
    m = ms[0]
    for k in range(1, nb):
        if ms[k] > m or ms[k] != ms[k]:
            m = ms[k]
    return m


@kernel_jit(parallel=True)
def split_exp_sum(x, m, k, kept, keep, c, threads):
    """Pass 2 of one long row across threads (contiguous runs of blocks, one per thread): the
    terms kept in ``kept`` when ``keep`` (:func:`keeps_terms`, :func:`term_buffer`), else
    through a block buffer per thread; the block sums are added in block order, so the result
    equals :func:`exp_sum`'s (and the log-sum-exp kernels' sum's) bit for bit."""
    n = x.size
    nb = (n + BLOCK - 1) // BLOCK
    bs = np.full(nb, zero(c))
    runs = min(threads, nb)
    for t in prange(runs):
        buf = compute_array(0 if keep else BLOCK, c)
        for b in range(t * nb // runs, (t + 1) * nb // runs):
            lo = b * BLOCK
            hi = min(lo + BLOCK, n)
            eb = kept[lo:hi] if keep else buf[: hi - lo]
            exp_block(x[lo:hi], m, eb, c)
            bs[b] = sum_leaving_out(eb, offset(k, lo), zero(c), c)
    s = zero(c)
    for b in range(nb):
        s = s + bs[b]
    return s


@kernel_jit(parallel=True)
def split_scale(x, m, out, scratch, s, c):
    """Pass 3 of one long row across threads, the terms kept or recomputed."""
    keep = keeps_terms(x, out, c)
    n = out.size
    nb = (n + BLOCK - 1) // BLOCK
    for k in prange(nb):
        lo = k * BLOCK
        hi = min(lo + BLOCK, n)
        if keep:
            scale_range(out, scratch, lo, hi, s, c, None)
        else:
            _exp_scale(x[lo:hi], m, out[lo:hi], s, c, None)
