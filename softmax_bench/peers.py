"""Adapters that let the audit and the benchmarks treat any softmax-family function like one of
our kernels.

A peer is a named set of functions ``f(x) -> y``, one per function of the family it provides
(:data:`FUNCTIONS`: ``softmax``, ``log_softmax``, ``logsumexp``; ``softmax_vjp`` is ``f(x, g)``,
the backward pass ``J(x)^T g``), each along the last axis of a numpy array (logsumexp drops that
axis). Built-in peers: ``numpy`` (composed, max-shifted; the backward pass as frameworks write
it), ``scipy`` (scipy.special: no backward pass), ``torch`` (on the CPU; the backward pass by
autograd) and ``jax`` (``jax.vjp``); each is available only when its package imports.

Any other function is named ``module:function``, optionally with keyword arguments written as a
call with literal values: ``scipy.special:softmax(axis=-1)`` calls ``softmax(x, axis=-1)``.
(scipy's default ``axis=None`` normalises the whole array; the audit's contract probe refuses it.)
It is a softmax unless prefixed by the function it computes: ``log_softmax=mymod:f``,
``logsumexp=scipy.special:logsumexp(axis=-1)``. The working folder is searched last for
``module``, so a ``mod.py`` beside you is found without shadowing installed packages.
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

from softmax_bench.functions import FUNCTIONS, output_shape

__all__ = ["Peer", "PeerUnavailable", "BUILTIN_PEERS", "FUNCTIONS", "get_peer", "parse_spec",
           "peer_functions", "split_function", "available_peers"]


class PeerUnavailable(RuntimeError):
    """The peer's package is not installed (or the named function does not exist)."""




@dataclass(frozen=True)
class Peer:
    name: str
    fns: dict  # function name -> f(x) -> y

    @property
    def fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """The softmax (or the one function a user peer provides)."""
        return self.fns.get("softmax") or next(iter(self.fns.values()))

    def __call__(self, x: np.ndarray, function: str = "softmax", *extra) -> np.ndarray:
        y = np.asarray(self.fns[function](x, *extra))
        if y.shape != output_shape(function, x.shape):
            raise ValueError(f"peer {self.name!r} returned shape {y.shape} for input {x.shape}")
        return y


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    """The composed numpy form every tutorial shows: ``e = exp(x - max); e / sum(e)``."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_log_softmax(x: np.ndarray) -> np.ndarray:
    """``(x - max) - log(sum(exp(x - max)))``, composed in numpy."""
    d = x - x.max(axis=-1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=-1, keepdims=True))


def numpy_logsumexp(x: np.ndarray) -> np.ndarray:
    """``max + log(sum(exp(x - max)))``, composed in numpy."""
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def numpy_softmax_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The backward pass composed in numpy on the composed forward: ``y * (g - sum(g * y))``."""
    y = numpy_softmax(x)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def _numpy():
    return {"softmax": numpy_softmax, "log_softmax": numpy_log_softmax, "logsumexp": numpy_logsumexp,
            "softmax_vjp": numpy_softmax_vjp}


def _scipy():
    from scipy import special

    return {
        "softmax": lambda x: special.softmax(x, axis=-1),
        "log_softmax": lambda x: special.log_softmax(x, axis=-1),
        "logsumexp": lambda x: special.logsumexp(x, axis=-1),
    }


def _torch():
    """torch on the CPU. bfloat16 crosses over as its bits (torch.from_numpy does not take
    ml_dtypes arrays); float8, for which torch has no softmax, is computed in float32 and cast
    with torch's own (saturating) cast, as a float8 attention kernel stores its probabilities."""
    import torch

    from softmax_bench.formats import format_of

    def tensor(x: np.ndarray):
        x = np.ascontiguousarray(x)
        name = format_of(x.dtype).name
        if name == "bfloat16":
            return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
        if name.startswith("float8"):
            return torch.from_numpy(x.view(np.uint8)).view(getattr(torch, name)).float()
        return torch.from_numpy(x)

    def array(t, dtype) -> np.ndarray:
        name = format_of(dtype).name
        if name == "bfloat16":
            return t.detach().contiguous().view(torch.int16).numpy().view(dtype)
        if name.startswith("float8"):
            return t.detach().to(getattr(torch, name)).contiguous().view(torch.uint8).numpy().view(dtype)
        return t.detach().numpy()

    def wrap(op):
        return lambda x: array(op(tensor(x)), x.dtype)

    def softmax_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """autograd: the forward softmax, then ``backward`` with the given gradient ``g``."""
        t = tensor(x).clone().requires_grad_(True)
        torch.softmax(t, dim=-1).backward(tensor(g).to(t.dtype))
        return array(t.grad, x.dtype)

    return {
        "softmax": wrap(lambda t: torch.softmax(t, dim=-1)),
        "log_softmax": wrap(lambda t: torch.log_softmax(t, dim=-1)),
        "logsumexp": wrap(lambda t: torch.logsumexp(t, dim=-1)),
        "softmax_vjp": softmax_vjp,
    }


def _jax():
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    jax.config.update("jax_enable_x64", True)  # keep float64 inputs in float64
    def softmax_vjp(x, g):
        _, pullback = jax.vjp(lambda t: jax.nn.softmax(t, axis=-1), jnp.asarray(x))
        return np.asarray(pullback(jnp.asarray(g))[0])

    return {
        "softmax": lambda x: np.asarray(jax.nn.softmax(jnp.asarray(x), axis=-1)),
        "log_softmax": lambda x: np.asarray(jax.nn.log_softmax(jnp.asarray(x), axis=-1)),
        "logsumexp": lambda x: np.asarray(logsumexp(jnp.asarray(x), axis=-1)),
        "softmax_vjp": softmax_vjp,
    }


BUILTIN_PEERS: dict[str, Callable[[], dict]] = {
    "numpy": _numpy,
    "scipy": _scipy,
    "torch": _torch,
    "jax": _jax,
}


#: The functions each built-in peer provides (scipy.special has no backward pass).
BUILTIN_FUNCTIONS = {"numpy": FUNCTIONS, "scipy": ("softmax", "log_softmax", "logsumexp"),
                     "torch": FUNCTIONS, "jax": FUNCTIONS}


def peer_functions(name: str) -> tuple[str, ...]:
    """The functions peer ``name`` provides, read from the name alone (nothing is imported):
    :data:`BUILTIN_FUNCTIONS` for a built-in peer, else the ``FUNCTION=`` prefix (default
    softmax)."""
    if name in BUILTIN_PEERS:
        return BUILTIN_FUNCTIONS[name]
    return (split_function(name)[0],)


def split_function(name: str) -> tuple[str, str]:
    """``'log_softmax=mod:f'`` -> ``('log_softmax', 'mod:f')``; no prefix: softmax. ValueError
    for an unknown function."""
    head, sep, rest = name.partition("=")
    if sep and ":" not in head and "(" not in head:
        if head not in FUNCTIONS:
            raise ValueError(f"{name!r}: unknown function {head!r}; choose from {', '.join(FUNCTIONS)}")
        return head, rest
    return "softmax", name


def get_peer(name: str) -> Peer:
    """A built-in peer by name, or ``[FUNCTION=]module:function``. Raises PeerUnavailable with
    the reason."""
    if name in BUILTIN_PEERS:
        try:
            return Peer(name, BUILTIN_PEERS[name]())
        except ImportError as err:
            raise PeerUnavailable(f"peer {name!r} needs a package that is not installed: {err}") from err
    function, spec = split_function(name)
    module_name, attr, kwargs = parse_spec(spec)
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
    return Peer(name, {function: functools.partial(fn, **kwargs) if kwargs else fn})


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
