"""Compute modes: how a kernel loads, rounds, exponentiates, sums and stores.

A kernel is written once, generically, over a *storage* array (what the caller holds) and a
*compute mode* (the arithmetic it runs in). numba specialises it at compile time on the **type** of
a ``compute`` marker argument, and the small element operations below are numba ``@overload``
functions that pick their implementation from the storage and marker types. So one source
definition per algorithm gives every (storage, compute) specialisation, with no copy per dtype,
and every specialisation is an ordinary cached numba compilation.

Why markers and overloads, not njit functions passed as arguments or captured by a factory: numba
cannot cache either. A dispatcher passed as an argument or captured in a closure enters the cache
key through its pickled state, which holds a per-process random UUID, so every new process misses
the cache, recompiles and writes another cache file (measured with numba 0.68.1). Type markers are
plain numba types, so ``cache=True`` hits across processes.

Compute markers (:data:`COMPUTE_MARKERS`)
-----------------------------------------
========== ================= ===================================================================
compute    marker            arithmetic
========== ================= ===================================================================
float16    ``np.uint16(0)``  binary16 arithmetic: every subtract, exp, add and divide is rounded
                             to binary16 (float32 operation then :func:`.float16.round_half`, which is
                             correctly rounded binary16 arithmetic since 24 >= 2*11 + 2; exp is
                             :func:`exp16`, correctly rounded). numba has no float16 type, so the
                             marker is the uint16 bits container. Values travel as float32.
float32    ``np.float32(0)`` float32 arithmetic (loads widen binary16 exactly, stores round once).
float64    ``np.float64(0)`` float64 arithmetic (loads widen exactly, stores round once).
========== ================= ===================================================================

Supported (storage, compute) pairs: (float16, float16), (float16, float32), (bfloat16, bfloat16),
(bfloat16, float32), (float8_e4m3fn, float32), (float8_e5m2, float32), (float32, float32),
(float32, float64), (float64, float64). The narrow formats enter numba as integer views
(:func:`.api.numba_view`): float16 ``uint16``, bfloat16 ``int16``, e4m3fn ``uint8``, e5m2 ``int8``.

Summation order (:func:`block_sum`, used by every kernel)
---------------------------------------------------------
float32/float64 compute: the terms of a row are cut into blocks of :data:`BLOCK` consecutive
terms. Within a block of ``b`` terms, term ``16*t + j`` (``t < q = b // 16``) goes to lane ``j`` of
:data:`LANES` = 16 lane accumulators, each summed recursively in increasing ``t`` starting from
zero; the lanes are combined by the fixed tree of depth 4
``(((a0+a8)+(a4+a12))+((a2+a10)+(a6+a14)))+(((a1+a9)+(a5+a13))+((a3+a11)+(a7+a15)))``, and then
the ``r = b - 16 q`` leftover terms are added to it one by one. The row sum is the recursive sum
of the block sums in block order, ``((B0 + B1) + B2) + ...``. This order is fixed by the source (no
``reassoc`` flag anywhere), so it is the same on every machine, for every thread count and whether
or not a long row is split across threads. :func:`sum_depth` gives the largest number of rounded
additions any one term goes through (the ``k`` of the gamma_k bound).

float16 compute: plain recursive summation, ``s = fl16(s + e_i)`` for i = 0..n-1 (no lanes, no
blocks, never split), as a half-precision unit summing in order would: 4096 ones sum to 2048.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .cache import cached_njit
from .bfloat16 import bf16_to_float, float_to_bf16, round_to_bf16
from .exp import exp16, exp32, exp64, exp_shifted32, exp_shifted64, expbf16
from .float16 import always_inline, bits_float, narrow_half, round_half, widen_half
from .float8 import e4m3_to_float, e5m2_to_float, float_to_e4m3, float_to_e5m2
from .log import log_of_float32

__all__ = [
    "kernel_jit",
    "kernel_entry_jit",
    "ON",
    "one",
    "minus_inf",
    "COMPUTE_MARKERS",
    "BLOCK",
    "LANES",
    "sum_depth",
    "load",
    "rnd",
    "expc",
    "expc_shifted",
    "logc",
    "log1pc",
    "put",
    "zero",
    "block_sum",
    "SPLITTABLE",
    "lanesum",
    "row_max",
    "key_view",
    "key_start",
    "key_step",
    "key_range_of",
    "nan_like",
    "key_to_max",
]

#: The decorator of every kernel function: numba's njit with IEEE semantics for division
#: (``error_model="numpy"``: x/0 gives inf or NaN; numba's default "python" model raises
#: ZeroDivisionError, which would make the naive kernel's 0/0 an exception instead of NaN), for
#: calls from numba code only: no Python wrappers, its code linked into the entry points that call
#: it and compiled there, once (``softmax_bench.jit.CompiledCallersOnly``, ``LinkedOnlyLibrary``).
kernel_jit = functools.partial(cached_njit, error_model="numpy", compiled_callers_only=True)
#: The same for a kernel's entry points, the rows functions that api.py calls from Python, cached
#: on disk (kernels/cache.py) with everything they call.
kernel_entry_jit = functools.partial(cached_njit, error_model="numpy")

#: The "on" value of an algorithm option (``shift``, ``leave_out``, ...): an option is either
#: None (off) or ON, so numba types it as ``none`` or ``int8`` and each algorithm gets its own
#: specialisation (and cache entry). Code decides on an option by its *type*, in an ``@overload``
#: (passes.row_shift, max_index, ...): numba prunes ``if opt is None`` only when ``opt`` is None;
#: for ON both branches stay and a variable set in them becomes Optional.
ON = np.int8(1)

#: compute precision name -> the marker value a kernel receives as its ``compute`` argument.
COMPUTE_MARKERS = {
    "float16": np.uint16(0),
    "bfloat16": np.int16(0),
    "float32": np.float32(0),
    "float64": np.float64(0),
}

#: The compute precisions whose long rows may be split into blocks summed on several threads: the
#: block order is fixed; float16/bfloat16 arithmetic sums recursively (module docstring).
SPLITTABLE = ("float32", "float64")

#: Terms per block (float32/float64 compute). A block's exponentials (8 or 16 KiB) stay in L1
#: between being computed and being summed.
BLOCK = 2048
#: Lane accumulators per block (64 bytes of float32: one AVX-512 or two AVX2 registers).
LANES = 16
_TREE_DEPTH = 4  # log2(LANES)


def sum_depth(n: int, compute: str) -> int:
    """The largest number of rounded additions on the path of any one term into the row sum of
    ``n`` terms, for the summation order of ``compute`` (see the module docstring). The computed
    sum of non-negative terms then satisfies ``|s_hat - s| <= gamma_k * s`` with ``k`` this depth
    and ``gamma_k = k u / (1 - k u)`` (Higham, Accuracy and Stability, Lemma 3.1 and section 4.2).

    float16 and bfloat16: recursive summation, ``n - 1``. float32/float64: inside a block of ``b`` terms a term
    meets at most ``q - 1`` lane additions (``q = b // 16``; the first addition to a zero lane is
    exact), the 4 tree levels and the ``r = b % 16`` leftover additions; then at most ``K - 1``
    block additions (``K`` blocks; adding the first block sum to zero is exact): ``K - 1`` for the
    terms of the first block, 1 for those of the last."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if compute in ("float16", "bfloat16"):
        return n - 1
    if compute not in ("float32", "float64"):
        raise ValueError(f"unknown compute precision {compute!r}")

    def block_depth(b):
        q, r = divmod(b, LANES)
        # no full group: the tree only adds zeros, and the first leftover lands on 0 exactly
        return q - 1 + _TREE_DEPTH + r if q else r - 1

    nblocks = -(-n // BLOCK)
    last = block_depth(n - (nblocks - 1) * BLOCK)
    if nblocks == 1:
        return last
    # block 0 (full) meets the nblocks - 1 later block sums; the last block sum is added once
    return max(block_depth(BLOCK) + nblocks - 1, last + 1)


# ---------------------------------------------------------------------------------------------
# marker tests (typing time)
# ---------------------------------------------------------------------------------------------
def _is_f32(c):
    return isinstance(c, types.Float) and c.bitwidth == 32


def _is_f64(c):
    return isinstance(c, types.Float) and c.bitwidth == 64


def _is_half(c):
    return c == types.uint16


def _is_bf16(c):
    return c == types.int16


# ---------------------------------------------------------------------------------------------
# element operations (stubs for numba @overload; never called from Python)
# ---------------------------------------------------------------------------------------------
def load(v, c):
    """Storage element -> compute value (exact: float16 -> float32, float32 -> float64 widen)."""


def rnd(v, c):
    """The rounding after one arithmetic operation: to binary16 for float16 compute, else none
    (the float32/float64 operation already rounded)."""


def expc(d, c):
    """exp in the compute mode: exp16 (correctly rounded binary16), exp32 or exp64."""


def expc_shifted(d, c):
    """:func:`expc` of a shifted difference ``d = x - max`` (``<= 0``, or a NaN: a row maximum is
    NaN when the row holds one): the same bits, fewer operations in float32 and float64
    (:func:`.exp.exp_shifted32`); in the 16-bit compute modes :func:`expc`."""


def logc(v, c):
    """log in the compute mode: float64 ``log`` of the value rounded to the compute format
    (float16, bfloat16, float32: :func:`.log.log_of_float32`, which vectorises, through float32
    or directly; float64: libm's ``log``)."""


def log1pc(v, c):
    """log1p in the compute mode, as :func:`logc`."""


def put(out, i, v):
    """Store compute value ``v`` into ``out[i]``, rounding once to the storage format."""


def zero(c):
    """0 of the compute value type."""


def block_sum(e, s, c):
    """``s`` plus the terms of ``e`` in the summation order of ``c`` (module docstring)."""


@overload(load)
def _ov_load(v, c):
    if _is_f32(c) and v == types.float32:
        return lambda v, c: v
    if (_is_f32(c) or _is_half(c)) and v == types.uint16:
        return lambda v, c: widen_half(v)
    if (_is_f32(c) or _is_bf16(c)) and v == types.int16:
        return lambda v, c: bf16_to_float(v)
    if _is_f32(c) and v == types.uint8:
        return lambda v, c: e4m3_to_float(v)
    if _is_f32(c) and v == types.int8:
        return lambda v, c: e5m2_to_float(v)
    if _is_f64(c) and isinstance(v, types.Float):
        return lambda v, c: np.float64(v)
    return None


@overload(rnd)
def _ov_rnd(v, c):
    if _is_half(c):
        return lambda v, c: round_half(v)
    if _is_bf16(c):
        return lambda v, c: round_to_bf16(v)
    if _is_f32(c):
        return lambda v, c: np.float32(v)
    if _is_f64(c):
        return lambda v, c: np.float64(v)
    return None


@overload(expc)
def _ov_expc(d, c):
    if _is_half(c):
        return lambda d, c: exp16(d)
    if _is_bf16(c):
        return lambda d, c: expbf16(d)
    if _is_f32(c):
        return lambda d, c: exp32(d)
    if _is_f64(c):
        return lambda d, c: exp64(d)
    return None


@overload(expc_shifted)
def _ov_expc_shifted(d, c):
    if _is_f32(c):
        return lambda d, c: exp_shifted32(d)
    if _is_f64(c):
        return lambda d, c: exp_shifted64(d)
    return lambda d, c: expc(d, c)


def _log_overload(narrow, wide):
    """The overload of a logarithm in each compute mode: ``wide`` (libm) in float64; ``narrow`` in
    float32 and the 16-bit modes, which evaluate it in float64 (within 2**-49 relative of the
    logarithm) and round to the compute format: through float32 for the 16-bit formats, a second
    rounding whose error is at most 2**-13 of their ULP (bounds/common.py: LOG_ULPS)."""

    def ov(v, c):
        if _is_half(c):
            return lambda v, c: round_half(np.float32(narrow(np.float64(v))))
        if _is_bf16(c):
            return lambda v, c: round_to_bf16(np.float32(narrow(np.float64(v))))
        if _is_f32(c):
            return lambda v, c: np.float32(narrow(np.float64(v)))
        if _is_f64(c):
            return lambda v, c: wide(np.float64(v))
        return None

    return ov


# log: our vectorisable log of float32 values (kernels/log.py: the same float32 results as libm's
# on every float32 input) where the values are float32 ones, so that a loop over a bundle's sums
# vectorises; libm's in float64 and for log1p (once per row, rows one by one).
overload(logc)(_log_overload(log_of_float32, math.log))
overload(log1pc)(_log_overload(math.log1p, math.log1p))


@overload(put)
def _ov_put(out, i, v):
    dt = out.dtype
    if dt == types.uint16:

        def impl(out, i, v):
            out[i] = narrow_half(np.float32(v))

        return impl
    if dt == types.int16:

        def impl(out, i, v):
            out[i] = float_to_bf16(np.float32(v))

        return impl
    if dt == types.uint8:

        def impl(out, i, v):
            out[i] = float_to_e4m3(np.float32(v))

        return impl
    if dt == types.int8:

        def impl(out, i, v):
            out[i] = float_to_e5m2(np.float32(v))

        return impl
    if dt == types.float32:

        def impl(out, i, v):
            out[i] = np.float32(v)

        return impl
    if dt == types.float64:

        def impl(out, i, v):
            out[i] = np.float64(v)

        return impl
    return None


@kernel_jit
def one(c):
    """1 of the compute value type (``zero(c) + 1`` would be a float64: numba types float32 +
    int64 as float64)."""
    return zero(c) + np.float32(1.0)


@kernel_jit
def minus_inf(c):
    """-inf of the compute value type (``np.inf`` alone is a float64)."""
    return zero(c) - np.float32(np.inf)


@overload(zero)
def _ov_zero(c):
    if _is_half(c) or _is_bf16(c) or _is_f32(c):
        return lambda c: np.float32(0.0)
    if _is_f64(c):
        return lambda c: np.float64(0.0)
    return None


@intrinsic
def _lane_tree_sum(typingctx, e):
    """The 16 lane sums of a C-contiguous float32/float64 array's first ``16 q`` terms
    (``q = e.size // 16``; lane ``j`` = ``((0 + e[j]) + e[16 + j]) + ...``) combined by the fixed
    tree of the module docstring, computed with one ``<16 x float>`` accumulator: LLVM adds the
    lanes side by side in vector registers (2 AVX2 or 1 AVX-512 register of float32), each
    lane's additions in the written order (no fast-math flag: nothing is reassociated). numba's
    own code for the same sums stayed scalar (16 scalar accumulators: LLVM's SLP vectoriser does
    not combine them), 4x slower. The tree is the halving one: level ``d`` adds the upper half of
    the vector to its lower half, ``a_j + a_(j + 8)``, then ``+ 4``, ``+ 2``, ``+ 1``: four vector
    additions instead of 16 extractions and 15 scalar ones (same operations, same bits)."""
    if not (isinstance(e, types.Array) and e.ndim == 1 and e.layout == "C"
            and e.dtype in (types.float32, types.float64)):
        return None
    sig = e.dtype(e)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ftype = context.get_value_type(signature.args[0].dtype)
        vtype = ir.VectorType(ftype, LANES)
        count = builder.sdiv(builder.extract_value(ary.shape, 0), ir.Constant(ary.shape.type.element, LANES))
        acc = cgutils.alloca_once_value(builder, ir.Constant(vtype, [0.0] * LANES))
        with cgutils.for_range(builder, count) as loop:
            first = builder.mul(loop.index, ir.Constant(loop.index.type, LANES))
            vp = builder.bitcast(builder.gep(ary.data, [first]), vtype.as_pointer())
            v = builder.load(vp, align=signature.args[0].dtype.bitwidth // 8)
            builder.store(builder.fadd(builder.load(acc), v), acc)
        total = builder.load(acc)
        width = LANES
        while width > 1:  # a_j + a_(j + width/2), j < width/2
            width //= 2
            mask = ir.VectorType(ir.IntType(32), width)
            low = builder.shuffle_vector(total, total, ir.Constant(mask, list(range(width))))
            high = builder.shuffle_vector(total, total,
                                          ir.Constant(mask, list(range(width, 2 * width))))
            total = builder.fadd(low, high)
        return builder.extract_element(total, ir.Constant(ir.IntType(32), 0))

    return sig, codegen


@kernel_jit
def lanesum(e, z):
    """Sum of the C-contiguous float array ``e`` (``z``: +0 of its type, where the lanes start)
    in the block order of the module docstring: 16 lanes (term ``16 t + j`` to lane ``j``), the
    fixed depth-4 tree, then the leftover terms one by one."""
    always_inline()
    s = _lane_tree_sum(e)
    for i in range(e.size // LANES * LANES, e.size):
        s += e[i]
    return s


@kernel_jit
def _recursive_half_sum(e, s):
    always_inline()
    for i in range(e.size):
        s = round_half(s + e[i])
    return s


@kernel_jit
def _recursive_bf16_sum(e, s):
    always_inline()
    for i in range(e.size):
        s = round_to_bf16(s + e[i])
    return s


@overload(block_sum)
def _ov_block_sum(e, s, c):
    # (bodies inlined into their callers, as the helpers they call: see row_max)
    if _is_half(c):

        def impl(e, s, c):
            always_inline()
            return _recursive_half_sum(e, s)

    elif _is_bf16(c):

        def impl(e, s, c):
            always_inline()
            return _recursive_bf16_sum(e, s)

    elif _is_f32(c) or _is_f64(c):

        def impl(e, s, c):
            always_inline()
            return s + lanesum(e, zero(c))

    else:
        return None
    return impl


# ---------------------------------------------------------------------------------------------
# maximum of a storage row: integer keys (float max reductions do not vectorise in numba)
# ---------------------------------------------------------------------------------------------
# For an IEEE bit pattern v read as a signed integer, key(v) = v ^ ((v >> (w-1)) & (2**(w-1)-1))
# is monotone in the float order over all non-NaN values (-0 < +0 in key order, harmless); the key
# is its own inverse. NaNs map above key(+inf) (positive sign bit) or below key(-inf) (negative), so
# a row holds a NaN exactly when its key range leaves [key(-inf), key(+inf)].
def key_view(x):
    """The signed-integer view of a storage row whose keys (below) order its values."""


def key_start(v):
    """``(hi, lo)`` before any key of the integer row ``v``: its type's (smallest, largest) key;
    ``(0, 0)`` when ``v`` is None (no keys tracked: :func:`key_step` leaves them)."""


def key_step(hi, lo, v, i):
    """``(hi, lo)`` widened by the key of ``v[i]``; unchanged when ``v`` is None."""


@overload(key_view)
def _ov_key_view(x):
    view = {types.uint16: np.int16, types.uint8: np.int8, types.float32: np.int32,
            types.float64: np.int64}.get(x.dtype)
    if view is not None:
        return lambda x: x.view(view)
    if x.dtype in (types.int16, types.int8):  # bfloat16, e5m2: already signed
        return lambda x: x
    return None


@overload(key_start)
def _ov_key_start(v):
    if isinstance(v, types.NoneType):
        return lambda v: (np.int32(0), np.int32(0))
    if v.dtype.bitwidth == 64:
        return lambda v: (np.int64(-9223372036854775807 - 1), np.int64(9223372036854775807))
    top = (1 << (v.dtype.bitwidth - 1)) - 1
    return lambda v: (np.int32(-top - 1), np.int32(top))


@overload(key_step)
def _ov_key_step(hi, lo, v, i):
    if isinstance(v, types.NoneType):
        return lambda hi, lo, v, i: (hi, lo)
    if v.dtype.bitwidth == 64:

        def impl64(hi, lo, v, i):
            k = v[i]
            k = k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF)
            return max(hi, k), min(lo, k)

        return impl64
    sign = v.dtype.bitwidth - 1
    mask = (1 << sign) - 1

    def impl(hi, lo, v, i):
        k = np.int32(v[i])
        k = np.int32(k ^ ((k >> sign) & mask))  # back to int32: numba widens k >> sign to int64
        return max(hi, k), min(lo, k)

    return impl


def key_range_of(v):
    """``(hi, lo)`` over the integer row ``v`` (:func:`key_start` when ``v`` is None)."""


@kernel_jit
def _key_range(v):
    always_inline()
    hi, lo = key_start(v)
    for i in range(v.size):
        hi, lo = key_step(hi, lo, v, i)
    return hi, lo


@overload(key_range_of)
def _ov_key_range_of(v):
    if isinstance(v, types.NoneType):
        return lambda v: key_start(v)

    def impl(v):
        always_inline()
        return _key_range(v)

    return impl


def key_range(x):
    """(largest key, smallest key) of a contiguous 1-D storage row (any length >= 0)."""


def key_to_max(hi, lo, x, c):
    """The row maximum in compute precision from the key range of the whole row; NaN when the
    row holds a NaN (as ``np.max`` gives)."""


@overload(key_range)
def _ov_key_range(x):
    def impl(x):
        always_inline()
        return key_range_of(key_view(x))

    return impl


_F32, _F64 = np.float32(0.0), np.float64(0.0)  # type witnesses for bits_float
_KEY_POSINF16, _KEY_NEGINF16 = 0x7C00, -0x7C01
_KEY_POSINFBF16, _KEY_NEGINFBF16 = 0x7F80, -0x7F81
_KEY_POSMAX_E4M3, _KEY_NEGMAX_E4M3 = 0x7E, -0x7F  # e4m3fn has no inf: its largest finite
_KEY_POSINF_E5M2, _KEY_NEGINF_E5M2 = 0x7C, -0x7D
_KEY_POSINF32, _KEY_NEGINF32 = 0x7F800000, -0x7F800001
_KEY_POSINF64, _KEY_NEGINF64 = 0x7FF0000000000000, -0x7FF0000000000001


@kernel_jit
def nan_like(c):
    """The quiet NaN of positive sign, as a compute value."""
    return zero(c) + np.float32(np.nan)


@overload(key_to_max)
def _ov_key_to_max(hi, lo, x, c):
    dt = x.dtype
    if dt == types.uint16:

        def impl(hi, lo, x, c):
            if hi > _KEY_POSINF16 or lo < _KEY_NEGINF16:
                return nan_like(c)
            b = hi ^ ((hi >> 15) & 0x7FFF)
            return load(np.uint16(b & 0xFFFF), c)

        return impl
    if dt == types.int16:

        def impl(hi, lo, x, c):
            if hi > _KEY_POSINFBF16 or lo < _KEY_NEGINFBF16:
                return nan_like(c)
            b = hi ^ ((hi >> 15) & 0x7FFF)
            return load(np.int16(b & 0xFFFF), c)

        return impl
    if dt == types.uint8 or dt == types.int8:
        top, bottom = ((_KEY_POSMAX_E4M3, _KEY_NEGMAX_E4M3) if dt == types.uint8
                       else (_KEY_POSINF_E5M2, _KEY_NEGINF_E5M2))
        bits = np.uint8 if dt == types.uint8 else np.int8

        def impl(hi, lo, x, c):
            if hi > top or lo < bottom:
                return nan_like(c)
            b = hi ^ ((hi >> 7) & 0x7F)
            return load(bits(b & 0xFF), c)

        return impl
    if dt == types.float32:

        def impl(hi, lo, x, c):
            if hi > _KEY_POSINF32 or lo < _KEY_NEGINF32:
                return nan_like(c)
            b = np.int32(hi ^ ((hi >> 31) & 0x7FFFFFFF))
            return load(bits_float(b, _F32), c)

        return impl
    if dt == types.float64:

        def impl(hi, lo, x, c):
            if hi > _KEY_POSINF64 or lo < _KEY_NEGINF64:
                return nan_like(c)
            b = np.int64(hi ^ ((hi >> 63) & 0x7FFFFFFFFFFFFFFF))
            return load(bits_float(b, _F64), c)

        return impl
    return None


@kernel_jit
def row_max(x, c):
    """Maximum of the storage row ``x`` as a compute value (NaN if the row holds a NaN).

    This and the other helpers called once per short row (:func:`key_range`, :func:`block_sum`,
    :func:`lanesum`, :func:`.passes.sum_leaving_out`) carry LLVM's ``alwaysinline``
    (:func:`.float16.always_inline`): numba does not inline a call to another cached function,
    nor an ``@overload`` body grown large, and a call per 16-term row (its arguments through
    memory, ``vzeroupper``) cost about as much as the row's maximum itself (6.2 -> 3.3 ns)."""
    always_inline()
    hi, lo = key_range(x)
    return key_to_max(hi, lo, x, c)
