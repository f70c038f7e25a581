"""Helpers shared by the asv benchmark modules (no benchmark names in here)."""
from __future__ import annotations

import numpy as np

#: Every function, algorithm and (storage, compute) mode of the registry, in registry order. Kept
#: as literals (not read from the registry) so that parameter names are stable over commits; a
#: kernel a commit lacks raises NotImplementedError in setup() and shows as n/a for that commit.
#: (Ids gained their function in the commit that added log_softmax and logsumexp: the softmax
#: kernels' earlier history is under the ids without "softmax/".)
FUNCTIONS = ("softmax", "log_softmax", "logsumexp")
ALGORITHMS = {
    "softmax": ("naive", "shifted", "shifted_log1p", "division_free", "division_free_log1p",
                "online", "two_pass"),
    "log_softmax": ("naive", "shifted", "shifted_log1p"),
    "logsumexp": ("naive", "shifted", "shifted_log1p"),
}
MODES = (
    ("float16", "float16"),
    ("float16", "float32"),
    ("bfloat16", "bfloat16"),
    ("bfloat16", "float32"),
    ("float32", "float32"),
    ("float32", "float64"),
    ("float64", "float64"),
)
KERNEL_IDS = tuple(f"{f}/{a}/{s}@{c}" for f in FUNCTIONS for a in ALGORITHMS[f] for s, c in MODES)
#: The backward-pass kernels, f(x, g) (their own benchmark classes: they take a cotangent).
VJP_IDS = tuple(f"softmax_vjp/shifted/{s}@{c}" for s, c in MODES)
DTYPES = ("float16", "float32", "float64")


def kernel(kid: str):
    """The registered kernel ``kid`` (``"softmax/shifted/float16@float32"``), or NotImplementedError
    (asv's way to skip one parameter combination) when this commit has no such kernel. Any other
    import failure (a broken install) is raised: asv must not report it as n/a and succeed."""
    try:
        from softmax_bench.kernels import get_kernel
    except ModuleNotFoundError as err:
        if err.name not in ("softmax_bench", "softmax_bench.kernels"):
            raise
        raise NotImplementedError(f"no kernel registry in this commit: {err}")
    function, algorithm, mode = kid.split("/")
    storage, compute = mode.split("@")
    try:
        return get_kernel(algorithm, storage, compute, function=function)
    except (KeyError, TypeError) as err:  # TypeError: a commit before the function axis
        raise NotImplementedError(str(err))


def storage_of(kid: str) -> str:
    return kid.split("/")[-1].split("@")[0]


def normal_input(dtype: str, shape) -> np.ndarray:
    """The timing input: N(0, 1), seed 0 (the same data as softmax_bench.bench)."""
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def numpy_composed(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def peer(name: str, x: np.ndarray):
    """A zero-argument callable running peer ``name`` on ``x``; NotImplementedError when the peer
    is not installed or does not take ``x``'s dtype."""
    if name == "numpy":
        return lambda: numpy_composed(x)
    if name == "scipy":
        try:
            import scipy.special
        except ImportError:
            raise NotImplementedError("scipy not installed")
        return lambda: scipy.special.softmax(x, axis=-1)
    if name == "torch":
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch not installed")
        torch.set_num_threads(2)
        tx = torch.from_numpy(x)
        f = lambda: torch.softmax(tx, -1)
        try:
            f()
        except Exception as err:  # e.g. a dtype torch's CPU softmax does not take
            raise NotImplementedError(f"torch: {err}")
        return f
    raise ValueError(name)
