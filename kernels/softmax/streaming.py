"""The softmax passes of the online and two-pass algorithms, written once over one option.

Both read the row twice and write it once (2 reads + 1 write per element, against the three-pass
algorithms' 3 + 1): pass 1 reduces the row to a pair (shift ``M``, sum ``S``) with
``S ~ sum_j exp(x_j - M)``, and pass 2 writes ``y_i = exp(x_i - M) / S``. The option ``exponent``
(None or :data:`..arith.ON`, decided by type in overloads, see :mod:`..arith`) chooses how a
shift is held:

- None, **online** (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"): the
  shift is a value, the running maximum; a term is ``exp(fl(x_j - M))`` and a sum is moved to a
  larger shift ``M'`` by ``fl(S * exp(fl(M - M')))``.
- ON, **two-pass** (Dukhan & Ablavatski 2020, "The two-pass softmax algorithm", arXiv
  2001.04438): the shift is an exponent ``K`` (a float holding an integer), the exponent part
  of ``exp`` of the running maximum; ``exp(x_j) = y_j 2**k_j`` with ``y_j`` in [0.7, 1.42]
  (:func:`..exp.exp_parts32`: the reduction of ``exp`` without its clamp), a term is
  ``y_j 2**(k_j - K)`` and a sum moves to ``K'`` by ``S 2**(K - K')``: multiplications by powers
  of two, exact except in the subnormal range. No subtraction ``x_j - M`` is rounded, so the terms
  carry only exp's own error (as the naive algorithm's), and nothing overflows (as shifted).

Operation order (both): the row is cut into blocks of :data:`..arith.BLOCK` terms from its start.
Block ``b``: its maximum ``m_b`` (integer keys, exact) and its shift ``h_b`` (online ``m_b``;
two-pass ``k(m_b)``, the largest ``k_j`` of the block since ``k`` is monotone); its terms
``e_j = term(x_j, h_b)`` and their sum ``S_b`` in the order of :func:`..arith.block_sum`, from 0.
Then the pairs are combined in block order from ``(M, S) = (-inf, 0)``: if ``h_b > M``,
``S = fl(move(S, M -> h_b) + S_b)``, ``M = h_b``; else ``S = fl(S + move(S_b, h_b -> M))`` (one
move, one rounded addition per block; a move by 0 is exact). The block pairs do not depend on
each other, so a long row split across threads computes them in parallel and combines them in
the same order: the result never depends on the schedule. Pass 2: ``y_i = fl(term(x_i, M) / S)``,
rounded once to the storage format. A row of one block (``n <= BLOCK``) combines exactly
(``move(0) = 0``, ``0 + S_0 = S_0``), so **online equals shifted bit for bit on such rows**
(tests/kernels/softmax/test_streaming.py runs these passes on them against shifted), and the
online rows function hands a batch of such rows to shifted's (:func:`.rows.softmax_rows`: short
rows in bundles, 3x faster than row by row on rows of 2 to 64 terms, 10x on rows of 2).

Two-pass domain: the extended exp is accurate for ``|x| <=`` :data:`..exp.PARTS_LIMIT32`
(1024, float32 compute), :data:`..exp.PARTS_LIMIT64` (2**30, float64) or 65536 (16-bit compute,
which evaluates the term in float64 and rounds it once: correctly rounded up to a float64 error
far below the 16-bit ULP). A row holding anything else (a larger finite value, +-inf, NaN) is
computed by the online algorithm instead, from its start (checked per block in pass 1; bounds
take the online bound for such rows).

Non-finite inputs (online, and so two-pass): NaN anywhere, or ``+inf``: a NaN row (``+inf``'s
term is ``exp(inf - inf)``); ``-inf`` entries in a row with a finite maximum: exactly 0 (a block
of only ``-inf`` contributes nothing: its pair is skipped); a row of only ``-inf``: NaN (``S = 0``
and ``exp(-inf - -inf)``), as :mod:`.shifted`.
"""
from __future__ import annotations

import numpy as np
from numba import prange, types

from softmax_bench.jit import linked_only_overload

from ..arith import (BLOCK, ON, _is_bf16, _is_f32, _is_half, block_sum, expc, kernel_entry_jit,
                     kernel_jit, key_range, key_to_max, load, minus_inf, put, rnd, zero)
from ..bfloat16 import round64_to_bf16
from ..exp import (PARTS_LIMIT32, PARTS_LIMIT64, exp_parts32, exp_parts64, scale_down32,
                   scale_down64)
from ..float16 import round64_to_half
from ..passes import (apart, block_on_stack, borrowed, compute_array, keep_alive, n_groups,
                      term)
from .rows import softmax_rows

__all__ = ["streaming_rows", "streaming_split_rows", "streamed_range", "PARTS_LIMIT16", "PARTS_LIMITS"]

#: The two-pass domain for 16-bit compute (every finite float16; bfloat16 beyond it falls back).
PARTS_LIMIT16 = 65536.0
#: compute precision -> largest |x| the two-pass algorithm takes (module docstring).
PARTS_LIMITS = {"float16": PARTS_LIMIT16, "bfloat16": PARTS_LIMIT16, "float32": PARTS_LIMIT32,
                "float64": PARTS_LIMIT64}


# ---------------------------------------------------------------------------------------------
# the option's operations (stubs for @overload, chosen by the type of ``exponent``)
# ---------------------------------------------------------------------------------------------
def block_shift(m, c, exponent):
    """The shift of a block whose maximum is ``m``: ``m`` (online) or ``k(m)`` (two-pass)."""


def block_term(v, h, c, exponent):
    """The term of storage element ``v`` under shift ``h``: ``exp(fl(x - h))`` or
    ``y 2**(k - h)``, in the compute mode."""


def own_block_term(v, h, c, exponent):
    """:func:`block_term` under the shift of ``v``'s own block (pass 1): online, that shift is
    the block's maximum, so the difference is ``<= 0`` or a NaN and :func:`..passes.term` (the
    shifted exp) gives the same bits with fewer operations."""


def move(s, d, c, exponent):
    """A sum moved to a shift larger by ``-d`` (``d = fl(h_old - h_new) <= 0``): ``fl(s exp(d))``
    or ``s 2**d``."""


def shift_difference(a, b, c, exponent):
    """``a - b`` for two shifts: rounded (online) or exact (two-pass: integers)."""


def in_domain(lo, hi, c, exponent):
    """Whether a block with minimum ``lo`` and maximum ``hi`` is inside the algorithm's domain:
    always (online); ``|x| <= PARTS_LIMIT`` (two-pass; False for NaN)."""


def exponent_of(m, c):
    """``k(m)``, the exponent part of the extended exp of ``m``, as a compute value (an integer,
    exact in float32: ``|k| <= 1.5 PARTS_LIMIT`` for every compute below float64)."""


@linked_only_overload(exponent_of)
def _ov_exponent_of(m, c):
    if _is_f32(c):
        return lambda m, c: exp_parts32(m)[1]
    if _is_half(c) or _is_bf16(c):
        return lambda m, c: np.float32(exp_parts64(np.float64(m))[1])
    return lambda m, c: exp_parts64(m)[1]


@linked_only_overload(block_shift)
def _ov_block_shift(m, c, exponent):
    if isinstance(exponent, types.NoneType):
        return lambda m, c, exponent: m
    return lambda m, c, exponent: exponent_of(m, c)


@linked_only_overload(block_term)
def _ov_block_term(v, h, c, exponent):
    if isinstance(exponent, types.NoneType):  # not term: in a row holding a NaN, a block
        # after the NaN's can hold values above the final shift M (any exp argument)
        return lambda v, h, c, exponent: expc(rnd(load(v, c) - h, c), c)
    if _is_half(c):
        def impl(v, h, c, exponent):
            y, k = exp_parts64(np.float64(load(v, c)))
            return round64_to_half(scale_down64(y, k - h))
        return impl
    if _is_bf16(c):
        def impl(v, h, c, exponent):
            y, k = exp_parts64(np.float64(load(v, c)))
            return round64_to_bf16(scale_down64(y, k - h))
        return impl
    if _is_f32(c):
        def impl(v, h, c, exponent):
            y, k = exp_parts32(load(v, c))
            return scale_down32(y, k - h)
        return impl

    def impl(v, h, c, exponent):
        y, k = exp_parts64(load(v, c))
        return scale_down64(y, k - h)
    return impl


@linked_only_overload(own_block_term)
def _ov_own_block_term(v, h, c, exponent):
    if isinstance(exponent, types.NoneType):
        return lambda v, h, c, exponent: term(v, h, c)
    return lambda v, h, c, exponent: block_term(v, h, c, exponent)


@linked_only_overload(move)
def _ov_move(s, d, c, exponent):
    if isinstance(exponent, types.NoneType):
        return lambda s, d, c, exponent: rnd(s * expc(d, c), c)
    if _is_half(c) or _is_bf16(c) or _is_f32(c):  # exact in float32, then one 16-bit rounding
        return lambda s, d, c, exponent: rnd(scale_down32(s, d), c)
    return lambda s, d, c, exponent: scale_down64(s, d)


@linked_only_overload(shift_difference)
def _ov_shift_difference(a, b, c, exponent):
    if isinstance(exponent, types.NoneType):
        return lambda a, b, c, exponent: rnd(a - b, c)
    return lambda a, b, c, exponent: a - b


@linked_only_overload(in_domain)
def _ov_in_domain(lo, hi, c, exponent):
    if isinstance(exponent, types.NoneType):
        return lambda lo, hi, c, exponent: True
    limit = PARTS_LIMITS["float16" if (_is_half(c) or _is_bf16(c)) else
                         "float32" if _is_f32(c) else "float64"]
    return lambda lo, hi, c, exponent: lo >= -limit and hi <= limit


# ---------------------------------------------------------------------------------------------
# the passes
# ---------------------------------------------------------------------------------------------
@kernel_jit
def block_pair(xb, eb, c, exponent):
    """Pass 1 of one block: (shift ``h_b``, sum ``S_b``, inside the domain). A block of only
    ``-inf`` gives ``(-inf, 0)``, which :func:`combine` skips."""
    hi, lo = key_range(xb)
    m = key_to_max(hi, lo, xb, c)
    ok = in_domain(key_to_max(lo, lo, xb, c), m, c, exponent)
    if not ok:
        return m, zero(c), False
    if m == -np.inf:
        return m, zero(c), True
    h = block_shift(m, c, exponent)
    for i in range(xb.size):
        eb[i] = own_block_term(xb[i], h, c, exponent)
    return h, block_sum(eb[: xb.size], zero(c), c), True


@kernel_jit
def combine(M, S, h, sb, c, exponent):
    """The running pair ``(M, S)`` combined with block pair ``(h, sb)`` (module docstring)."""
    if h == -np.inf:
        return M, S
    if h > M:
        return h, rnd(move(S, shift_difference(M, h, c, exponent), c, exponent) + sb, c)
    return M, rnd(S + move(sb, shift_difference(h, M, c, exponent), c, exponent), c)


@kernel_jit
def _pass1(x, eb, c, exponent):
    x = borrowed(x)
    M = minus_inf(c)
    S = zero(c)
    n = x.size
    for lo in range(0, n, BLOCK):
        h, sb, ok = block_pair(x[lo : min(lo + BLOCK, n)], eb, c, exponent)
        if not ok:
            return M, S, False
        M, S = combine(M, S, h, sb, c, exponent)
    return M, S, True


@kernel_jit
def write(xb, ob, M, S, c, exponent):
    """Pass 2 on a block: ``ob_i = fl(term(x_i, M) / S)``, stored once. Online, a sum ``S`` that
    is not NaN rules out a NaN and a ``+inf`` in the row (either makes a term NaN), so ``M`` is its
    maximum and every ``x_i - M`` is ``<= 0`` (or NaN, for a row of only ``-inf``): the shifted exp
    of :func:`..passes.term`, the same bits with fewer operations (float32 10^7 row: 0.96 of the
    time on one thread, 0.86 on two; float64 0.985). With a NaN sum the full exp, as in
    :func:`_ov_block_term`."""
    if exponent is None:
        if S == S:
            for i in range(xb.size):
                put(ob, i, rnd(term(xb[i], M, c) / S, c))
            return
    for i in range(xb.size):
        put(ob, i, rnd(block_term(xb[i], M, c, exponent) / S, c))


@kernel_jit
def _row(x, out, eb, c, exponent):
    M, S, ok = _pass1(x, eb, c, exponent)
    if ok:
        write(x, out, M, S, c, exponent)
    else:  # two-pass outside its domain: the online algorithm
        M, S, ok = _pass1(x, eb, c, None)
        write(x, out, M, S, c, None)


@kernel_jit(parallel=True)
def _split_pairs(x, c, threads, exponent):
    """Pass 1's block pairs of one long row, runs of blocks across threads."""
    n = x.size
    nb = (n + BLOCK - 1) // BLOCK
    hs = np.full(nb, zero(c))
    sbs = np.full(nb, zero(c))
    oks = np.zeros(nb, np.bool_)
    runs = min(threads, nb)
    for t in prange(runs):
        eb = compute_array(BLOCK, c)
        for b in range(t * nb // runs, (t + 1) * nb // runs):
            hs[b], sbs[b], oks[b] = block_pair(x[b * BLOCK : min((b + 1) * BLOCK, n)], eb, c,
                                               exponent)
    return hs, sbs, oks


@kernel_jit(parallel=True)
def _split_write(x, out, M, S, c, exponent):
    n = x.size
    nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        write(x[lo:hi], out[lo:hi], M, S, c, exponent)


@kernel_jit
def _combine_all(hs, sbs, c, exponent):
    M = minus_inf(c)
    S = zero(c)
    for b in range(hs.size):
        M, S = combine(M, S, hs[b], sbs[b], c, exponent)
    return M, S


@kernel_jit
def _split_row(x, out, c, threads, exponent):
    """One long row across threads; same result as :func:`_row`."""
    hs, sbs, oks = _split_pairs(x, c, threads, exponent)
    if oks.all():
        M, S = _combine_all(hs, sbs, c, exponent)
        _split_write(x, out, M, S, c, exponent)
    else:
        hs, sbs, oks = _split_pairs(x, c, threads, None)
        M, S = _combine_all(hs, sbs, c, None)
        _split_write(x, out, M, S, c, None)


@kernel_jit
def streamed_range(x, out, r0, r1, c, exponent):
    """Rows ``r0..r1-1`` on the calling thread, one after another, by the passes above."""
    x = borrowed(x)
    out = borrowed(out)
    eb = block_on_stack(c)
    for r in range(r0, r1):
        _row(x[r], out[r], eb, c, exponent)


def _as_shifted(x, out, c, threads, exponent):
    """Online rows of one block (``n <= BLOCK``), whose operations are shifted's (module
    docstring), done by shifted's rows function; True when done so. (Its compiled code is the
    shifted kernel's, typed and compiled once per process for both; shifted's row schedule
    called from the online row groups instead, as before, was compiled again into each online
    kernel: float32 online compiled after shifted in one process, 3.8 s then, 2.7 s now.)"""


@linked_only_overload(_as_shifted)
def _ov_as_shifted(x, out, c, threads, exponent):
    if isinstance(exponent, types.NoneType):
        def impl(x, out, c, threads, exponent):
            if x.shape[1] <= BLOCK:
                softmax_rows(x, out, c, threads, ON, None)
                return True
            return False
        return impl
    return lambda x, out, c, threads, exponent: False


@kernel_entry_jit(parallel=True)
def streaming_rows(x, out, c, threads, exponent):
    """Softmax of each row of the C-contiguous 2-D storage array ``x`` into ``out`` by the online
    (``exponent`` None) or two-pass (ON) algorithm, in row groups as :func:`..passes.n_groups`
    says. ``out`` may overlap ``x`` (:func:`..passes.apart`); the work runs on borrowed arrays
    (:func:`..passes.borrowed`)."""
    if _as_shifted(x, out, c, threads, exponent):
        return
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    rows, n = x.shape
    groups = n_groups(rows, n, threads)
    if groups == 1:  # (an int64 0: a literal 0 would compile streamed_range a second time)
        streamed_range(x, out, np.int64(0), rows, c, exponent)
    else:
        for g in prange(groups):
            streamed_range(x, out, g * rows // groups, (g + 1) * rows // groups, c, exponent)
    keep_alive(owner)


@kernel_entry_jit
def streaming_split_rows(x, out, c, threads, exponent):
    """As :func:`streaming_rows` (same bits), one row after another, each split across
    ``threads`` threads: for batches of a few long rows (:func:`..passes.splits`)."""
    owner = apart(x, out)
    x = borrowed(owner)
    out = borrowed(out)
    for r in range(x.shape[0]):
        _split_row(x[r], out[r], c, threads, exponent)
    keep_alive(owner)
