"""Implementations that misbehave in every way a user's function can, for the audit's isolation
tests (tests/softmax_bench/test_isolation.py). Each is audited as ``hostile:<name>``."""
import ctypes
import os
import sys
import threading
import time

import numpy as np


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def raises(x):
    raise ValueError("hostile: refuses to work")


def exits(x):
    sys.exit(0)


def hard_exit(x):
    os._exit(1)


def segfault(x):
    ctypes.string_at(0)


def sleeps_forever(x):
    threading.Event().wait()


def hogs_memory(x):
    """Asks for 64 GiB, far beyond any --memory-limit the tests set."""
    return np.ones(8 * 2**30, dtype=np.float64)


def modifies_input(x):
    y = _softmax(x)
    x[...] = np.nan  # would spoil every implementation after it if the input were shared
    return y


def whole_array(x):
    """scipy.special.softmax's default (axis=None): normalises over every element."""
    e = np.exp(x - x.max())
    return e / e.sum()


def wrong_shape_at_10(x):
    y = _softmax(x)
    return y[..., :-1] if x.shape[-1] == 10 else y


def wrong_dtype(x):
    return _softmax(x.astype(np.float64))


def all_nan(x):
    return np.full_like(x, np.nan)


def finite_for_posinf(x):
    """Clamps +inf to the largest finite value: numbers where the reference is NaN."""
    return _softmax(np.minimum(x, np.finfo(x.dtype).max))


def slow(x):
    """A correct softmax that takes half a second: keeps an audit busy for the interrupt tests."""
    time.sleep(0.5)
    return _softmax(x)
