"""What every bound derivation shares: the kernels' constants and the enclosure of the row sum.

Notation (as in every derivation here): ``u`` unit roundoff of the compute precision, ``sub`` its
smallest subnormal; ``u_s``, ``sub_s`` those of the storage format when the compute precision is
wider (else 0: the last result is already a storage value); ``E`` the exp error in ULPs of the
compute format (:data:`EXP_ULPS`), ``E_L`` that of its ``log`` and ``log1p`` (:data:`LOG_ULPS`);
``D = arith.sum_depth(n, compute)``, the largest number of rounded additions on the path of any
one term into the row sum, for the summation order the kernel really runs.

The sum lemma (:func:`sum_enclosure`)
-------------------------------------
``m = max_j x_j`` (shifted algorithms; exact, a float max), ``d_j = x_j - m`` (naive: ``x_j``),
``e_j = exp(d_j)``, ``S = sum_j e_j`` (exact values).

1. shift: ``fl(x_j - m) = d_j (1 + alpha_j)``, ``|alpha_j| <= u`` (a difference that lands in the
   subnormal range is exact; naive: ``alpha_j = 0``).
2. exp: ``|ê_j - e_j| <= t_j := e_j rho_j + E sub``, ``rho_j = exp(|d_j| u)(1 + 2 E u) - 1``
   (naive: ``2 E u``), from ``ê_j = exp(d_j (1 + alpha_j))(1 + eta_j) + zeta_j`` with
   ``|eta_j| <= 2 E u`` (an ULP of a normal result is at most ``2u`` relative) and
   ``|zeta_j| <= E sub``. ``T = sum_j t_j``, ``tau = T / S``.
3. sum: every rounded addition of non-negative floats is ``(a + b)(1 + delta)``, ``|delta| <= u``
   (exact when the result is subnormal), so, **rigorously** (product form, no first-order
   truncation): ``(S - T)(1 - u)^D <= ŝ <= (S + T)(1 + u)^D``.
4. leaving the maximum's term out (Blanchard, Higham & Higham's Alg. 4.1): term ``k`` (``d_k =
   0``, ``e_k = 1`` exactly: every kernel exp returns 1 at 0, tests/kernels/test_exp.py) is
   counted as 0 in the same order, so 3. holds for ``S' = S - 1``, ``T' = T - t_k`` with the same
   ``D``; the sum used is ``1 + ŝ'`` (exact here; the kernels round it once more, or take
   ``log1p(ŝ')``, which is ``log(1 + ŝ')`` exactly).

So ``log(ŝ_tot / S)`` lies in ``[L_lo, L_hi]`` (``ŝ_tot = ŝ``, or ``1 + ŝ'``):

- plain: ``L_lo = log1p(-tau) + D log1p(-u)``, ``L_hi = log1p(tau) + D log1p(u)``;
- left out: ``L = log1p(w a)`` with ``w = S'/S`` and ``a_lo = expm1(log1p(-tau') + D log1p(-u))``
  (``-1`` when ``tau' >= 1``: the computed sum is still ``>= 0``), ``a_hi = expm1(log1p(tau') +
  D log1p(u))``, ``tau' = T'/S'``: the others' relative error scaled by their share ``w < 1``.

5. the online and two-pass algorithms (``kernels/softmax/streaming.py``): blocks of ``BLOCK`` terms
   summed from 0, their sums combined in block order, one rounded addition per block: the depth
   of 3. Each combination *moves* one of the two sums to the larger shift, and a term meets at most
   ``nb - 1`` moves (``nb`` blocks: the first block is never moved when combined, and a term of
   block ``b`` meets at most one move at its own combination and one per later block).
   Online: a move is ``fl(S exp(fl(h - h')))``; the differences along a term's path telescope with
   the term's own, ``|x_j - m_b| + (M - m_b) = |d_j|``, so 1. and 2. hold with the final ``M`` as
   they are; the move's exp (``1 +- 2Eu <= (1 +- u)^ceil(2E)``, ``E sub`` absolute) and product
   (``u``, ``sub/2``) add ``ceil(2E) + 1`` to the depth per move and, in absolute terms,
   ``(S_max E + 1/2) sub`` per move, ``S_max = n (1 + u)^D`` (a sum moved is at most that, and
   the final sum is ``>= 1``). Two-pass: terms ``y_j 2**(k_j - K)`` carry exp's error alone
   (``rho_j = 2Eu``, no rounded shift; ``E`` from :data:`EXP_PARTS_ULPS`) and a move by a power of
   two is exact but for ``sub/2`` when subnormal; its sums are in units of ``2**K``, where the
   exact sum is ``S exp(m - K ln 2) >= S / 1.4144`` (``|m - K ln 2| <= 0.3467``), so its absolute
   parts count :data:`TWO_PASS_UNIT` = 1.4144 times.

Everything is computed relative to ``S`` in log1p/expm1 form, never ``S - T`` in float64 (which
would lose ``tau`` when it is a few float64 ulps).

Evaluation in float64: ``d_j``, ``e_j``, ``S`` carry relative errors below ``1e-12`` wherever they
matter, so the bounds are within a relative ``1e-11`` of the exact ones; they are multiplied by
:data:`EVAL_SAFETY`, and :data:`EVAL_ABS` (4 float64 subnormals) covers values float64 itself
underflows.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from softmax_bench.formats import FORMATS, Format, format_of, ulp

__all__ = ["EXP_ULPS", "LOG_ULPS", "EXP_PARTS_ULPS", "TWO_PASS_UNIT", "STREAMING", "online_constants", "EVAL_SAFETY", "EVAL_ABS", "EVAL_REL", "KernelConstants",
           "kernel_constants", "RowBounds", "RowSums", "row_bounds", "sum_enclosure", "shared_sums", "sum_depth"]

#: exp error in ULPs of the compute format, as stated in ``kernels/exp.py`` and checked by
#: ``tests/kernels/test_exp.py``:
#: - float16: ``exp16`` is correctly rounded for all 65,536 inputs (exhaustive): 0.5 ULP.
#: - bfloat16: ``expbf16`` likewise, all 65,536 inputs (exhaustive): 0.5 ULP.
#: - float32: ``exp32`` max 0.7644 ULP over all 2**32 inputs (exhaustive, at x = -87.71553, a
#:   subnormal result; 0.6546 over normal results); we use 0.77 (the figure rounded up).
#: - float64: ``exp64`` max 0.7474 ULP on 10**6 sampled inputs (not exhaustive); we use 1.0,
#:   keeping 0.25 ULP of margin for the unsampled inputs (an assumption, not a proof: the
#:   algorithm's own error analysis in kernels/exp.py gives 1/2 ULP for the final addition plus
#:   about 0.15 for the small term, plus one more rounding for subnormal results).
EXP_ULPS = {"float16": 0.5, "bfloat16": 0.5, "float32": 0.77, "float64": 1.0}

#: log and log1p error in ULPs of the compute format (``kernels/arith.py``: ``logc``, ``log1pc``).
#: float16, bfloat16 and float32 evaluate them in float64 (log: ``kernels/log.py``, within 2**-49
#: relative of libm's on every float32 input, tests/kernels/test_log.py; log1p: libm, within 1
#: float64 ULP, a relative 2**-52) and round to the compute format, through float32 for the 16-bit
#: formats: 1/2 ULP for the last rounding, at most 2**-13 ULP for the float32 one before it and
#: 2**-25 for the float64 error: 0.5002 covers all three. float64: glibc's ``log`` and ``log1p``,
#: whose documented error bounds on x86-64 are 1 ULP (glibc manual, "Known Maximum Errors in Math
#: Functions"); sampled in tests/kernels/test_lse.py against mpmath (an assumption for the
#: unsampled inputs, like exp64).
LOG_ULPS = {"float16": 0.5002, "bfloat16": 0.5002, "float32": 0.5002, "float64": 1.0}

#: The two-pass softmax's exp error ``y 2**(k - K)`` in ULPs (``kernels/softmax/streaming.py``):
#: float32 ``exp_parts32``, 0.6610 ULP max over every float32 with ``|x| <= 1024`` (exhaustive,
#: tests/kernels/test_exp.py), so exp32's 0.77 holds; float64 ``exp_parts64``, sampled against
#: mpmath, exp64's 1.0 (the same assumption); 16-bit compute evaluates the term in float64 (one
#: float64 ULP, 2**-41 of a 16-bit ULP) and rounds it once: 0.5002 as :data:`LOG_ULPS`.
EXP_PARTS_ULPS = {"float16": 0.5002, "bfloat16": 0.5002, "float32": 0.77, "float64": 1.0}
#: The two-pass sums' unit against ``S``: ``1 / exp(-0.3467)`` rounded up (module docstring, 5.).
TWO_PASS_UNIT = 1.4144

#: Relative safety factor on the bounds' float64 evaluation.
EVAL_SAFETY = 1.0 + 2.0**-20
#: Absolute slack for float64 values that underflow during the evaluation (4 float64 subnormals).
EVAL_ABS = 4 * 2.0**-1074
#: Relative slack for magnitudes evaluated in float64 (log S, m + log S, x_i - m): 8 float64 ulps
#: (they enter the logarithmic bounds multiplied by u, see bounds/logsumexp.py).
EVAL_REL = 2.0**-50


@dataclass(frozen=True)
class KernelConstants:
    u: float
    sub: float
    u_s: float
    sub_s: float
    E: float
    E_L: float
    compute: Format
    storage: Format
    shifted: bool
    leave_out: bool
    streaming: str | None  # "online" or "two_pass" (module docstring, 5.), else None


#: The algorithms a bound is derived for: name -> (shifted, maximum's term left out), the options
#: of their sum (the division-free softmax takes the logsumexp of the same options).
ALGORITHMS = {"naive": (False, False), "shifted": (True, False), "shifted_log1p": (True, True),
              "division_free": (False, False), "division_free_log1p": (True, True),
              "online": (True, False), "two_pass": (True, False)}
#: The algorithms that sum in blocks combined by moves (module docstring, 5.).
STREAMING = ("online", "two_pass")


def kernel_constants(spec) -> KernelConstants:
    """The constants of the derivations for a registered kernel."""
    if spec.algorithm not in ALGORITHMS:
        raise ValueError(f"no error bound derived for algorithm {spec.algorithm!r}")
    fc = FORMATS[spec.compute]
    fs = format_of(spec.dtype)
    wider = fc.precision != fs.precision
    shifted, leave_out = ALGORITHMS[spec.algorithm]
    return KernelConstants(
        u=fc.unit_roundoff,
        sub=fc.smallest_subnormal,
        u_s=fs.unit_roundoff if wider else 0.0,
        sub_s=fs.smallest_subnormal if wider else 0.0,
        E=(EXP_PARTS_ULPS if spec.algorithm == "two_pass" else EXP_ULPS)[spec.compute],
        E_L=LOG_ULPS[spec.compute],
        compute=fc,
        storage=fs,
        shifted=shifted,
        leave_out=leave_out,
        streaming=spec.algorithm if spec.algorithm in STREAMING else None,
    )


def online_constants(k: KernelConstants) -> KernelConstants:
    """The constants of the online algorithm for a two-pass kernel's rows outside its domain
    (they are computed by the online algorithm)."""
    from dataclasses import replace

    return replace(k, streaming="online", E=EXP_ULPS[k.compute.name])


def row_bounds(k: KernelConstants, abs_bound, y, ref, special, overflow, underflow) -> RowBounds:
    """The :class:`RowBounds` of per-element absolute bounds ``abs_bound`` on exact values ``y``
    (rows x outputs), with the domain: ``special``, ``overflow``, ``underflow`` per row (in that
    order of precedence). ``ref`` (or, without it, ``y`` just below itself: ``RN(y)`` never has a
    smaller ULP) gives the ULP unit; a zero absolute bound (an exact output) is 1/2 ULP."""
    rows, cols = np.shape(abs_bound)
    in_domain = ~(special | overflow | underflow)
    reason = np.full(rows, "", dtype=object)
    reason[special] = "nonfinite_input"
    reason[overflow & ~special] = "overflow"
    reason[underflow & ~special & ~overflow] = "underflow"
    every = in_domain.all()  # (as usual: then nothing to mask)
    with np.errstate(all="ignore"):
        if not every:
            abs_bound = np.where(in_domain[:, None], abs_bound, np.inf)
        if ref is not None:
            r = np.asarray(ref, dtype=np.float64).reshape(rows, cols)
        else:
            r = np.where(np.isfinite(y), y * (1 - 2.0**-40), 0.0)
        ulp_bound = np.where(abs_bound == 0, 0.0, abs_bound / ulp(r, k.storage)) + 0.5
        if not every:
            ulp_bound = np.where(in_domain[:, None], ulp_bound, np.inf)
    if not every:
        y = np.where(in_domain[:, None], y, np.nan)
    return RowBounds(abs_bound, ulp_bound, in_domain, reason, y)


def sum_depth(n: int, compute: str) -> int:
    from softmax_bench.kernels.arith import sum_depth as depth

    return depth(n, compute)


@dataclass
class RowBounds:
    """Per-element and per-row results of a bound (2-D: rows x n; n = 1 for logsumexp).

    ``abs_bound``: bound on ``|ŷ_i - y_i|`` (exact value), inf outside the domain.
    ``ulp_bound``: bound on ``ulp_error(ŷ_i, r_i)`` against the correctly rounded reference
    (``abs_bound / ulp(r_i) + 1/2``), inf outside the domain.
    ``in_domain``: per row; ``reason``: per row, "" in the domain, else a key of ``REASONS``.
    ``y``: the exact value evaluated in float64 (NaN outside the domain)."""

    abs_bound: np.ndarray
    ulp_bound: np.ndarray
    in_domain: np.ndarray
    reason: np.ndarray
    y: np.ndarray


@dataclass
class RowSums:
    """:func:`sum_enclosure`'s results (rows x n arrays, or per row)."""

    special: np.ndarray  # per row: NaN or +inf in the row, or no finite entry
    m: np.ndarray  # per row (rows x 1): the shift (0 for naive)
    d: np.ndarray  # x - m (float64; -inf for -inf entries)
    e: np.ndarray  # exp(d)
    rho: np.ndarray  # the relative exp-and-shift error factor of each term
    S: np.ndarray  # per row: sum of e (float64)
    log_S: np.ndarray  # per row: log(S)
    L_lo: np.ndarray  # per row: lower bound of log(ŝ_tot / S)
    L_hi: np.ndarray  # per row: upper bound
    s_hi: np.ndarray  # per row: upper bound of the computed sum (overflow test)
    tau: np.ndarray  # per row: T/S (T'/S' when left out)


#: While :func:`shared_sums` is active in a thread: ``.sums``, its input array and its
#: :class:`RowSums` by constants (per thread: a scale-out worker may run cases in threads).
_shared = threading.local()


@contextmanager
def shared_sums(x: np.ndarray):
    """Within: :func:`sum_enclosure` of this very array ``x`` is evaluated once per kernel
    constants and handed, read-only, to every caller. The audit bounds all kernels of a case on
    one input, and kernels of the same algorithm and compute format (e.g. shifted softmax,
    log_softmax and logsumexp) have the same sums: about 10 evaluations per case where there
    were 28. ``x`` is read-only meanwhile (the sums are of its values)."""
    if getattr(_shared, "sums", None) is not None:  # nested: the outer one's array only
        yield
        return
    writeable = x.flags.writeable
    x.flags.writeable = False
    _shared.sums = (x, {})
    try:
        yield
    finally:
        _shared.sums = None
        x.flags.writeable = writeable


def sum_enclosure(k: KernelConstants, x, n: int) -> RowSums:
    """The module docstring's sum lemma for every row of ``x`` (any shape, rows along the last
    axis), evaluated in float64 (once per ``k`` on the array of :func:`shared_sums`)."""
    shared = getattr(_shared, "sums", None)
    if shared is None or x is not shared[0]:
        return _sum_enclosure(k, x, n)
    found = shared[1].get((k, n))
    if found is None:
        found = shared[1][k, n] = _sum_enclosure(k, x, n)
        for a in vars(found).values():
            a.flags.writeable = False
    return found


def _sum_enclosure(k: KernelConstants, x, n: int) -> RowSums:
    from softmax_bench.kernels.arith import BLOCK

    D = sum_depth(n, k.compute.name)
    moves = -(-n // BLOCK) - 1 if k.streaming else 0
    if k.streaming == "online":
        D += moves * (math.ceil(2 * k.E) + 1)
    unit = TWO_PASS_UNIT if k.streaming == "two_pass" else 1.0
    x64 = np.asarray(x).astype(np.float64).reshape(-1, n)
    with np.errstate(all="ignore"):
        finite = np.isfinite(x64)
        special = np.isnan(x64).any(axis=1) | np.isposinf(x64).any(axis=1) | ~finite.any(axis=1)
        xs = np.where(special[:, None], 0.0, x64)  # keep the arithmetic quiet on special rows
        if k.shifted:
            m = xs.max(axis=1, keepdims=True)
            d = xs - m  # -inf for -inf entries; rel. error <= 2**-53 for float64 storage
            rounded = k.streaming != "two_pass"  # two-pass rounds no difference
            rho = np.expm1(np.abs(d) * (k.u if rounded else 0.0) + math.log1p(2 * k.E * k.u))
        else:
            m = np.zeros((xs.shape[0], 1))
            d = xs
            rho = np.full_like(d, math.expm1(math.log1p(2 * k.E * k.u)))
        e = np.exp(d)
        erho = np.where(e > 0, e * rho, 0.0)
        S = e.sum(axis=1)
        per_term = k.E * k.sub * unit + EVAL_ABS
        moved = moves * (n * (1 + k.u) ** D * k.E * (k.streaming == "online") + 0.5) * k.sub * unit
        if k.shifted:
            first = np.argmax(d == 0, axis=1)  # the kernel's k: the first maximum
            others = np.ones_like(d, dtype=bool)
            others[np.arange(d.shape[0]), first] = False
            S1 = np.where(others, e, 0.0).sum(axis=1)  # S' = S - 1, summed without the 1
            log_S = np.log1p(S1)  # log S to full relative accuracy, even when S' < 2**-53
        else:
            log_S = np.log(np.where(S > 0, S, 1.0))
        if k.leave_out:
            T1 = np.where(others, erho, 0.0).sum(axis=1) + (n - 1) * per_term
            tau = np.where(S1 > 0, T1 / np.where(S1 > 0, S1, 1.0), np.where(T1 > 0, np.inf, 0.0))
            a_lo = np.where(tau < 1, np.expm1(np.log1p(-np.minimum(tau, 1.0)) + D * math.log1p(-k.u)), -1.0)
            a_hi = np.expm1(np.log1p(tau) + D * math.log1p(k.u))
            # w a with w = S'/(1 + S'); when S' = 0 but T' > 0 (only underflowed terms) the
            # computed sum is at most T'(1 + u)^D: use that absolute form instead
            w = S1 / (1.0 + S1)
            hi_abs = T1 * (1 + k.u) ** D
            L_hi = np.where(S1 > 0, np.log1p(w * a_hi), np.log1p(hi_abs))
            L_lo = np.where(S1 > 0, np.log1p(w * a_lo), 0.0)
            s_hi = 1.0 + (S1 + T1) * (1 + k.u) ** D
        else:
            Sd = np.where(S > 0, S, 1.0)
            tau = erho.sum(axis=1) / Sd + (n * per_term + moved) / Sd
            L_lo = np.log1p(-np.where(tau < 1, tau, 0.0)) + D * math.log1p(-k.u)
            L_lo = np.where(tau < 1, L_lo, -np.inf)
            L_hi = np.log1p(tau) + D * math.log1p(k.u)
            s_hi = S * np.exp(L_hi)
    return RowSums(special, m, d, e, rho, S, log_S, L_lo, L_hi, s_hi, tau)
