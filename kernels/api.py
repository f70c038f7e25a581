"""The Python face of a kernel: ``f(x, axis=-1, out=None)`` around a numba rows function.

:func:`make_softmax` wraps a rows function ``rows(x2, out2, compute_marker)`` (C-contiguous 2-D
storage arrays, softmax along the last axis) into a callable that takes any array of the storage
dtype, of any shape and memory layout, along any axis:

- the input is never modified (when ``out`` may share memory with it, the result goes through a
  fresh buffer);
- contiguous rows along the last axis are used in place; any other layout or axis is copied to
  contiguous rows first (``np.moveaxis`` + ``np.ascontiguousarray``);
- ``out=`` must be an ndarray of the storage dtype and the input's shape (any layout); it is
  filled and returned. Without ``out``, a new array is returned (for ``axis`` other than the last,
  a view of a contiguous buffer with the given axis moved back into place);
- errors: ``TypeError`` for a non-array, a wrong dtype, a non-integer axis or a bad ``out`` type or
  dtype; ``ValueError`` for a 0-d input, an empty softmax axis, an axis out of range
  (``numpy.exceptions.AxisError``, a ValueError) or an ``out`` of the wrong shape or read-only.
"""
from __future__ import annotations

import operator

import numba
import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from softmax_bench.formats import format_of

from .arith import COMPUTE_MARKERS

__all__ = ["make_softmax", "numba_view"]


def numba_view(storage) -> np.dtype:
    """The dtype a storage array is viewed as when it enters numba, which has no float16 or
    bfloat16 type: float16 travels as its uint16 bits, bfloat16 as its int16 bits (the view's
    type tells the two apart, see arith.py); float32 and float64 as themselves."""
    storage = format_of(storage).dtype
    return np.dtype({"float16": np.uint16, "bfloat16": np.int16}.get(storage.name, storage))


def make_softmax(rows, storage, compute, name, doc=""):
    """The ``f(x, axis=-1, out=None)`` callable for ``rows`` specialised to ``storage`` dtype and
    ``compute`` precision (names as in :data:`.arith.COMPUTE_MARKERS`)."""
    storage = format_of(storage).dtype
    marker = COMPUTE_MARKERS[compute]
    view = numba_view(storage)

    def as_rows(a, n):
        return a.reshape(-1, n).view(view)

    def softmax(x, axis=-1, out=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: x must be a numpy array, got {type(x).__name__}")
        if x.dtype != storage:
            raise TypeError(f"{name}: x must have dtype {storage.name}, got {x.dtype}")
        if x.ndim == 0:
            raise ValueError(f"{name}: x is 0-d; softmax needs an axis")
        if isinstance(axis, (bool, np.bool_)):
            raise TypeError(f"{name}: axis must be an integer, got {axis!r}")
        try:
            axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"{name}: axis must be an integer, got {axis!r}") from None
        axis = normalize_axis_index(axis, x.ndim)  # AxisError (a ValueError) when out of range
        n = x.shape[axis]
        if n == 0:
            raise ValueError(f"{name}: the softmax axis (axis {axis}) is empty")
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"{name}: out must be a numpy array, got {type(out).__name__}")
            if out.dtype != storage:
                raise TypeError(f"{name}: out must have dtype {storage.name}, got {out.dtype}")
            if out.shape != x.shape:
                raise ValueError(f"{name}: out has shape {out.shape}, expected {x.shape}")
            if not out.flags.writeable:
                raise ValueError(f"{name}: out is read-only")
        last = axis == x.ndim - 1
        xm = x if last else np.moveaxis(x, axis, -1)
        if x.size == 0:  # another axis is empty: nothing to compute
            return np.empty(x.shape, storage) if out is None else out
        x2 = as_rows(np.ascontiguousarray(xm), n)  # a plain ndarray of C rows
        threads = numba.get_num_threads()
        if out is not None:
            om = out if last else np.moveaxis(out, axis, -1)
            if om.flags.c_contiguous and not np.may_share_memory(out, x):
                rows(x2, as_rows(om, n), marker, threads)
                return out
        res = np.empty(xm.shape, storage)
        rows(x2, as_rows(res, n), marker, threads)
        if out is None:
            return res if last else np.moveaxis(res, -1, axis)
        np.copyto(om, res)
        return out

    softmax.__name__ = softmax.__qualname__ = name.replace("/", "_").replace("@", "_at_")
    softmax.__doc__ = f"{name}: softmax(x, axis=-1, out=None).\n\n{doc}"
    return softmax
