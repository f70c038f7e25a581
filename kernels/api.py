"""The Python face of a kernel: ``f(x, axis=-1, out=None)`` around a numba rows function.

:func:`make_kernel` wraps a rows function ``rows(x2, out2, compute_marker, threads, *options)``
(C-contiguous 2-D storage arrays, the function along the last axis; ``out2`` 1-D for a
reduction) into a callable that takes any array of the storage dtype, of any shape and memory
layout, along any axis:

- the input is never modified except through ``out`` (when ``out`` overlaps it, the rows function
  reads a copy of it: :func:`.passes.apart`);
- contiguous rows along the last axis are used in place; any other layout or axis is copied to
  contiguous rows first (``np.moveaxis`` + ``np.ascontiguousarray``);
- ``out=`` must be an ndarray of the storage dtype and the input's shape (without ``axis`` for
  logsumexp; any layout); it is
  filled and returned. Without ``out``, a new array is returned (for ``axis`` other than the last,
  a view of a contiguous buffer with the given axis moved back into place);
- errors: ``TypeError`` for a non-array, a wrong dtype, a non-integer axis or a bad ``out`` type or
  dtype; ``ValueError`` for a 0-d input, an empty axis, an axis out of range
  (``numpy.exceptions.AxisError``, a ValueError) or an ``out`` of the wrong shape or read-only.
"""
from __future__ import annotations

import operator

import numba
import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from softmax_bench.formats import format_of

from .arith import COMPUTE_MARKERS
from .passes import PARALLEL_MIN, splits

__all__ = ["make_kernel", "make_vjp_kernel", "numba_view"]


_VIEWS = {"float16": np.uint16, "bfloat16": np.int16, "float8_e4m3fn": np.uint8, "float8_e5m2": np.int8}


def numba_view(storage) -> np.dtype:
    """The dtype a storage array is viewed as when it enters numba, which has no float16,
    bfloat16 or float8 type: float16 travels as its uint16 bits, bfloat16 as int16, e4m3fn as
    uint8, e5m2 as int8 (the view's type tells the formats apart, see arith.py); float32 and
    float64 as themselves."""
    storage = format_of(storage).dtype
    return np.dtype(_VIEWS.get(storage.name, storage))


def check_call(name, function, storage, x, axis, out, reduces=False):
    """The argument checks of every kernel (module docstring), raising with the kernel's ``name``;
    returns ``(axis, n, shape)``: the normalised axis, its length and the result's shape."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: x must be a numpy array, got {type(x).__name__}")
    if x.dtype != storage:
        raise TypeError(f"{name}: x must have dtype {storage.name}, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{name}: x is 0-d; {function} needs an axis")
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}") from None
    axis = normalize_axis_index(axis, x.ndim)  # AxisError (a ValueError) when out of range
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"{name}: the {function} axis (axis {axis}) is empty")
    shape = x.shape[:axis] + x.shape[axis + 1 :] if reduces else x.shape
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name}: out must be a numpy array, got {type(out).__name__}")
        if out.dtype != storage:
            raise TypeError(f"{name}: out must have dtype {storage.name}, got {out.dtype}")
        if out.shape != shape:
            raise ValueError(f"{name}: out has shape {out.shape}, expected {shape}")
        if not out.flags.writeable:
            raise ValueError(f"{name}: out is read-only")
    return axis, n, shape


def threads(size: int) -> int:
    """The thread count a rows function gets for a batch of ``size`` elements: 1 below
    :data:`.passes.PARALLEL_MIN` (such a batch runs on the calling thread whatever it is told,
    and asking numba costs 0.85 us, more than a 1,000-element row's arithmetic), else numba's."""
    return 1 if size < PARALLEL_MIN else numba.get_num_threads()


def make_kernel(rows, options, storage, compute, name, doc="", reduces=False, split_rows=None,
                one_row=None):
    """The ``f(x, axis=-1, out=None)`` callable for ``rows`` with the algorithm ``options``,
    specialised to ``storage`` dtype and ``compute`` precision (names as in
    :data:`.arith.COMPUTE_MARKERS`). ``reduces``: one output per row (logsumexp), so the result
    (and ``out``) has the input's shape without ``axis``. ``split_rows``: the rows function (same
    arguments, same bits) for batches of a few long rows, each split across threads
    (:func:`.passes.splits`), compiled on its first use. ``one_row``: the rows function of one
    row given as 1-D arrays (not for reductions), for the fast path's short 1-D rows, compiled
    on its first use."""
    storage = format_of(storage).dtype
    marker = COMPUTE_MARKERS[compute]
    view = numba_view(storage)
    function = name.split("/")[0]

    # the general path's reshapes and views (C-contiguous arrays only)
    if view == storage:  # float32, float64: no view needed
        def as_rows(a, n):
            return a.reshape(-1, n)

        def as_flat(a):
            return a.reshape(-1)
    else:
        def as_rows(a, n):
            return a.reshape(-1, n).view(view)

        def as_flat(a):
            return a.reshape(-1).view(view)

    def out_rows(a, n):  # the result array as the rows function's output
        return as_flat(a) if reduces else as_rows(a, n)

    entry = entry1 = None  # the compiled rows functions of the fast path (compiled())

    def compiled(ndim=2):
        """``rows`` (``one_row`` for ``ndim`` 1) compiled for C rows of the storage view, as its
        entry point: numba's dispatcher types every argument of every call (0.25 us of a 2 us
        call on a 1,000-element row); the entry point only unboxes them, checking nothing but
        the item size (numba's boxing.unbox_array), so the fast path calls it only with arguments
        it has checked: C contiguous, aligned, of the storage dtype and the rows' dimensions. It
        takes the storage array itself for the view (same item size, same bits): a ``.view``
        costs 0.2 us."""
        nonlocal entry, entry1
        proto = np.empty((1,) * ndim, view)
        sig = tuple(numba.typeof(a) for a in (proto, proto[0] if reduces else proto, marker, 1,
                                                *options))
        if ndim == 1:
            entry1 = one_row.compile(sig)
            return entry1
        entry = rows.compile(sig)
        return entry

    def split(x2, threads_):
        """Whether the C rows ``x2`` on ``threads_`` threads go to ``split_rows`` (called through
        its dispatcher: 0.25 us and a view, nothing beside a split row's time)."""
        return split_rows is not None and splits(x2.shape[0], x2.shape[1], threads_)

    ndarray, empty = np.ndarray, np.empty  # (closure cells: cheaper than global lookups)
    # The entry points' scalar arguments as Python scalars: an entry point unboxes them by its
    # compiled signature (the marker's 0 as uint16 / float32 / ..., an option's 1 as int8), 80 ns
    # faster than numpy scalars (of a 1.8 us call on a 1,000-element row). Dispatchers (split_rows,
    # the general path) type their arguments by value, so they keep the numpy scalars.
    plain_marker, *plain_options = (a.item() if isinstance(a, np.generic) else a
                                    for a in (marker, *options))
    one_thread = (plain_marker, 1, *plain_options)  # the entry's last arguments below PARALLEL_MIN

    def kernel(x, axis=-1, out=None):
        # The common call, decided in a few steps (each costs tens of ns; the whole call of a
        # 1,000-element row is ~1.3 us, the general path below ~4 us more): C rows of the
        # storage dtype (aligned) along the last axis, ``out`` None or C-contiguous, aligned,
        # writable and of the result's shape (overlapping x or not: the rows function then
        # copies x, passes.apart).
        if (type(axis) is int and axis == -1 and type(x) is ndarray
                and (x.dtype is storage or x.dtype == storage)):  # (== for an unpickled dtype)
            shape = x.shape
            size = x.size
            if size and shape and ((flags := x.flags).carray  # (writable: one test fewer, 20 ns)
                                   or flags.c_contiguous and flags.aligned):
                rshape = shape[:-1] if reduces else shape
                if out is None:
                    res = empty(rshape, storage)
                elif (type(out) is ndarray and (out.dtype is storage or out.dtype == storage)
                      and out.shape == rshape and out.flags.carray):
                    res = out
                else:
                    res = None
                if res is not None:
                    nd = len(shape)
                    if nd == 1 and one_row is not None and size < PARALLEL_MIN:
                        (entry1 or compiled(1))(x, res, *one_thread)
                        return res
                    if nd == 1:  # one row (x[None]: 45 ns, a reshape 85)
                        x2, r2 = x[None], res[None]
                    elif nd == 2:
                        x2, r2 = x, res
                    else:
                        x2 = x.reshape(-1, shape[-1])
                        r2 = res.reshape(-1) if reduces else res.reshape(-1, shape[-1])
                    if size < PARALLEL_MIN:
                        (entry or compiled())(x2, r2, *one_thread)
                    else:
                        threads_ = numba.get_num_threads()
                        if split(x2, threads_):  # (a dispatcher takes the numba view)
                            split_rows(x2.view(view), r2.view(view), marker, threads_, *options)
                        else:
                            (entry or compiled())(x2, r2, plain_marker, threads_, *plain_options)
                    return res
        axis, n, shape = check_call(name, function, storage, x, axis, out, reduces)
        last = axis == x.ndim - 1
        xm = x if last else np.moveaxis(x, axis, -1)
        if x.size == 0:  # another axis is empty: nothing to compute
            return np.empty(shape, storage) if out is None else out
        x2 = as_rows(np.ascontiguousarray(xm), n)  # a plain ndarray of C rows
        threads_ = threads(x.size)

        run = split_rows if split(x2, threads_) else rows
        if out is not None:
            om = out if (last or reduces) else np.moveaxis(out, axis, -1)
            if om.flags.c_contiguous:  # (out overlapping x: the rows function copies x)
                run(x2, out_rows(om, n), marker, threads_, *options)
                return out
        res = np.empty(shape if reduces else xm.shape, storage)
        run(x2, out_rows(res, n), marker, threads_, *options)
        if out is None:
            return res if (last or reduces) else np.moveaxis(res, -1, axis)
        np.copyto(om, res)
        return out

    kernel.__name__ = kernel.__qualname__ = name.replace("/", "_").replace("@", "_at_")
    kernel.__doc__ = f"{name}: {function}(x, axis=-1, out=None).\n\n{doc}"
    return kernel


def make_vjp_kernel(forward, rows, storage, compute, name, doc=""):
    """The ``f(x, g, axis=-1, out=None)`` callable of a softmax backward pass: ``y = forward(x)``
    (a softmax kernel of the same storage and compute, its result in the storage format), then
    ``rows(y2, g2, out2, compute_marker, threads)`` on C-contiguous rows. ``g`` must be an ndarray
    of ``x``'s dtype and shape (TypeError / ValueError otherwise); ``x``, ``axis`` and ``out`` are
    checked by :func:`check_call`, as every kernel's; neither input is modified."""
    storage = format_of(storage).dtype
    marker = COMPUTE_MARKERS[compute]
    view = numba_view(storage)
    entry = None  # as make_kernel's: the compiled rows function of the fast path

    def compiled():
        nonlocal entry
        proto = np.empty((1, 1), view)
        entry = rows.compile(tuple(numba.typeof(a) for a in (proto, proto, proto, marker, 1)))
        return entry

    ndarray, empty, overlap = np.ndarray, np.empty, np.may_share_memory
    plain_marker = marker.item()  # (for the entry point: see make_kernel)

    def kernel(x, g, axis=-1, out=None):
        # The common call (as make_kernel's): C rows of the storage dtype along the last axis,
        # ``g`` alike, ``out`` None or C rows not overlapping ``g`` (the rows function reads a
        # row of ``g`` while it writes that row of ``out``); 3 us on a 1,000-element float32
        # row against 12 us by the general path below.
        if (type(axis) is int and axis == -1 and type(x) is ndarray and type(g) is ndarray
                and (x.dtype is storage or x.dtype == storage) and (g.dtype is storage or g.dtype == storage)
                and (shape := x.shape) and shape == g.shape and x.size
                and (xf := x.flags).c_contiguous and xf.aligned and (gf := g.flags).c_contiguous and gf.aligned):
            if out is None:
                res = empty(shape, storage)
            elif (type(out) is ndarray and (out.dtype is storage or out.dtype == storage)
                  and out.shape == shape and out.flags.carray and not overlap(out, g)):
                res = out
            else:
                res = None
            if res is not None:
                n = shape[-1]
                y = forward(x)  # (before res is written: out may overlap x)
                (entry or compiled())(y.reshape(-1, n), g.reshape(-1, n), res.reshape(-1, n),
                                      plain_marker, threads(x.size))
                return res
        axis, n, _ = check_call(name, name.split("/")[0], storage, x, axis, out)
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{name}: g must be a numpy array, got {type(g).__name__}")
        if g.dtype != storage:
            raise TypeError(f"{name}: g must have dtype {storage.name}, got {g.dtype}")
        if g.shape != x.shape:
            raise ValueError(f"{name}: g has shape {g.shape}, x has {x.shape}")
        y = forward(x, axis=axis)
        if x.size == 0:
            return y if out is None else out
        y2 = np.ascontiguousarray(np.moveaxis(y, axis, -1))
        g2 = np.ascontiguousarray(np.moveaxis(g, axis, -1))
        res = np.empty_like(y2)
        rows(y2.reshape(-1, n).view(view), g2.reshape(-1, n).view(view),
             res.reshape(-1, n).view(view), marker, threads(y2.size))
        res = np.moveaxis(res, -1, axis)
        if out is None:
            return res
        np.copyto(out, res)
        return out

    kernel.__name__ = kernel.__qualname__ = name.replace("/", "_").replace("@", "_at_")
    kernel.__doc__ = f"{name}: softmax_vjp(x, g, axis=-1, out=None).\n\n{doc}"
    return kernel
