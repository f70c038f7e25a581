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
from pathlib import Path

import numpy as np

__all__ = ["warm", "warm_parallel", "compile_notice", "COMPILE_S"]

#: Seconds one kernel adds to a run with an empty cache, per core: the default audit's 98 kernels
#: compiled in two processes at once, as its two case workers do, took 102 and 103 s (2.1 s
#: each) on the 2-core AMD EPYC Zen 4 VM, with the kernels' helpers linked only (no Python
#: wrappers, no machine code of their own: arith.kernel_jit, softmax_bench.jit.LinkedOnlyLibrary;
#: 145 s with machine code, 180 s with wrappers too); its first run in a fresh venv took 146 s
#: and a warm one 31 s (numba 0.68.1). On the Zen 5 machine of earlier rounds, before those
#: changes: 2.6 s a kernel (166 s cold, 39 s warm).
COMPILE_S = 2.1


def compile_notice(count: int, workers: int) -> str | None:
    """The line to print before a command compiles ``count`` kernels on ``workers`` processes
    when this version of the kernels has never been compiled here (its cache folder holds no
    compiled code), else None: the first run's minutes are spent compiling, once."""
    from .cache import CACHE_FOLDER

    if count == 0 or workers == 0 or CACHE_FOLDER is None:
        return None
    if any(Path(CACHE_FOLDER).rglob("*.nbi")):  # numba's index files, in a folder per package
        return None
    minutes = COMPILE_S * count / max(1, workers) / 60
    return (f"compiling {count} kernels once, about {minutes:.0f} min on {workers} "
            f"{'core' if workers == 1 else 'cores'} (numba; later runs load them from {CACHE_FOLDER})")


def warm(ids, split: bool = False) -> None:
    """Compile (or load from the cache) the kernels with these ids, in this process: one call on
    a small 2-D array, the signature every call of the kernel uses (api.py passes C-contiguous
    2-D rows; a softmax's ``ONE_ROW``, for short 1-D rows, is compiled in each process on its
    first use, 0.4 s, and never cached: see :func:`.softmax.rows.softmax_row`); with ``split``,
    also their split rows functions (``SPLIT_ROWS``, which a call reaches only for a few long
    rows on several threads: the tests do, the audit need not)."""
    from softmax_bench.functions import GRADIENTS

    from .api import numba_view
    from .arith import COMPUTE_MARKERS
    from .registry import _BY_ID

    for kid in ids:
        spec = _BY_ID[kid]
        x = np.zeros((1, 2), spec.dtype)
        spec(x, x) if spec.function in GRADIENTS else spec(x)  # a backward pass takes (x, g)
        if split and spec.split_rows is not None:
            v = x.view(numba_view(spec.dtype))
            out = v[:, 0].copy() if spec.reduces else v.copy()  # (a reduction: one per row)
            spec.split_rows(v, out, COMPUTE_MARKERS[spec.compute], 2, *spec.options)


def warm_parallel(ids=None, processes: int | None = None, split: bool = False) -> None:
    """:func:`warm` the kernels ``ids`` (default: every kernel; ``split`` as there) over
    ``processes`` spawned processes (default: one per core), one kernel at a time to whichever
    process is idle (a kernel takes 1-13 s on the Zen 3 VM: round-robin shares of the default
    audit's ended 22 s apart)."""
    from .registry import KERNELS

    ids = [k.id for k in KERNELS] if ids is None else list(ids)
    processes = max(1, min(processes or os.cpu_count() or 1, len(ids)))
    if processes == 1:
        warm(ids, split)
        return
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.starmap(warm, [([kid], split) for kid in ids], chunksize=1)
