"""The kernels' numba cache: a per-user folder keyed by the sources of this package
(:mod:`softmax_bench.jit` says why and where). Every kernel function is decorated by
:func:`cached_njit`."""
from __future__ import annotations

from pathlib import Path

from softmax_bench.jit import numba_cache

__all__ = ["CACHE_FOLDER", "cached_njit"]

#: The folder of this package's numba cache (None: numba's default location).
CACHE_FOLDER, cached_njit = numba_cache(Path(__file__).parent)
