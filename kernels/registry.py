"""The one table of kernels: every (algorithm, storage dtype, compute precision) specialisation.

Adding an algorithm is one file (a numba rows function ``rows(x2, out2, compute_marker)``, generic
over the storage dtype and the compute marker, see :mod:`.arith`) and one line in
:data:`ALGORITHMS`; it is then registered in every mode of :data:`MODES`.

Stable ids: ``"<algorithm>/<storage>@<compute>"``, e.g. ``"shifted/float16@float32"``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from softmax_bench.formats import format_of

from . import naive, shifted
from .api import make_softmax

__all__ = ["KernelSpec", "ALGORITHMS", "MODES", "KERNELS", "get_kernel", "list_kernels"]

#: algorithm name -> (rows function, one-line description). One line per algorithm.
ALGORITHMS: dict[str, tuple[Callable, str]] = {
    "naive": (naive.naive_rows, "exp(x_i) / sum_j exp(x_j), no shift"),
    "shifted": (shifted.shifted_rows, "exp(x_i - max) / sum_j exp(x_j - max)"),
}

#: (storage dtype, compute precision) pairs every algorithm is registered in. The first pair of a
#: storage dtype is its default compute precision (the storage precision itself).
MODES: tuple[tuple[str, str], ...] = (
    ("float16", "float16"),  # binary16 arithmetic: every operation rounded to binary16
    ("float16", "float32"),  # load half, compute float32, store half (PyTorch CPU style)
    ("bfloat16", "bfloat16"),  # bfloat16 arithmetic: every operation rounded to bfloat16
    ("bfloat16", "float32"),  # load bfloat16, compute float32, store bfloat16 (PyTorch CPU style)
    ("float32", "float32"),
    ("float32", "float64"),
    ("float64", "float64"),
)


@dataclass(frozen=True)
class KernelSpec:
    """One registered kernel. ``fn(x, axis=-1, out=None)`` takes and returns arrays of ``dtype``."""

    id: str
    algorithm: str
    dtype: np.dtype  # storage
    compute: str  # "float16" | "bfloat16" | "float32" | "float64"
    fn: Callable = field(repr=False, compare=False)
    rows: Callable = field(repr=False, compare=False)  # the numba rows function behind fn
    description: str = ""

    def __call__(self, x, axis=-1, out=None):
        return self.fn(x, axis=axis, out=out)


def _build() -> tuple[KernelSpec, ...]:
    specs = []
    for algorithm, (rows, description) in ALGORITHMS.items():
        module_doc = sys.modules[rows.__module__].__doc__ or ""
        for storage, compute in MODES:
            kid = f"{algorithm}/{storage}@{compute}"
            fn = make_softmax(rows, storage, compute, kid, module_doc)
            specs.append(
                KernelSpec(kid, algorithm, format_of(storage).dtype, compute, fn, rows, description)
            )
    return tuple(specs)


#: Every kernel, in registry order (algorithms in ALGORITHMS order, then MODES order).
KERNELS: tuple[KernelSpec, ...] = _build()
_BY_ID = {k.id: k for k in KERNELS}


def list_kernels(algorithm=None, dtype=None, compute=None) -> list[KernelSpec]:
    """The registered kernels, optionally filtered by algorithm, storage dtype and compute."""
    dt = None if dtype is None else format_of(dtype).dtype
    return [
        k
        for k in KERNELS
        if (algorithm is None or k.algorithm == algorithm)
        and (dt is None or k.dtype == dt)
        and (compute is None or k.compute == format_of(compute).name)
    ]


def get_kernel(algorithm: str, dtype, compute=None) -> KernelSpec:
    """The kernel ``algorithm`` for storage ``dtype`` computing in ``compute`` (default: the
    storage precision). Call it as ``get_kernel(...)(x, axis=-1, out=None)``; the plain function
    is ``.fn``. Raises KeyError (listing what exists) for an unknown combination."""
    if algorithm not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {algorithm!r}; known: {sorted(ALGORITHMS)}")
    try:
        storage = format_of(dtype).name
        comp = storage if compute is None else format_of(compute).name
    except TypeError as err:
        raise KeyError(f"not a dtype: {dtype!r} / {compute!r}") from err
    kid = f"{algorithm}/{storage}@{comp}"
    if kid not in _BY_ID:
        raise KeyError(f"no kernel {kid!r}; registered: {[k.id for k in list_kernels(algorithm)]}")
    return _BY_ID[kid]
