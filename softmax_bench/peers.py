"""Adapters that let the audit and the benchmarks treat any softmax like one of our kernels.

A peer is a function ``f(x) -> y`` computing softmax along the last axis of a numpy array and
returning an array of the same shape. Built-in peers: ``numpy`` (composed, max-shifted),
``scipy`` (scipy.special.softmax), ``torch`` (torch.softmax on the CPU) and ``jax``
(jax.nn.softmax); each is available only when its package imports.

Any other function is named ``module:function``, optionally with keyword arguments written as a
call with literal values: ``scipy.special:softmax(axis=-1)`` calls ``softmax(x, axis=-1)``.
(scipy's default ``axis=None`` normalises the whole array; the audit's contract probe refuses it.)
The working folder is searched last for ``module``, so a ``mod.py`` beside you is found without
shadowing installed packages.
"""
from __future__ import annotations

import ast
import functools
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Peer", "PeerUnavailable", "BUILTIN_PEERS", "get_peer", "parse_spec", "available_peers"]


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
    """torch.softmax on the CPU. bfloat16 crosses over as its bits (torch.from_numpy does not take
    ml_dtypes arrays); float8, for which torch has no softmax, is computed in float32 and cast
    with torch's own (saturating) cast, as a float8 attention kernel stores its probabilities."""
    import torch

    from softmax_bench.formats import format_of

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        name = format_of(x.dtype).name
        if name == "bfloat16":
            t = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
            return torch.softmax(t, dim=-1).view(torch.int16).numpy().view(x.dtype)
        if name.startswith("float8"):
            t = torch.from_numpy(x.view(np.uint8)).view(getattr(torch, name)).float()
            y = torch.softmax(t, dim=-1).to(getattr(torch, name))
            return y.view(torch.uint8).numpy().view(x.dtype)
        return torch.softmax(torch.from_numpy(x), dim=-1).numpy()

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
    module_name, attr, kwargs = parse_spec(name)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # last: a local mod.py is found, an installed package wins
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
    return Peer(name, functools.partial(fn, **kwargs) if kwargs else fn)


def parse_spec(name: str) -> tuple[str, str, dict]:
    """``'mod.sub:func(axis=-1)'`` -> ``('mod.sub', 'func', {'axis': -1})``. Keyword arguments
    must be Python literals; ValueError names what is wrong."""
    if ":" not in name:
        raise ValueError(
            f"unknown peer {name!r}: choose from {', '.join(BUILTIN_PEERS)} or give module:function"
        )
    module_name, _, call = name.partition(":")
    try:
        tree = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        tree = None
    if isinstance(tree, (ast.Name, ast.Attribute)):
        return module_name, call.strip(), {}
    if (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, (ast.Name, ast.Attribute))
        and not tree.args
        and all(k.arg for k in tree.keywords)
    ):
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords}
        except ValueError:
            raise ValueError(f"{name!r}: keyword values must be literals (numbers, strings, None, True)") from None
        return module_name, ast.unparse(tree.func), kwargs
    raise ValueError(
        f"cannot read {name!r}: write module:function or module:function(key=value, ...), "
        "e.g. 'scipy.special:softmax(axis=-1)'"
    )


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
