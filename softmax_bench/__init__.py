"""softmax-bench: verified numerics and benchmarks for the softmax function.

Kept light on purpose: ``reference`` and ``kernels`` import ``softmax_bench.formats``, so this
module must not import the harness eagerly (no cycles, fast start-up).
"""
__version__ = "0.1.0"
