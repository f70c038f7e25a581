"""The callable every kernel exposes, f(x, axis=-1, out=None): shapes, axes, memory layouts,
out=, the input left alone, errors; and that a row's result does not depend on how it is
scheduled (alone, in a bundle of short rows, split across threads)."""
from __future__ import annotations


import numba
import numpy as np
import pytest

from softmax_bench.formats import format_of
from softmax_bench.functions import GRADIENTS
from softmax_bench.kernels import KERNELS, get_kernel

#: kernels of one operand (the backward pass, f(x, g), has its own tests: tests/kernels/softmax_vjp)
KERNELS = [k for k in KERNELS if k.function not in GRADIENTS]
from softmax_bench.kernels.api import numba_view
from softmax_bench.kernels.arith import BLOCK, COMPUTE_MARKERS
from softmax_bench.kernels.passes import PARALLEL_MIN, RECOMPUTE_BYTES, SPLIT_MIN, splits

F32 = get_kernel("shifted", "float32")


def _rows_ref(spec, x, axis):
    """The kernel applied to each 1-D row separately (the 1-D path is the reference layout)."""
    xm = np.moveaxis(x, axis, -1)
    out = np.empty(xm.shape[:-1] if spec.reduces else xm.shape, x.dtype)
    for idx in np.ndindex(xm.shape[:-1]):
        out[idx] = spec(np.ascontiguousarray(xm[idx]))
    return out if spec.reduces else np.moveaxis(out, -1, axis)


def _out_like(spec, x, axis=-1):
    """An empty output for ``spec`` on ``x`` (the axis dropped for a reduction)."""
    return np.empty(np.delete(x.shape, axis) if spec.reduces else x.shape, x.dtype)


def _same_bits(a, b):
    """Bit for bit (NaN payloads and signs of zero included)."""
    bits = np.dtype(f"u{np.dtype(a.dtype).itemsize}")
    return a.shape == b.shape and np.array_equal(np.asarray(a).view(bits), np.asarray(b).view(bits))


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_every_axis_and_layout(spec):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, (3, 5, 6)).astype(spec.dtype)
    for axis in (0, 1, 2, -1, -2, -3):
        want = _rows_ref(spec, x, axis)
        assert _same(spec(x, axis=axis), want)
        assert _same(spec(np.asfortranarray(x), axis=axis), want)
        assert _same(spec(x[::-1, :, ::-1], axis=axis), _rows_ref(spec, x[::-1, :, ::-1], axis))
    assert _same(spec(x[:, ::2, 1::2]), _rows_ref(spec, x[:, ::2, 1::2], -1))
    assert _same(spec(x.transpose(2, 0, 1), axis=1), _rows_ref(spec, x.transpose(2, 0, 1), 1))


def test_one_dimensional_and_length_one():
    assert F32(np.array([3.0], np.float32)).tolist() == [1.0]
    y = F32(np.array([0.0, 0.0], np.float32))
    assert y.tolist() == [0.5, 0.5] and y.dtype == np.float32 and y.shape == (2,)
    assert F32(np.zeros((4, 1), np.float32)).tolist() == [[1.0]] * 4


def test_empty_other_axis():
    x = np.zeros((0, 5), np.float32)
    y = F32(x)
    assert y.shape == (0, 5) and y.dtype == np.float32
    out = np.empty((0, 5), np.float32)
    assert F32(x, out=out) is out


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_input_not_modified(spec):
    x = np.random.default_rng(1).normal(0, 2, (9, 33)).astype(spec.dtype)
    keep = x.copy()
    spec(x)
    spec(x, axis=0)
    spec(x, out=_out_like(spec, x))
    assert np.array_equal(x.view(np.uint8), keep.view(np.uint8))


def test_read_only_and_broadcast_input():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    x.flags.writeable = False
    assert _same(F32(x), _rows_ref(F32, x, -1))
    b = np.broadcast_to(np.arange(4, dtype=np.float32), (5, 4))
    y = F32(b)
    assert y.flags.writeable and (y == y[0]).all()


def test_out_is_filled_and_returned():
    x = np.random.default_rng(2).normal(size=(4, 10)).astype(np.float32)
    want = F32(x)
    out = np.empty_like(x)
    assert F32(x, out=out) is out and _same(out, want)
    # a non-contiguous out, and out along another axis
    big = np.zeros((4, 20), np.float32)
    out = big[:, ::2]
    assert F32(x, out=out) is out and _same(out, want)
    assert (big[:, 1::2] == 0).all()
    out = np.empty((10, 4), np.float32).T
    assert F32(x, out=out) is out and _same(out, want)
    out0 = np.empty_like(x)
    assert F32(x, axis=0, out=out0) is out0 and _same(out0, F32(x, axis=0))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_out_in_every_mode(spec):
    x = np.random.default_rng(8).normal(size=(5, 12)).astype(spec.dtype)
    want = spec(x)
    out = _out_like(spec, x)
    assert spec(x, out=out) is out and _same(out, want)
    # non-contiguous: through a temporary
    out = np.empty((10,), spec.dtype)[::2] if spec.reduces else np.empty((12, 5), spec.dtype).T
    assert spec(x, out=out) is out and _same(out, want)
    with pytest.raises(TypeError, match="out must have dtype"):
        spec(x, out=_out_like(spec, x).astype(np.float32 if spec.dtype != np.float32 else np.float64))
    with pytest.raises(ValueError, match="shape"):
        spec(x, out=np.empty((5, 13), spec.dtype))


def test_out_may_alias_the_input():
    x = np.random.default_rng(3).normal(size=(6, 50)).astype(np.float32)
    want = F32(x)
    y = x.copy()
    assert F32(y, out=y) is y and _same(y, want)
    # partial overlap: out is the input shifted by one column
    buf = np.concatenate([x, np.zeros((6, 1), np.float32)], axis=1)
    src = buf[:, :-1]
    dst = buf[:, 1:]
    res = F32(src, out=dst)
    assert res is dst and _same(dst, want)


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_common_call_equals_general_path(spec):
    """The common call (C rows along the last axis: the compiled entry point, called with the
    storage array for its integer view, no dispatch) gives the general path's bits (``axis`` given
    as a positive int takes the general path: the rows function through numba's dispatcher), in
    every shape it takes, with out= overlapping the input."""
    rng = np.random.default_rng(11)
    for shape in ((7,), (3, 7), (2, 3, 7), (1, 1000), (40, 900)):
        x = rng.normal(0, 4, shape).astype(spec.dtype)
        x.flat[::17] = format_of(spec.dtype).dtype.type(np.nan) if x.size > 100 else x.flat[0]
        want = spec(x, axis=x.ndim - 1)
        assert _same(spec(x), want)
        out = _out_like(spec, x)
        assert spec(x, out=out) is out and _same(out, want)
        # out overlapping x, both C-contiguous: the rows function reads a copy of x
        # (a reduction's out lies in the last row: written before that row is read)
        buf = np.concatenate([x.ravel(), x.ravel()[:3]])
        src = buf[: x.size].reshape(shape)
        at = x.size - shape[-1] if spec.reduces else 3
        dst = buf[at : at + out.size].reshape(out.shape)
        assert spec(src, out=dst) is dst and _same(dst, want)


class _PathRecorder:
    """A rows function stand-in that records how a kernel called it: by the entry point that
    ``compile`` returns (the common call) or through the dispatcher (the general path)."""

    def __init__(self):
        self.paths = []

    def compile(self, signature):
        def entry(x2, out2, *args):
            self.paths.append("entry")
            out2[...] = 0

        return entry

    def __call__(self, x2, out2, *args):
        self.paths.append("dispatch")
        out2[...] = 0


def test_which_path_a_call_takes():
    from softmax_bench.kernels.api import make_kernel
    from softmax_bench.kernels.arith import ON

    rows = _PathRecorder()
    f = make_kernel(rows, (ON, None), "float32", "float32", "softmax/recorder/float32@float32")
    x = np.ones((3, 9), np.float32)
    raw = np.frombuffer(bytearray(x.nbytes + 1), np.uint8)[1:]
    unaligned = raw.view(np.float32).reshape(3, 9)
    assert not unaligned.flags.aligned
    common = [lambda: f(x), lambda: f(x[0]), lambda: f(x.reshape(3, 3, 3)),
              lambda: f(x, out=np.empty_like(x)), lambda: f(x, out=x)]
    general = [lambda: f(unaligned), lambda: f(np.asfortranarray(x)), lambda: f(x[:, ::2]),
               lambda: f(x, axis=1), lambda: f(x, axis=0), lambda: f(x, out=np.empty((9, 3), np.float32).T)]
    for call in common:
        rows.paths.clear()
        call()
        assert rows.paths == ["entry"]
    for call in general:
        rows.paths.clear()
        call()
        assert rows.paths == ["dispatch"]
    with pytest.raises(TypeError, match="dtype"):
        f(x.astype(x.dtype.newbyteorder()))
    # with a one-row function: short 1-D rows go to its entry point, all else as before
    one = _PathRecorder()
    f = make_kernel(rows, (ON, None), "float32", "float32", "softmax/recorder/float32@float32",
                    one_row=one)
    for call, want in ((lambda: f(x[0]), (["entry"], [])),
                       (lambda: f(x[0], out=np.empty(9, np.float32)), (["entry"], [])),
                       (lambda: f(np.ones(PARALLEL_MIN, np.float32)), ([], ["entry"])),
                       (lambda: f(x), ([], ["entry"])), (lambda: f(x[0, ::2]), ([], ["dispatch"]))):
        rows.paths.clear()
        one.paths.clear()
        call()
        assert (one.paths, rows.paths) == want


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: F32([1.0, 2.0]), TypeError, "numpy array"),
        (lambda: F32(np.zeros(3, np.float64)), TypeError, "dtype float32"),
        (lambda: F32(np.zeros(3, np.int32)), TypeError, "dtype float32"),
        (lambda: F32(np.zeros(3, ">f4")), TypeError, "dtype float32"),
        (lambda: F32(np.array(1.0, np.float32)), ValueError, "0-d"),
        (lambda: F32(np.zeros((3, 0), np.float32)), ValueError, "empty"),
        (lambda: F32(np.zeros((3, 2), np.float32), axis=2), ValueError, "out of bounds"),
        (lambda: F32(np.zeros((3, 2), np.float32), axis=-3), ValueError, "out of bounds"),
        (lambda: F32(np.zeros(3, np.float32), axis=0.0), TypeError, "axis must be an integer"),
        (lambda: F32(np.zeros(3, np.float32), axis=True), TypeError, "axis must be an integer"),
        (lambda: F32(np.zeros(3, np.float32), axis=None), TypeError, "axis must be an integer"),
        (lambda: F32(np.zeros(3, np.float32), out=[0.0] * 3), TypeError, "out must be a numpy"),
        (lambda: F32(np.zeros(3, np.float32), out=np.zeros(3)), TypeError, "out must have dtype"),
        (lambda: F32(np.zeros(3, np.float32), out=np.zeros(4, np.float32)), ValueError, "shape"),
        (lambda: F32(np.zeros((2, 3), np.float32), out=np.zeros((3, 2), np.float32)), ValueError, "shape"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_out_is_refused():
    out = np.zeros(3, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        F32(np.zeros(3, np.float32), out=out)


def test_numpy_integer_axis():
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    assert _same(F32(x, axis=np.int64(0)), F32(x, axis=0))


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_result_does_not_depend_on_scheduling(spec):
    """Bundles of short rows (rows of fewer than 16 terms as vector lanes: n = 1, 10, 15; the
    first n done by the row loops: 16; rows of whole vectors, their terms row by row where the
    load converts nothing: 64; not whole vectors: 300), rows one by one (each row's maximum found
    while the row before is divided), a parallel batch and a long row split across threads all
    run the same operations in the same order: bit-identical results, special values included
    (rows with -inf, +inf, NaN, and rows of only -inf, spread over the bundles and the rows one
    by one)."""
    rng = np.random.default_rng(5)
    view = numba_view(spec.dtype)
    c = COMPUTE_MARKERS[spec.compute]
    for n in (1, 10, 15, 16, 64, 300, 700, BLOCK + 37, SPLIT_MIN + 5):
        rows = max(2, PARALLEL_MIN // n + 1)  # big enough for the parallel path
        x = rng.normal(0, 4, (rows, n))
        x.flat[::53], x.flat[7::2011], x.flat[3::3001] = -np.inf, np.inf, np.nan
        x[1::97] = -np.inf
        x = x.astype(spec.dtype)
        with np.errstate(all="ignore"):
            batch = spec(x)
            # every row of the bundled n = 10 (42 of them hold a special value), a sample else
            for r in range(0, rows, 1 if n == 10 else max(1, rows // 40)):
                one = spec(np.ascontiguousarray(x[r]))
                assert _same_bits(batch[r], one), (n, r)
        seq = _out_like(spec, x)
        with np.errstate(all="ignore"):
            spec.rows(x.view(view), seq.view(view), c, 1, *spec.options)
        assert _same_bits(batch, seq), n
    # one long row: split across 2 threads (where the kernel splits) vs on one thread
    x = rng.normal(0, 4, (1, SPLIT_MIN * 2 + 11)).astype(spec.dtype)
    a, b = _out_like(spec, x), _out_like(spec, x)
    spec.rows(x.view(view), a.view(view), c, 1, *spec.options)
    split = spec.split_rows or spec.rows
    split(x.view(view), b.view(view), c, max(2, numba.get_num_threads()), *spec.options)
    assert _same_bits(a, b)


#: binary16 signalling NaNs (quiet bit 0x200 clear, payload not 0), of both signs
_SIGNALLING16 = np.array([0x7C01, 0xFC01, 0x7D55, 0xFDFF, 0x7C80], np.uint16)


def signalling_and_quieted(rng, shape):
    """A float16 array with signalling NaNs spread over it, and the same array with them
    quieted (the quiet bit set, payload and sign kept)."""
    h = rng.normal(0, 4, shape).astype(np.float16).view(np.uint16)
    h.flat[::37] = np.resize(_SIGNALLING16, h.flat[::37].size)
    quieted = np.where(_is_nan16(h), h | 0x200, h).astype(np.uint16)
    return h.view(np.float16), quieted.view(np.float16)


def _is_nan16(h):
    return ((h & 0x7C00) == 0x7C00) & ((h & 0x3FF) != 0)


@pytest.mark.parametrize("spec", [k for k in KERNELS if k.dtype == np.float16], ids=lambda k: k.id)
def test_float16_signalling_nans_give_the_bits_of_quiet_ones(spec):
    """Where the target has F16C, the kernels convert float16 by the bare hardware conversions,
    which quiet a signalling NaN (kernels/float16.py); their results are bit-identical to the
    integer bit operations' all the same because (1) a loaded value is only ever an operand of
    float arithmetic, which quiets it either way: a row with signalling NaNs gives the bits of
    the row with them quieted; (2) every NaN stored is quiet, where the two narrowings agree."""
    rng = np.random.default_rng(11)
    for n in (1, 10, 300, BLOCK + 37):
        signalling, quieted = signalling_and_quieted(rng, (max(2, 4000 // n), n))
        with np.errstate(all="ignore"):
            got = spec(signalling)
            assert _same_bits(got, spec(quieted)), n
        bits = got.view(np.uint16)
        assert _is_nan16(bits).any(), n
        assert (bits[_is_nan16(bits)] & 0x200).all(), n


class _SplitRecorder:
    """A split rows function stand-in (called through its dispatcher): records the arrays'
    dtypes and shapes and the thread count it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, x2, out2, c, threads, *options):
        self.calls.append((x2.dtype, x2.shape, out2.dtype, out2.shape, threads))
        out2[...] = 0


def test_the_split_rule():
    """passes.splits: fewer rows than threads, rows of at least SPLIT_MIN, a batch worth a
    parallel region (PARALLEL_MIN elements)."""
    assert splits(1, PARALLEL_MIN, 2) and not splits(1, PARALLEL_MIN - 1, 2)
    assert splits(3, SPLIT_MIN, 4) and not splits(3, SPLIT_MIN - 1, 4)
    assert not splits(2, PARALLEL_MIN, 2) and not splits(1, PARALLEL_MIN, 1)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_few_long_rows_go_to_the_split_rows_function(storage):
    """Every call whose C rows split (one long row on 2 threads), by the common path or the
    general one, reaches the split rows function once, with the numba view of the storage
    dtype; other batches, and any batch on one thread, reach the rows function only."""
    from softmax_bench.kernels.api import make_kernel
    from softmax_bench.kernels.arith import ON

    rows, split = _PathRecorder(), _SplitRecorder()
    f = make_kernel(rows, (ON, None), storage, "float32", f"softmax/recorder/{storage}@float32",
                    split_rows=split)
    view = numba_view(storage)
    n = max(SPLIT_MIN, PARALLEL_MIN) + 5
    x = np.ones((3, n), storage)
    one_row = [lambda: f(x[0]), lambda: f(x[:1]), lambda: f(x[:1].reshape(1, 1, n)),
               lambda: f(x[:1], out=np.empty((1, n), storage)),  # the common path
               lambda: f(x[:1].T, axis=0), lambda: f(x[0], out=np.empty(2 * n, storage)[::2]),
               lambda: f(x[:1, ::-1])]  # the general path
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        for call in one_row:
            rows.paths.clear(), split.calls.clear()
            call()
            assert split.calls == [(view, (1, n), view, (1, n), 2)] and rows.paths == []
        for call, path in ((lambda: f(x), "entry"), (lambda: f(np.asfortranarray(x)), "dispatch")):
            rows.paths.clear(), split.calls.clear()
            call()
            assert split.calls == [] and rows.paths == [path]
        numba.set_num_threads(1)
        for call, path in ((one_row[0], "entry"), (one_row[-1], "dispatch")):
            rows.paths.clear(), split.calls.clear()
            call()
            assert split.calls == [] and rows.paths == [path]
    finally:
        numba.set_num_threads(saved)


@pytest.mark.parametrize("spec", KERNELS, ids=lambda k: k.id)
def test_recomputed_terms_equal_kept_terms(spec):
    """Rows of at least RECOMPUTE_BYTES recompute their terms in pass 3 (modes that would need a
    scratch row) or keep them in out: either way the same bits as a short row. A long row whose
    tail is -inf (exact zero terms, which leave every partial sum unchanged) must reproduce the
    short row on its head, and 0 on its tail."""
    head = np.random.default_rng(6).normal(0, 3, 3000).astype(spec.dtype)
    n = RECOMPUTE_BYTES // spec.dtype.itemsize + 1000
    fmt = format_of(spec.dtype)
    mask = -np.inf if fmt.has_inf else -fmt.max_finite  # e4m3fn: exp(-448 - m) is 0 in float32
    x = np.full(n, mask, spec.dtype)
    x[: head.size] = head
    y = spec(x)
    if spec.algorithm == "two_pass" and fmt.has_inf:  # -inf is outside its domain: online runs
        spec = get_kernel("online", spec.dtype, spec.compute)
    if spec.reduces:  # exact zero terms leave the sum, and so the result, unchanged
        assert np.array_equal(y, spec(head))
    elif spec.function == "log_softmax":
        tail = spec(np.append(head, x[-1:]))[-1]  # the mask's output beside the same head
        assert np.array_equal(y[: head.size], spec(head)) and (y[head.size :] == tail).all()
    else:
        assert np.array_equal(y[: head.size], spec(head))
        assert not y[head.size :].any()


def test_one_row_call_in_fresh_processes(tmp_path):
    """Short 1-D rows (the ONE_ROW entries of softmax and log_softmax) in two fresh processes,
    the second after the first filled the cache: loaded from numba's cache, such a wrapper of a
    parallel rows function crashed its process on the first call (segfault), so it is compiled
    in each process instead."""
    import subprocess
    import sys

    code = ("import numpy as np; from softmax_bench.kernels import get_kernel; "
            "f = get_kernel('naive', 'float16', 'float16').fn; "
            "g = get_kernel('shifted', 'float32', 'float32', function='log_softmax').fn; "
            "print(f(np.array([1.0, 0.0], np.float16)), g(np.array([1.0, 0.0], np.float32)))")
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)  # (not the checkout: its softmax_bench/
        # folder would shadow the installed package, which holds the kernels)
        assert run.returncode == 0, run.stderr[-2000:]
