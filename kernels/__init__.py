"""softmax-bench kernels: numba softmax implementations, one file per algorithm.

Public API (imported lazily, so ``import softmax_bench.kernels.float16`` stays light)::

    from softmax_bench.kernels import get_kernel, list_kernels, KERNELS
    f = get_kernel("shifted", "float16", compute="float32")   # a KernelSpec, callable
    y = f(x, axis=-1, out=None)                               # x: float16 array

- ``get_kernel(algorithm, dtype, compute=None)``: compute defaults to the storage precision.
- ``list_kernels(algorithm=None, dtype=None, compute=None)``: the matching :class:`KernelSpec`\\ s.
- ``KERNELS``: every spec (``id`` like ``"shifted/float16@float32"``, ``algorithm``, ``dtype``,
  ``compute``, ``fn``).

Layout: ``naive.py`` and ``shifted.py`` (the algorithms), ``arith.py`` (compute modes, summation
order), ``passes.py`` (shared passes and thread scheduling), ``api.py`` (argument handling),
``registry.py`` (the table), ``float16.py`` and ``exp.py`` (binary16 conversions, exp functions).

numba's on-disk cache (``cache=True``) is checked against the source file of each cached function
only: a cached kernel keeps the code it inlined from another file (``exp.py``, ``float16.py``,
``arith.py``...) after that file changes. :func:`_drop_stale_caches` therefore hashes the sources
of this package at import and, when the hash differs from the one stored in ``__pycache__``,
deletes this package's numba index files there (``__pycache__/*.nbi``), so numba recompiles.
This covers the default in-tree cache only; with ``NUMBA_CACHE_DIR`` set, clear that directory
after editing a kernel file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["get_kernel", "list_kernels", "KERNELS", "KernelSpec"]

_STAMP = "softmax_bench_kernels.sources.sha256"


def _drop_stale_caches() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    cache = here / "__pycache__"
    try:
        digest = hashlib.sha256()
        for p in sorted(here.glob("*.py")):
            digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        digest = digest.hexdigest()
        stamp = cache / _STAMP
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return
        cache.mkdir(exist_ok=True)
        # Dropping the index files is enough (numba then misses and recompiles, overwriting the
        # data files); leaving the .nbc files avoids a FileNotFoundError in a process that read an
        # index just before.
        for p in cache.glob("*.nbi"):
            p.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".stamp-")
        with os.fdopen(fd, "w") as f:
            f.write(digest + "\n")
        os.replace(tmp, stamp)
    except OSError:  # read-only install: numba caches elsewhere and the sources do not change
        pass


_drop_stale_caches()


def __getattr__(name):
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
