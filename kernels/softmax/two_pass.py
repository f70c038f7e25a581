"""Two-pass softmax (Dukhan & Ablavatski 2020, "The two-pass softmax algorithm", arXiv
2001.04438): ``exp(x_j)`` is held as ``y_j 2**k_j`` (an extended exponent), so the sum needs no
maximum pass and cannot overflow; pass 1 sums, pass 2 writes: 2 reads + 1 write per element.

Operations (:mod:`.streaming`, option ``exponent`` ON): ``exp(x) = y 2**k`` by exp's own
reduction without its clamp (``k = floor(fl(x log2 e + 1/2))``, ``y = exp(x - k ln 2)`` by the
polynomial; ``kernels/exp.py``: :func:`..exp.exp_parts32`, 0.661 ULP max over every float32
``|x| <= 1024``). The row in blocks of 2048 from its start; block ``b``: ``K_b = k(m_b)`` for
its maximum ``m_b`` (the largest ``k_j`` of the block: ``k`` is monotone), terms
``e_j = y_j 2**(k_j - K_b)`` (exact unless subnormal: one rounding), ``S_b`` their sum in the
order of ``arith.block_sum``; pairs combined in block order from ``(-inf, 0)`` as in
:mod:`.online` but moved by ``2**(K - K')`` (exact unless subnormal); then
``y_i = fl(fl(y_i 2**(k_i - K)) / S)``, stored once. In 16-bit compute a term is evaluated in
float64 and rounded once to the 16-bit format (the paper's algorithm is float32; this is its
16-bit arithmetic analogue).

The paper keeps a per-lane exponent and rescales per element; blocks with the block maximum's
exponent give the same sums up to the order of additions (a power-of-two rescale is exact), with
the lane order of every other kernel. The paper computes ``y_i`` with a reciprocal; we divide
(one rounding per output, as every kernel here).

Domain: ``|x| <= 1024`` for float32 compute (where the reduction is proven, see exp.py), ``2**30``
for float64, 65536 for 16-bit compute; a row with any other entry (larger, ``+-inf``, NaN) is
computed by :mod:`.online` from its start, and so gets online's special values.
"""
from __future__ import annotations

from ..arith import ON
from .streaming import streaming_rows, streaming_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "OPTIONS"]

#: The rows functions (row groups; few long rows, each split across threads) and its option
#: (``exponent``: :mod:`.streaming`).
ROWS, SPLIT_ROWS = streaming_rows, streaming_split_rows
OPTIONS = (ON,)
