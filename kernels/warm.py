"""Compile kernels ahead of their first call, in parallel processes when there are many.

numba compiles a kernel on its first call (2 to 10 s each: ``cache.py`` keeps the result on disk
for every later process). A process that needs many kernels for the first time (the audit's case
workers, a test session, a fresh install) compiles them one after another; :func:`warm_parallel`
splits them over processes instead, each writing its share to the shared on-disk cache, so the
wall time is divided by the number of cores. Loading a cached kernel takes about 0.1 s.
"""
from __future__ import annotations

import multiprocessing
import os

import numpy as np

__all__ = ["warm", "warm_parallel"]


def warm(ids) -> None:
    """Compile (or load from the cache) the kernels with these ids, in this process: one call on
    a small 2-D array, the signature every call of the kernel uses (api.py passes C-contiguous
    2-D rows)."""
    from softmax_bench.functions import GRADIENTS

    from .registry import _BY_ID

    for kid in ids:
        spec = _BY_ID[kid]
        x = np.zeros((1, 2), spec.dtype)
        spec(x, x) if spec.function in GRADIENTS else spec(x)  # a backward pass takes (x, g)


def warm_parallel(ids=None, processes: int | None = None) -> None:
    """:func:`warm` the kernels ``ids`` (default: every kernel) over ``processes`` spawned
    processes (default: one per core), round robin."""
    from .registry import KERNELS

    ids = [k.id for k in KERNELS] if ids is None else list(ids)
    processes = max(1, min(processes or os.cpu_count() or 1, len(ids)))
    if processes == 1:
        warm(ids)
        return
    shares = [ids[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(warm, shares)
