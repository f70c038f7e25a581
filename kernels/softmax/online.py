"""Online softmax (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"): one
pass keeps a running maximum ``M`` and a sum ``S`` of ``exp(x_j - M)`` rescaled whenever ``M``
grows, a second pass writes ``y_i = exp(x_i - M) / S``: 2 reads + 1 write per element.

Operations (:mod:`.streaming`, option ``exponent`` None), each rounded in the compute mode: the
row in blocks of 2048 from its start; block ``b``: ``m_b`` its maximum (exact),
``e_j = exp(fl(x_j - m_b))``, ``S_b`` their sum in the order of ``arith.block_sum``; the pairs
combined in block order from ``(-inf, 0)``: a larger ``m_b`` moves the running sum,
``S = fl(fl(S exp(fl(M - m_b))) + S_b)``, ``M = m_b``, else ``S = fl(S + fl(S_b exp(fl(m_b - M))))``;
then ``y_i = fl(exp(fl(x_i - M)) / S)``, stored once. Rows of at most 2048 terms are one block
and give exactly :mod:`.shifted`'s bits; longer rows differ from it by the moves (one rounded
exp and one product per block whose maximum is overtaken), which the bound counts.

This is the blocked form FlashAttention-style kernels run (the paper's per-element update,
``d = d exp(m - m') + exp(x - m')``, costs an extra exp per element); the block maxima come from
the block while it is in L1, so the memory traffic is that of the per-element form.

Non-finite inputs: as :mod:`.shifted` (NaN or ``+inf`` anywhere: a NaN row; ``-inf`` entries
beside a finite maximum: 0; a row of only ``-inf``: NaN).
"""
from __future__ import annotations

from .streaming import streaming_rows, streaming_split_rows

__all__ = ["ROWS", "SPLIT_ROWS", "OPTIONS"]

#: The rows functions (row groups; few long rows, each split across threads) and its option
#: (``exponent``: :mod:`.streaming`).
ROWS, SPLIT_ROWS = streaming_rows, streaming_split_rows
OPTIONS = (None,)
