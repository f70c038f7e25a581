"""The functions of the softmax family the suite audits: the one list of their names.

Each is taken along the last axis of its input; ``logsumexp`` reduces it (one output per row);
``softmax_vjp`` (the backward pass, ``J(x)^T g``) takes a second operand ``g`` of ``x``'s shape.
The reference (:mod:`softmax_bench.reference`) has a function of each name; the kernels
(:mod:`softmax_bench.kernels`) register algorithms per function, peers provide them by name.
"""
from __future__ import annotations

__all__ = ["FUNCTIONS", "ALGORITHMS", "ALL_ALGORITHMS", "REDUCTIONS", "GRADIENTS", "output_shape"]

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "softmax_vjp")
#: The algorithms the kernels implement per function (kernels/<function>/<algorithm>.py).
ALGORITHMS = {
    "softmax": ("naive", "shifted", "shifted_log1p", "division_free", "division_free_log1p",
                "online", "two_pass"),
    "log_softmax": ("naive", "shifted", "shifted_log1p"),
    "logsumexp": ("naive", "shifted", "shifted_log1p"),
    "softmax_vjp": ("shifted",),  # the forward algorithm whose output the backward pass takes
}
#: Every algorithm name, in order of first appearance.
ALL_ALGORITHMS = tuple(dict.fromkeys(a for algs in ALGORITHMS.values() for a in algs))
#: Functions with one output per row (the result drops the axis).
REDUCTIONS = frozenset({"logsumexp"})
#: Functions of ``(x, g)``: the backward pass, with a cotangent ``g`` of ``x``'s shape and dtype.
GRADIENTS = frozenset({"softmax_vjp"})


def output_shape(function: str, shape: tuple) -> tuple:
    """The shape of ``function``'s result for an input of ``shape`` (along the last axis)."""
    return tuple(shape[:-1]) if function in REDUCTIONS else tuple(shape)
