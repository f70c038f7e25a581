"""The mpmath ground truth: correctly rounded softmax, log-softmax, log-sum-exp, Jacobian, VJP,
their exact values as double-doubles, and the condition number of softmax. Knows nothing of the kernels or the harness."""
from .conditioning import condition_number
from .correctly_rounded import (
    MAX_PRECISION,
    ReferencePrecisionError,
    exact,
    jacobian,
    log_softmax,
    logsumexp,
    softmax,
    vjp,
    warm,
)

#: ``vjp`` under its name on the suite's function axis (softmax_bench.functions: softmax_vjp).
softmax_vjp = vjp

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "jacobian",
    "vjp",
    "softmax_vjp",
    "exact",
    "warm",
    "condition_number",
    "ReferencePrecisionError",
    "MAX_PRECISION",
]
