"""Speed and peak memory of every registered kernel and of the peers, softmax along the last axis.

Each setup() builds the input and calls the implementation once, so numba's compilation (or the
load of its on-disk cache) and first-touch page faults never land in a timing. Parameters that a
commit or an environment cannot run (a kernel not registered yet, torch not installed, a peer that
refuses float16) raise NotImplementedError in setup() and show as n/a.
"""
from __future__ import annotations

import numpy as np

from ._common import KERNEL_IDS, VJP_IDS, kernel, normal_input, peer, storage_of

ROW_SIZES = (100, 10_000, 1_000_000)
#: 10^7-element rows: only for a few kernels and peers, so a full run stays a few minutes.
LARGE_KERNELS = (
    "softmax/naive/float32@float32",
    "softmax/shifted/float32@float32",
    "softmax/shifted/float64@float64",
    "softmax/shifted/float16@float32",
)
BATCHES = ("4096x1024", "65536x10")
PEERS = ("numpy", "scipy", "torch", "copy")
DTYPES = ("float16", "float32", "float64")


def _shape(label) -> tuple[int, ...]:
    return tuple(int(s) for s in str(label).split("x"))


class _KernelCase:
    """setup(kernel id, shape): input, output buffer, one warm-up call (numba compile/cache)."""

    #: a first run in a fresh environment compiles each kernel (about 25 s each on a loaded
    #: 2-core machine) before numba's cache has it; asv's default timeout is 60 s.
    timeout = 300

    def setup(self, kid, shape):
        spec = kernel(kid)
        self.f = spec.fn
        self.x = normal_input(storage_of(kid), _shape(shape))
        self.out = np.empty(self.x.shape[:-1] if spec.reduces else self.x.shape, self.x.dtype)
        self.f(self.x)
        self.f(self.x, out=self.out)

    def time_softmax(self, kid, shape):
        """f(x): allocates the result, like the peers."""
        self.f(self.x)

    def time_softmax_out(self, kid, shape):
        """f(x, out=out): into a preallocated array, like the copy."""
        self.f(self.x, out=self.out)


class KernelRow(_KernelCase):
    """One row of n elements."""

    params = (list(KERNEL_IDS), list(ROW_SIZES))
    param_names = ("kernel", "n")


class KernelBatch(_KernelCase):
    """Batched rows (rows x n)."""

    params = (list(KERNEL_IDS), list(BATCHES))
    param_names = ("kernel", "shape")


class KernelLargeRow(_KernelCase):
    """One row of 10^7 elements (does not fit in cache: memory bound)."""

    params = (list(LARGE_KERNELS), [10_000_000])
    param_names = ("kernel", "n")

    def peakmem_softmax(self, kid, shape):
        """Peak RSS of the process around f(x) (input and the result are 1x each)."""
        self.f(self.x)

    def peakmem_softmax_out(self, kid, shape):
        """Peak RSS around f(x, out=out): no full-size temporary is expected."""
        self.f(self.x, out=self.out)


class _PeerCase:
    timeout = 120
    def setup(self, name, dtype, shape):
        x = normal_input(dtype, _shape(shape))
        if name == "copy":  # one read and one write of every element: the memory floor
            out = np.empty_like(x)
            self.f = lambda: np.copyto(out, x)
        else:
            self.f = peer(name, x)
        with np.errstate(all="ignore"):
            try:
                self.f()
            except TypeError as err:  # a peer that does not take this dtype
                raise NotImplementedError(str(err))

    def time_softmax(self, name, dtype, shape):
        self.f()


class Peers(_PeerCase):
    """numpy composed (exp(x - max) / sum), scipy.special.softmax, torch.softmax (2 threads),
    and np.copyto, on the same inputs as the kernels."""

    params = (list(PEERS), list(DTYPES), [str(n) for n in ROW_SIZES] + list(BATCHES))
    param_names = ("peer", "dtype", "shape")


class PeersLargeRow(_PeerCase):
    params = (list(PEERS), ["float32", "float64"], ["10000000"])
    param_names = ("peer", "dtype", "shape")

    def peakmem_softmax(self, name, dtype, shape):
        self.f()


class BackwardPass:
    """The backward-pass kernels f(x, g) (the forward softmax, then y * (g - <g, y>))."""

    params = (list(VJP_IDS), ["10000", "4096x1024"])
    param_names = ("kernel", "shape")
    timeout = 300

    def setup(self, kid, shape):
        self.f = kernel(kid).fn
        self.x = normal_input(storage_of(kid), _shape(shape))
        self.g = np.random.default_rng(1).standard_normal(self.x.shape).astype(self.x.dtype)
        self.f(self.x, self.g)

    def time_vjp(self, kid, shape):
        self.f(self.x, self.g)
