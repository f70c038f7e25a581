"""Shared helpers for the kernel tests: kernel parametrisation and the per-element ULP budget.

The ULP budget (:func:`ulp_budget`) is the a-priori error bound of :mod:`softmax_bench.bounds`
(the one source of truth: the audit's ``within_bound`` uses the same function), derived there
from the operations and the summation order the kernels really run (kernels/arith.py,
kernels/passes.py), with the exp error figures of :data:`softmax_bench.bounds.EXP_ULPS`; never a
tolerance fitted to observed errors. See that module's docstring for the derivation.
"""
from __future__ import annotations

import numpy as np
import pytest

from softmax_bench.bounds import EXP_ULPS, element_bounds  # noqa: F401  (EXP_ULPS re-exported)
from softmax_bench.kernels import KERNELS


def kernel_id(spec):
    return spec.id


@pytest.fixture(params=KERNELS, ids=kernel_id)
def kernel(request):
    """Every registered kernel."""
    return request.param


def ulp_budget(spec, row: np.ndarray, ref_row: np.ndarray) -> np.ndarray:
    """Per-element bound on ``ulp_error(kernel(row), reference(row))`` for a 1-D ``row``
    (:func:`softmax_bench.bounds.element_bounds`); ``inf`` where the row is outside the bound's
    domain (overflow, underflow, non-finite input)."""
    return element_bounds(spec, row, ref_row).ulp_bound[0]


@pytest.fixture(scope="session")
def budget():
    """:func:`ulp_budget` (a pure function; session scope keeps hypothesis content)."""
    return ulp_budget
