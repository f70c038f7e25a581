"""The one table of kernels: every (function, algorithm, storage dtype, compute precision).

Adding an algorithm is one file under the function's folder (its operation order in the
docstring, ``ROWS``: the function's generic numba rows function, ``OPTIONS``: its option values)
and one line in :data:`FUNCTIONS`; it is then registered in every mode of :data:`MODES`. A softmax
algorithm may add ``SPLIT_ROWS``: the same for batches of a few long rows, each row split across
threads (:func:`.passes.splits`), compiled on first use (float32/float64 compute only), and
``ONE_ROW``: the same for one row as 1-D arrays (api.py's fast path, compiled on first use).

Stable ids: ``"<function>/<algorithm>/<storage>@<compute>"``, e.g.
``"softmax/shifted/float16@float32"``, ``"logsumexp/shifted_log1p/float32@float32"``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import numpy as np

from softmax_bench.formats import format_of
from softmax_bench.functions import ALGORITHMS as ALGORITHM_NAMES
from softmax_bench.functions import FUNCTIONS as FUNCTION_NAMES
from softmax_bench.functions import GRADIENTS, REDUCTIONS

from .api import make_kernel, make_vjp_kernel
from .arith import SPLITTABLE
from .log_softmax import naive as ls_naive, shifted as ls_shifted, shifted_log1p as ls_log1p
from .logsumexp import naive as lse_naive, shifted as lse_shifted, shifted_log1p as lse_log1p
from .softmax import division_free as sm_divfree, division_free_log1p as sm_divfree_log1p
from .softmax import naive as sm_naive, shifted as sm_shifted, shifted_log1p as sm_log1p
from .softmax import online as sm_online, two_pass as sm_two_pass
from .softmax_vjp import shifted as vjp_shifted

__all__ = ["KernelSpec", "FUNCTIONS", "MODES", "KERNELS", "get_kernel", "list_kernels"]

_ALG41 = "Blanchard-Higham-Higham Alg. 4.1: the maximum's term left out of the sum"
#: function -> algorithm name -> (module, one-line description). One line per algorithm.
FUNCTIONS: dict[str, dict[str, tuple[ModuleType, str]]] = {
    "softmax": {
        "naive": (sm_naive, "exp(x_i) / sum_j exp(x_j), no shift"),
        "shifted": (sm_shifted, "exp(x_i - max) / sum_j exp(x_j - max)"),
        "shifted_log1p": (sm_log1p, f"exp(x_i - max) / (1 + sum_(j != k) exp(x_j - max)): {_ALG41}"),
        "division_free": (sm_divfree, "exp(x_i - log(sum_j exp(x_j))): no division"),
        "division_free_log1p": (sm_divfree_log1p, f"exp(x_i - (max + log1p(sum_(j != k) "
                                                  f"exp(x_j - max)))): no division, {_ALG41}"),
        "online": (sm_online, "exp(x_i - M) / S, (M, S) a running maximum and rescaled sum "
                              "(Milakov & Gimelshein 2018): 2 reads + 1 write"),
        "two_pass": (sm_two_pass, "y_i 2**(k_i - K) / S, exp held as y 2**k, no maximum pass "
                                  "(Dukhan & Ablavatski 2020): 2 reads + 1 write"),
    },
    "log_softmax": {
        "naive": (ls_naive, "x_i - log(sum_j exp(x_j)), no shift"),
        "shifted": (ls_shifted, "(x_i - max) - log(sum_j exp(x_j - max))"),
        "shifted_log1p": (ls_log1p, f"(x_i - max) - log1p(sum_(j != k) exp(x_j - max)): {_ALG41}"),
    },
    "logsumexp": {
        "naive": (lse_naive, "log(sum_j exp(x_j)), no shift"),
        "shifted": (lse_shifted, "max + log(sum_j exp(x_j - max))"),
        "shifted_log1p": (lse_log1p, f"max + log1p(sum_(j != k) exp(x_j - max)): {_ALG41}"),
    },
    "softmax_vjp": {
        "shifted": (vjp_shifted, "y * (g - <g, y>), y = softmax/shifted(x) stored: the backward "
                                 "pass as frameworks run it"),
    },
}
# one list of the family and its algorithms (softmax_bench/functions.py), which needs no numba
assert tuple(FUNCTIONS) == FUNCTION_NAMES
assert all(tuple(algorithms) == ALGORITHM_NAMES[f] for f, algorithms in FUNCTIONS.items())

#: (storage dtype, compute precision) pairs every algorithm is registered in. The first pair of a
#: storage dtype is its default compute precision (the storage precision itself, but for float8:
#: float32, as FP8 kernels compute).
MODES: tuple[tuple[str, str], ...] = (
    ("float16", "float16"),  # binary16 arithmetic: every operation rounded to binary16
    ("float16", "float32"),  # load half, compute float32, store half (PyTorch CPU style)
    ("bfloat16", "bfloat16"),  # bfloat16 arithmetic: every operation rounded to bfloat16
    ("bfloat16", "float32"),  # load bfloat16, compute float32, store bfloat16 (PyTorch CPU style)
    ("float8_e4m3fn", "float32"),  # load float8, compute float32, store float8 once (FP8 attention)
    ("float8_e5m2", "float32"),
    ("float32", "float32"),
    ("float32", "float64"),
    ("float64", "float64"),
)

#: storage dtype -> its default compute precision (the first of its :data:`MODES`).
DEFAULT_COMPUTE = {storage: compute for storage, compute in reversed(MODES)}


@dataclass(frozen=True)
class KernelSpec:
    """One registered kernel. ``fn(x, axis=-1, out=None)`` takes and returns arrays of ``dtype``."""

    id: str
    function: str
    algorithm: str
    dtype: np.dtype  # storage
    compute: str  # "float16" | "bfloat16" | "float32" | "float64"
    fn: Callable = field(repr=False, compare=False)
    rows: Callable = field(repr=False, compare=False)  # the numba rows function behind fn
    split_rows: Callable | None = field(repr=False, compare=False)  # for a few long rows (api.py)
    options: tuple = field(repr=False, compare=False)  # its option values
    description: str = ""

    @property
    def reduces(self) -> bool:
        """One output per row (the result has the input's shape without the axis)."""
        return self.function in REDUCTIONS

    @property
    def __call__(self) -> Callable:
        """``spec(...)`` is ``fn(x, axis=-1, out=None)`` (softmax_vjp: ``fn(x, g, axis=-1,
        out=None)``): a call looks ``__call__`` up on the class and, finding a property, calls
        what it returns with the call's own arguments; a forwarding method would repack them
        (*args, **kwargs) and cost 0.35 us per call, a quarter of a 1,000-element row's."""
        return self.fn

    @property
    def __signature__(self) -> inspect.Signature:
        """``inspect.signature(spec)``: fn's (a property ``__call__`` has none of its own)."""
        return inspect.signature(self.fn)


def _build() -> tuple[KernelSpec, ...]:
    specs = []
    by_id = {}
    for function, algorithms in FUNCTIONS.items():
        for algorithm, (module, description) in algorithms.items():
            for storage, compute in MODES:
                kid = f"{function}/{algorithm}/{storage}@{compute}"
                if function in GRADIENTS:  # the forward kernel's output, then the backward pass
                    forward = by_id[f"softmax/{module.FORWARD}/{storage}@{compute}"].fn
                    fn = make_vjp_kernel(forward, module.ROWS, storage, compute, kid, module.__doc__ or "")
                    options, split_rows = (), None
                else:
                    split_rows = getattr(module, "SPLIT_ROWS", None) if compute in SPLITTABLE else None
                    fn = make_kernel(module.ROWS, module.OPTIONS, storage, compute, kid,
                                     module.__doc__ or "", function in REDUCTIONS, split_rows,
                                     getattr(module, "ONE_ROW", None))
                    options = module.OPTIONS
                spec = KernelSpec(kid, function, algorithm, format_of(storage).dtype, compute,
                                  fn, module.ROWS, split_rows, options, description)
                specs.append(spec)
                by_id[kid] = spec
    return tuple(specs)


#: Every kernel, in registry order (FUNCTIONS order, then MODES order).
KERNELS: tuple[KernelSpec, ...] = _build()
_BY_ID = {k.id: k for k in KERNELS}


def list_kernels(algorithm=None, dtype=None, compute=None, function=None) -> list[KernelSpec]:
    """The registered kernels, optionally filtered by algorithm, storage dtype, compute and
    function (``"softmax"``, ``"log_softmax"``, ``"logsumexp"``, ``"softmax_vjp"``)."""
    dt = None if dtype is None else format_of(dtype).dtype
    return [
        k
        for k in KERNELS
        if (algorithm is None or k.algorithm == algorithm)
        and (dt is None or k.dtype == dt)
        and (compute is None or k.compute == format_of(compute).name)
        and (function is None or k.function == function)
    ]


def get_kernel(algorithm: str, dtype, compute=None, function: str = "softmax") -> KernelSpec:
    """The kernel ``algorithm`` of ``function`` for storage ``dtype`` computing in ``compute``
    (default: :data:`DEFAULT_COMPUTE`, the storage precision but for float8). Call it as
    ``get_kernel(...)(x, axis=-1, out=None)``; the plain function is ``.fn``. Raises KeyError (listing what exists) for an unknown combination."""
    if function not in FUNCTIONS:
        raise KeyError(f"unknown function {function!r}; known: {list(FUNCTIONS)}")
    if algorithm not in FUNCTIONS[function]:
        raise KeyError(f"unknown {function} algorithm {algorithm!r}; known: {list(FUNCTIONS[function])}")
    try:
        storage = format_of(dtype).name
        comp = DEFAULT_COMPUTE.get(storage, storage) if compute is None else format_of(compute).name
    except TypeError as err:
        raise KeyError(f"not a dtype: {dtype!r} / {compute!r}") from err
    kid = f"{function}/{algorithm}/{storage}@{comp}"
    if kid not in _BY_ID:
        registered = [k.id for k in list_kernels(algorithm, function=function)]
        raise KeyError(f"no kernel {kid!r}; registered: {registered}")
    return _BY_ID[kid]
