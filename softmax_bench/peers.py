"""Adapters that let the audit and the benchmarks treat any softmax like one of our kernels.

A peer is a function ``f(x) -> y`` computing softmax along the last axis of a numpy array and
returning an array of the same shape. Built-in peers: ``numpy`` (composed, max-shifted),
``scipy`` (scipy.special.softmax), ``torch`` (torch.softmax on the CPU) and ``jax``
(jax.nn.softmax); each is available only when its package imports. Any other function is named
``module:function`` (e.g. ``scipy.special:softmax``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Peer", "PeerUnavailable", "BUILTIN_PEERS", "get_peer", "available_peers"]


class PeerUnavailable(RuntimeError):
    """The peer's package is not installed (or the named function does not exist)."""


@dataclass(frozen=True)
class Peer:
    name: str
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(self.fn(x))
        if y.shape != x.shape:
            raise ValueError(f"peer {self.name!r} returned shape {y.shape} for input {x.shape}")
        return y


def _numpy_softmax(x: np.ndarray) -> np.ndarray:
    """The composed numpy form every tutorial shows: ``e = exp(x - max); e / sum(e)``."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _scipy():
    from scipy.special import softmax

    return lambda x: softmax(x, axis=-1)


def _torch():
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(np.ascontiguousarray(x)), dim=-1).numpy()

    return run


def _jax():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # keep float64 inputs in float64
    return lambda x: np.asarray(jax.nn.softmax(jnp.asarray(x), axis=-1))


BUILTIN_PEERS: dict[str, Callable[[], Callable]] = {
    "numpy": lambda: _numpy_softmax,
    "scipy": _scipy,
    "torch": _torch,
    "jax": _jax,
}


def get_peer(name: str) -> Peer:
    """A built-in peer by name, or ``module:function``. Raises PeerUnavailable with the reason."""
    if name in BUILTIN_PEERS:
        try:
            return Peer(name, BUILTIN_PEERS[name]())
        except ImportError as err:
            raise PeerUnavailable(f"peer {name!r} needs a package that is not installed: {err}") from err
    if ":" not in name:
        raise ValueError(
            f"unknown peer {name!r}: choose from {', '.join(BUILTIN_PEERS)} or give module:function"
        )
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PeerUnavailable(f"cannot import {module_name!r} for {name!r}: {err}") from err
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise PeerUnavailable(f"{module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise PeerUnavailable(f"{name!r} is not callable")
    return Peer(name, fn)


def available_peers() -> dict[str, str]:
    """Built-in peer name -> 'available' or the reason it is not."""
    status = {}
    for name in BUILTIN_PEERS:
        try:
            get_peer(name)
            status[name] = "available"
        except PeerUnavailable as err:
            status[name] = str(err)
    return status
