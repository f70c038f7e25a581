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

numba's on-disk cache lives in a per-user folder keyed by the digest of this package's sources
(``cache.py`` says why and where), so editing any kernel file recompiles, while installs of the
same sources (``pip install .``, ``pip install -e .``, another venv) share the compiled kernels and
leave nothing behind that shadows the package.
"""
from __future__ import annotations

__all__ = ["get_kernel", "list_kernels", "KERNELS", "KernelSpec"]


def __getattr__(name):
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
