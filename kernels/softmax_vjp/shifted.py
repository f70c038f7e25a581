"""softmax backward pass on the shifted softmax's output: ``y = softmax/shifted(x)`` (stored in the
storage format, as a framework keeps it for the backward pass), then :mod:`.backward`:
``z_i = fl(fl(g_i - fl(sum_j fl(g_j y_j))) y_i)``, rounded once to the storage format. Both
steps run in the kernel's compute mode.

Non-finite inputs: a row the forward pass makes NaN (NaN or ``+inf`` in ``x``, a row of only
``-inf``) is NaN; a NaN or infinite ``g_j`` with ``y_j > 0`` makes the row NaN (``inf - inf`` or
``NaN`` in ``c``); a ``-inf`` entry of ``x`` has ``y_j = 0`` and so ``z_j = 0`` (unless ``g`` is
not finite there: ``0 * inf`` is NaN).
"""
from __future__ import annotations

from .backward import vjp_rows

__all__ = ["FORWARD", "ROWS"]

#: The softmax algorithm whose stored output the backward pass takes.
FORWARD = "shifted"
#: The backward rows function.
ROWS = vjp_rows
