"""Exhaustive audits: every row of two values of a 16-bit (or 8-bit) format, and every row of three
in a window, through every implementation, against the correctly rounded reference.

A *sweep* is (dtype, function, domain). Its implementations: our kernels of that storage format
(every algorithm and compute mode of the function) and the built-in peers that take large batches
(numpy, torch, jax, each where installed); ``implementations=`` picks some.

Domains
-------
- ``pairs``: every row ``(a, b)`` of two bit patterns of the format, finite and special (both
  infinities, every NaN payload, both zeros): ``2**32`` rows for float16 and bfloat16, 65,536 for
  float8.
- ``triples``: every row ``(a, b, c)`` with each entry among ``count`` consecutive bit patterns
  from ``start`` (``window=(start, count)``): ``count**3`` rows.

The bit patterns are split into :data:`BLOCKS` blocks of consecutive patterns (so the sign bit is the
top bit of a block's index). A chunk of pairs is an orbit of block pairs ``(I, J)`` under the
symmetries below: 1, 2 or 4 blocks of rows (``2**20`` rows each in a 16-bit format; 1,056 chunks).
A chunk of triples is a block of the first entry's window with every second and third entry.

Symmetries (of the reference only)
----------------------------------
For finite ``a, b`` the exact softmax and log-softmax of ``(a, b)`` depend on ``b - a`` alone
(``y_0 = 1 / (1 + e^(b - a))``, ``log y_0 = -log1p(e^(b - a))``, and ``y_1`` likewise with
``a - b``), so

- S: the row ``(b, a)`` has the outputs of ``(a, b)`` swapped;
- N: the row ``(-b, -a)`` has the outputs of ``(a, b)`` (the same difference).

The reference is computed on a chunk's first block pair and carried to the others by S, N and SN;
rows with an infinite or NaN entry are computed directly in every block (what the reference gives
for them is its definition, not arithmetic). The implementations run on every row: a kernel's
rounding need not respect S or N (the online algorithm's order differs, ``exp(-d)`` is not
``1 / exp(d)`` in floating point). ``tests/softmax_bench/test_exhaustive.py`` checks the carried
reference against the direct one on every float8 pair. One more fact is used: the reference ignores
NaN payloads (a row with a NaN is NaN), so rows phase 1 does not take are computed once per
distinct row with NaNs made one NaN.

What is measured, per output (``c`` the implementation's, ``r`` the correctly rounded reference,
``reference.softmax`` / ``log_softmax``; ``[lo, hi]`` an enclosure of the exact value ``v`` from
``reference.phase1.enclosures``, a few float64 ULPs wide, about ``2**-40`` of a 16-bit ULP; for
rows phase 1 does not take, NaN, +inf and all -inf, ``reference.exact``, exact there):

- correctly rounded: ``c == r`` (both NaN for a NaN; +0 and -0 count as equal, as in
  ``formats.exact_ulp_error``);
- faithful: ``c`` is ``r`` or ``r``'s neighbour on ``v``'s side (the side from the enclosure;
  where the enclosure holds ``r``, from the row's structure, :func:`_structural_side`, or else
  from ``reference.exact``'s double-double);
- error: an upper bound on ``|c - v| / ulp(v)``, the unit of ``formats.exact_ulp_error`` (the
  binade of ``v``), taken at the enclosure's end nearest 0: within about ``2**-40`` of the exact
  error; 0.5 at most where ``c`` is correctly rounded; inf for a NaN or infinite ``c`` where ``r``
  is finite (an overflow is neither faithful nor bounded, even where ``r`` is the largest finite
  number), a number where ``r`` is NaN, another infinity where ``r`` is one. Where the
  enclosure holds ``r`` and ``c`` is not ``r``, the error is taken over the enclosure's part on
  ``v``'s side of ``r`` where the structure tells the side, else it is ``exact_ulp_error`` of
  ``reference.exact`` (and where that rounds to ``r`` itself, the side of ``r`` that ``v`` lies on
  from :func:`_side`). An enclosure across a power of two takes the smaller unit, so there the
  bound can be twice the error: only where ``r`` is that power of two (``c == r``, capped at
  0.5; ``c`` settled as above; or ``c`` beside ``r`` in a row already unfaithful in another
  output, which keeps the whole enclosure).

A row is correctly rounded (faithful) when every output is; its error is its largest. Totals per
implementation (:func:`summarise`): rows, ``correctly_rounded``, ``faithful``, ``max_error``,
``nan_rows`` (a NaN where ``r`` is a number), ``inf_rows`` (infinities that differ: an infinity
where ``r`` is finite or the other infinity, a finite value where ``r`` is infinite),
``zero_rows`` (a zero where ``r`` is not), ``missed_nan_rows`` (a number where ``r`` is NaN: rows
with a NaN or +inf, and e4m3fn outputs past its largest, 448, which has no infinity),
``failed_rows`` (chunks where the implementation raised
or returned a bad array: counted in no class), the five ``worst`` rows of finite error and five
``nonfinite`` examples, each with bits, values, outputs and reference for reproduction.

Running
-------
Chunks are tasks of a ``concurrent.futures`` executor: a local process pool by default (one
process per core, numba and torch on one thread each), or a Dask cluster (``scheduler=ADDRESS``:
``dask.distributed``'s client executor; its workers should run one thread each, ``dask worker
--nthreads 1``, as numba's default threading layer is not thread-safe). The JSON file holds the
totals of the finished chunks and their list, written atomically at most every
:data:`SAVE_INTERVAL_S` and at the end (interrupted or not); ``resume=True`` runs the rest. The
totals are sums, maxima and sorted lists, so the order chunks finish in changes nothing.
"""
from __future__ import annotations

import concurrent.futures
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from softmax_bench import scaleout
from softmax_bench.formats import format_of
from softmax_bench.isolation import describe, guarded_call
from softmax_bench.jit import numba_cache
from softmax_bench.results_io import hold_lock, load_json, provenance, write_json_atomic

__all__ = ["Sweep", "run", "run_chunk", "summarise", "FUNCTIONS", "BLOCKS", "SAVE_INTERVAL_S",
           "DEFAULT_PEERS", "implementation_names", "ExhaustiveError"]

#: The functions swept: the two whose outputs are a row (logsumexp's one value per row is a
#: one-argument function of the difference, swept by its own tools).
FUNCTIONS = ("softmax", "log_softmax")
#: Blocks of bit patterns: 1,024 patterns each in a 16-bit format.
BLOCKS = 64
#: Chunks of triples per window.
TRIPLE_CHUNKS = 16
#: The peers swept where installed (they take 2**22-row batches in milliseconds).
DEFAULT_PEERS = ("numpy", "torch", "jax")
#: The totals are written at most this often, and at the end.
SAVE_INTERVAL_S = 10.0
#: Worst rows and non-finite examples kept per implementation.
KEEP = 5

_, _cached_njit = numba_cache(Path(__file__))  # (its numba functions call only each other)


class ExhaustiveError(ValueError):
    """A sweep that cannot start (bad settings, a results file of other settings)."""


@dataclass(frozen=True)
class Sweep:
    dtype: str
    function: str = "softmax"
    domain: str = "pairs"  # or "triples"
    window: tuple[int, int] | None = None  # triples: (first bit pattern, count)
    implementations: tuple[str, ...] = field(default=())

    @property
    def format(self):
        return format_of(self.dtype)

    @property
    def bits(self) -> int:
        return self.format.dtype.itemsize * 8

    def check(self) -> None:
        fmt = format_of(self.dtype)  # raises for an unknown format
        if fmt.dtype.itemsize > 2:
            raise ExhaustiveError(f"{self.dtype} has 2**{fmt.dtype.itemsize * 8} values: exhaustive "
                                  "sweeps take 8- and 16-bit formats")
        if self.function not in FUNCTIONS:
            raise ExhaustiveError(f"function {self.function!r}: one of {', '.join(FUNCTIONS)}")
        if self.domain == "pairs":
            if self.window is not None:
                raise ExhaustiveError("a window is for triples")
        elif self.domain == "triples":
            if self.window is None:
                raise ExhaustiveError("triples need a window (first bit pattern, count)")
            start, count = self.window
            if not (0 <= start and 1 <= count and start + count <= 2**self.bits):
                raise ExhaustiveError(f"window {start:#x}+{count} outside the {2**self.bits} patterns")
        else:
            raise ExhaustiveError(f"domain {self.domain!r}: 'pairs' or 'triples'")
        if not self.implementations:
            raise ExhaustiveError("no implementations to sweep")
        known = implementation_names(self.dtype, self.function, peers=self.implementations)
        unknown = [name for name in self.implementations if name not in known]
        if unknown:
            raise ExhaustiveError(
                f"no {self.function} {', '.join(map(repr, unknown))} for {self.dtype} (kernel ids: "
                f"softmax-bench list; peers: {', '.join(DEFAULT_PEERS)} where installed)")

    @property
    def rows(self) -> int:
        return 2**(2 * self.bits) if self.domain == "pairs" else self.window[1]**3

    def chunks(self) -> list[int]:
        if self.domain == "triples":
            return list(range(min(TRIPLE_CHUNKS, self.window[1])))
        firsts = {min(_orbit(i, j)) for i in range(BLOCKS) for j in range(BLOCKS)}
        return sorted(i * BLOCKS + j for i, j in firsts)

    def config(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window) if self.window else None
        d["implementations"] = list(self.implementations)
        return d

    @classmethod
    def from_config(cls, config: dict) -> "Sweep":
        """The sweep a results file's ``meta["config"]`` describes."""
        window = config["window"]
        return cls(**{**config, "window": tuple(window) if window else None,
                      "implementations": tuple(config["implementations"])})


def implementation_names(dtype: str, function: str, peers=DEFAULT_PEERS) -> tuple[str, ...]:
    """Our kernels of ``dtype`` for ``function`` (every algorithm and compute mode), then the
    built-in ``peers`` that are installed and provide the function (a user's function is not
    swept: the sweep runs its implementations in its own processes, not isolated as the audit's
    peers are)."""
    from softmax_bench.kernels.registry import list_kernels
    from softmax_bench.peers import BUILTIN_PEERS, PeerUnavailable, get_peer

    names = [s.id for s in list_kernels(dtype=dtype, function=function)]
    for p in peers:
        if p not in BUILTIN_PEERS:  # only built-ins: the sweep runs them in its own processes
            continue
        try:
            if function in get_peer(p).fns:
                names.append(p)
        except PeerUnavailable:
            pass
    return tuple(names)


# --- the domain ------------------------------------------------------------------------------

def _orbit(i: int, j: int) -> dict:
    """Block pair -> (transposed, swapped) relative to ``(i, j)``, for the pairs S and N reach
    (module docstring): ``(j, i)`` by S, ``(j', i')`` by N and ``(i', j')`` by SN, ``'`` flipping
    the sign bit."""
    h = BLOCKS // 2
    orbit = {}
    for pair, how in (((i, j), (False, False)), ((j, i), (True, True)),
                      ((j ^ h, i ^ h), (True, False)), ((i ^ h, j ^ h), (False, True))):
        orbit.setdefault(pair, how)
    return orbit


def _grid(*entries) -> np.ndarray:
    """Every row of one value from each of ``entries``, the first entry slowest."""
    return np.stack(np.meshgrid(*entries, indexing="ij"), axis=-1).reshape(-1, len(entries))


def _block(values, i):
    size = values.size // BLOCKS
    return values[i * size:(i + 1) * size]


def chunk_rows(sweep: Sweep, chunk: int) -> np.ndarray:
    """The rows of ``chunk``, in the format."""
    values = sweep.format.all_values()
    if sweep.domain == "triples":
        start, count = sweep.window
        window = values[start:start + count]
        first = np.array_split(window, min(TRIPLE_CHUNKS, count))[chunk]
        return _grid(first, window, window)
    i, j = divmod(chunk, BLOCKS)
    return np.concatenate([_grid(_block(values, a), _block(values, b)) for a, b in _orbit(i, j)])


# --- the reference ---------------------------------------------------------------------------

def _reference_direct(function: str, rows: np.ndarray):
    """``(r, lo, hi)``, float64 arrays of ``rows``' shape: the correctly rounded outputs and an
    enclosure of the exact ones (module docstring)."""
    from softmax_bench import reference
    from softmax_bench.reference import phase1

    x = rows.astype(np.float64)
    lo, hi, taken = phase1.enclosures(function, x)
    r = np.empty_like(x)
    correctly_rounded = getattr(reference, function)
    if taken.any():
        r[taken] = correctly_rounded(rows[taken]).astype(np.float64)
    rest = np.flatnonzero(~taken)
    if rest.size:  # NaN, +inf, all -inf: once per distinct row, NaNs made one NaN
        canonical = np.where(np.isnan(x[rest]), np.nan, x[rest])
        distinct, inverse = np.unique(canonical.view(np.uint64), axis=0, return_inverse=True)
        distinct = distinct.view(np.float64).astype(rows.dtype)  # values of the format: exact
        inverse = inverse.reshape(-1)
        exact_hi, _ = reference.exact(function, distinct)
        r[rest] = correctly_rounded(distinct).astype(np.float64)[inverse]
        lo[rest] = hi[rest] = exact_hi[inverse]
    return r, lo, hi


def chunk_reference(sweep: Sweep, chunk: int, rows: np.ndarray | None = None):
    """``(r, lo, hi)`` of ``chunk_rows(sweep, chunk)``: for pairs computed on the chunk's first
    block pair and carried to the others by the symmetries (module docstring)."""
    rows = chunk_rows(sweep, chunk) if rows is None else rows
    if sweep.domain == "triples":
        return _reference_direct(sweep.function, rows)
    orbit = _orbit(*divmod(chunk, BLOCKS))
    size = sweep.format.all_values().size // BLOCKS
    count = size * size
    first = _reference_direct(sweep.function, rows[:count])
    result = tuple(np.empty(rows.shape) for _ in first)
    for k, (transposed, swapped) in enumerate(orbit.values()):
        for whole, a in zip(result, first):
            a = a.reshape(size, size, 2)
            if transposed:
                a = a.transpose(1, 0, 2)
            if swapped:
                a = a[..., ::-1]
            whole[k * count:(k + 1) * count].reshape(size, size, 2)[...] = a
        block = rows[k * count:(k + 1) * count]
        special = np.flatnonzero(~np.isfinite(block.astype(np.float64)).all(axis=1))
        if k and special.size:
            for whole, d in zip(result, _reference_direct(sweep.function, block[special])):
                whole[k * count + special] = d
    return result


# --- measuring one implementation ------------------------------------------------------------

@_cached_njit
def _unit(a, p, emin):
    """``ulp`` of the binade of ``a >= 0`` (``formats.exact_ulp_error``'s unit); the smallest
    subnormal at 0."""
    if a == 0.0:
        return math.ldexp(1.0, emin - p + 1)
    return math.ldexp(1.0, max(math.frexp(a)[1] - 1, emin) - p + 1)


@_cached_njit
def neighbour(r, up, p, emin):
    """The number of the format next to the finite format number ``r``, above it (``up``) or
    below it (a magnitude past the largest finite is returned as it is, never equal to an
    output)."""
    if r == 0.0:
        tiny = math.ldexp(1.0, emin - p + 1)
        return tiny if up else -tiny
    a = abs(r)
    q = _unit(a, p, emin)
    if up == (r > 0.0):  # away from 0
        return math.copysign(a + q, r)
    e = math.frexp(a)[1] - 1
    step = q / 2.0 if a == math.ldexp(1.0, e) and e > emin else q  # a power of two: finer below
    return math.copysign(a - step, r)


def _inverse_units(p: int, emin: int) -> np.ndarray:
    """``1 / ulp`` of the binades ``2**E``, indexed by ``max(E, emin) - emin`` (E up to float64's
    1023): exact powers of two, so an error is one multiplication."""
    return np.ldexp(1.0, -(np.arange(emin, 1024) - p + 1))


@_cached_njit
def _inverse_unit(lo, hi, inv_units, emin):
    """``1 / ulp`` of the binade of the enclosure ``[lo, hi]``'s end nearest 0 (0 where it holds
    0; float64 subnormals and 0: ``emin``'s)."""
    near = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    if near == 0.0:  # frexp(0) has exponent 0
        return inv_units[0]
    return inv_units[max(math.frexp(near)[1] - 1, emin) - emin]


@_cached_njit
def _error_bound(c, lo, hi, inv_units, emin):
    """``|c - v|`` over ``v`` in ``[lo, hi]``, in units of the binade of its end nearest 0."""
    return max(abs(c - lo), abs(c - hi)) * _inverse_unit(lo, hi, inv_units, emin)


@_cached_njit
def _structural_side(x, j, r, log):
    """The sign of ``v - r`` for output ``j`` of the row ``x`` (no NaN, no +inf) where the row's
    structure tells it, else 0: with two live entries or more, softmax lies strictly inside
    (0, 1) and log-softmax (``log``) strictly below ``x_j - max`` (exact: 16-bit values differ by
    less than 2**40)."""
    if not (math.isfinite(r) and x[j] > -np.inf):
        return 0
    live, m = 0, -np.inf
    for v in x:
        live += v > -np.inf
        m = max(m, v)
    if live < 2:
        return 0
    if log:
        return -1 if r >= x[j] - m else 0
    return -1 if r >= 1.0 else (1 if r <= 0.0 else 0)


@_cached_njit
def _structural_sides(x, r, log):
    """:func:`_structural_side` of every output."""
    side = np.zeros(x.shape, dtype=np.int8)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            side[i, j] = _structural_side(x[i], j, r[i, j], log)
    return side


@_cached_njit
def _classify(c, r, lo, hi, x, log, inv_units, p, emin, cr, faithful, err, flags):
    """Per row: correctly rounded, faithful (1, 0, or -1 where the enclosure holds ``r`` and
    neither it nor the row's structure tells ``v``'s side), the error bound and the flags 1 NaN
    where the reference is not, 2 infinities that differ (an infinity where it is finite or the
    other infinity, a finite value where it is infinite), 4 zero where it is not, 8 a number
    where it is NaN. Where the enclosure holds ``r``, ``c`` is not ``r`` and
    :func:`_structural_side` tells ``v``'s side (``x``: the rows, float64), faithfulness follows
    from it and the error is taken over the enclosure's part on that side; a row with an output
    whose side is not told is left at -1 for :func:`_settle`."""
    for i in range(c.shape[0]):
        row_cr, row_f, row_e, row_flags = True, 1, 0.0, 0
        sided_f, sided_e, unsided = 1, 0.0, False  # the row as the structure settles held outputs
        for j in range(c.shape[1]):
            cj, rj = c[i, j], r[i, j]
            if rj != rj or cj != cj or math.isinf(rj) or math.isinf(cj):
                if (rj != rj and cj != cj) or cj == rj:
                    continue
                row_cr, row_f, row_e = False, 0, np.inf
                if rj != rj:
                    row_flags |= 8
                elif cj != cj:
                    row_flags |= 1
                else:  # an infinity where r is finite or the other one, a number where r is one
                    row_flags |= 2
                continue
            if cj == 0.0 and rj != 0.0:
                row_flags |= 4
            lo_j, hi_j = lo[i, j], hi[i, j]
            e = _error_bound(cj, lo_j, hi_j, inv_units, emin)
            if cj == rj:
                row_e = max(row_e, min(e, 0.5))
                sided_e = max(sided_e, min(e, 0.5))
                continue
            row_cr = False
            row_e = max(row_e, e)
            if lo_j > rj:
                ok = 1 if cj == neighbour(rj, True, p, emin) else 0
            elif hi_j < rj:
                ok = 1 if cj == neighbour(rj, False, p, emin) else 0
            else:
                ok = -1
                side = _structural_side(x[i], j, rj, log)
                if side == 0:
                    unsided = True
                else:  # the error over the enclosure's part on v's side of r (its binade: v's)
                    lo_j, hi_j = (max(lo_j, rj), hi_j) if side > 0 else (lo_j, min(hi_j, rj))
                    e = _error_bound(cj, lo_j, hi_j, inv_units, emin)
                    if cj != neighbour(rj, side > 0, p, emin):
                        sided_f = 0
            sided_e = max(sided_e, e)
            if ok == 0:
                row_f = 0
            elif ok == -1 and row_f == 1:
                row_f = -1
        if row_f == -1 and not unsided:
            row_f, row_e = sided_f, sided_e
        cr[i], faithful[i], err[i], flags[i] = row_cr, row_f, row_e, row_flags


def _settle(sweep, rows, x, c, r, undecided, faithful, err):
    """Rows :func:`_classify` left open (an output whose enclosure holds ``r``, ``c`` not ``r``,
    side not told by the structure): faithfulness and error from the exact double-double values
    (``reference.exact``, ``formats.exact_ulp_error``) and, where those round to ``r`` itself,
    from :func:`_side`."""
    x = x[undecided]
    cu, ru = c[undecided], r[undecided]
    differ = (cu != ru) & ~(np.isnan(cu) & np.isnan(ru))
    side = _structural_sides(x, ru, sweep.function == "log_softmax")
    faithful[undecided], err[undecided] = _settle_exact(
        sweep, rows[undecided], x, cu, ru, side, differ)


def _faithful(cu, ru, side, which, fmt) -> np.ndarray:
    """Per row: every output of ``which`` is ``r``'s neighbour on ``side`` (the others are
    faithful already)."""
    ok = np.ones(cu.shape, dtype=np.bool_)
    _neighbour_is(cu, ru, side.astype(np.int8), which, fmt.precision, fmt.emin, ok)
    return ok.all(axis=1)


@_cached_njit
def _neighbour_is(c, r, side, which, p, emin, ok):
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            if which[i, j]:
                ok[i, j] = side[i, j] != 0 and c[i, j] == neighbour(r[i, j], side[i, j] > 0, p, emin)


def _settle_exact(sweep, rows, x, cu, ru, known_side, differ):
    """``(faithful, error)`` per row from ``reference.exact``'s double-doubles."""
    from softmax_bench import reference
    from softmax_bench.formats import exact_ulp_error

    fmt = sweep.format
    hi, lo = reference.exact(sweep.function, rows)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: NaN, no side
        side = np.nan_to_num(np.sign((hi - ru) + lo))  # v above, below, or at r
    side = np.where(side == 0, known_side, side)
    for k, j in zip(*np.nonzero((side == 0) & np.isfinite(ru))):
        side[k, j] = _side(sweep.function, x[k], j, ru[k, j])
    # where the double-double is r itself, v lies on ``side`` of it: its binade is the one there
    lo = np.where((hi == ru) & (lo == 0.0), side * 2.0**-1074, lo)
    return (_faithful(cu, ru, side, differ, fmt),
            exact_ulp_error(cu, hi, lo, ru, fmt.dtype).max(axis=1))


#: mpmath precisions (bits) :func:`_side` tries before it gives up.
SIDE_PRECISIONS = (128, 512, 2048, 8192)


def _side(function: str, x: np.ndarray, j: int, r: float) -> int:
    """The sign of ``v - r`` for output ``j`` of the row ``x`` (no NaN, no +inf) whose
    double-double exact value rounds to the format number ``r`` itself and whose structure does
    not tell (:func:`_structural_side`: ``v = 1 - e^-1024`` is 1 in double-doubles): 0 where ``v``
    is exact (an entry alone or masked: softmax 1 or 0, log-softmax 0 or -inf); a softmax of
    ``k`` equal live entries is ``1/k``. Every other ``v`` is irrational (Lindemann-Weierstrass:
    exponentials of distinct rationals are linearly independent over the rationals), so never
    ``r``, and mpmath's interval arithmetic at growing precision tells its side (ArithmeticError
    past the last precision: never met)."""
    live = x > -np.inf
    if live.sum() < 2 or not live[j]:
        return 0
    if function == "softmax" and np.all(x[live] == x[j]):  # v = 1/k exactly
        return int(np.sign(1.0 - live.sum() * r))  # k r: exact in float64
    m = x.max()
    from mpmath import iv

    saved = iv.prec  # mpmath's interval context has no workprec
    try:
        for prec in SIDE_PRECISIONS:
            iv.prec = prec
            total = sum(iv.exp(iv.mpf(float(v)) - iv.mpf(float(m))) for v in x[live])
            shift = iv.mpf(float(x[j])) - iv.mpf(float(m))
            v = iv.exp(shift) / total if function == "softmax" else shift - iv.log(total)
            if v.a > r:
                return 1
            if v.b < r:
                return -1
    finally:
        iv.prec = saved
    raise ArithmeticError(f"{function} of {x.tolist()}: output {j} not told from {r!r} at "
                          f"{SIDE_PRECISIONS[-1]} bits")


def _row_info(rows, c, r, err, k) -> dict:
    view = np.dtype(f"u{rows.dtype.itemsize}")
    return {"bits": [f"{int(b):#0{2 + 2 * rows.dtype.itemsize}x}" for b in rows[k].view(view)],
            "x": [float(v) for v in rows[k].astype(np.float64)],
            "output": [float(v) for v in c[k]], "reference": [float(v) for v in r[k]],
            "error": float(err[k])}


def _first_rows(err, rows, candidates, by_error=True) -> np.ndarray:
    """Up to :data:`KEEP` of ``candidates`` (row indices): the largest ``err`` first (``by_error``)
    and, among equal errors (or all, without ``by_error``), the rows in the order of their bit
    patterns (first entry first): a stable choice, whatever order the chunks finish in."""
    bits = rows.view(np.dtype(f"u{rows.dtype.itemsize}"))
    return _first_rows_of(err, bits, 8 * rows.dtype.itemsize, candidates, KEEP, by_error)


@_cached_njit
def _first_rows_of(err, bits, width, candidates, k, by_error):
    """:func:`_first_rows` in one pass over the candidates (no NaN in ``err``), keeping a sorted
    list of ``k`` (a sort of millions of tied rows costs a hundred times more)."""
    top = np.empty(k, dtype=np.int64)
    top_err = np.empty(k)
    top_key = np.empty(k, dtype=np.uint64)
    count = 0
    for i in candidates:
        e = err[i] if by_error else 0.0
        if count == k and e < top_err[k - 1]:
            continue
        key = np.uint64(0)
        for j in range(bits.shape[1]):
            key = (key << np.uint64(width)) | np.uint64(bits[i, j])
        if count == k and e == top_err[k - 1] and key >= top_key[k - 1]:  # equal rows: the first
            continue
        j = count if count < k else k - 1
        while j > 0 and (top_err[j - 1] < e or (top_err[j - 1] == e and top_key[j - 1] > key)):
            top[j], top_err[j], top_key[j] = top[j - 1], top_err[j - 1], top_key[j - 1]
            j -= 1
        top[j], top_err[j], top_key[j] = i, e, key
        count = min(count + 1, k)
    return top[:count]


def _classified(c, r, lo, hi, x, log, fmt):
    """:func:`_classify`'s ``(correctly_rounded, faithful, error, flags)`` per row."""
    n = c.shape[0]
    cr = np.empty(n, dtype=np.bool_)
    faithful = np.empty(n, dtype=np.int8)
    err = np.empty(n)
    flags = np.empty(n, dtype=np.uint8)
    _classify(c, r, lo, hi, x, log, _inverse_units(fmt.precision, fmt.emin),
              fmt.precision, fmt.emin, cr, faithful, err, flags)
    return cr, faithful, err, flags


def measure(sweep: Sweep, rows, y, r, lo, hi, x=None) -> dict:
    """The totals (:func:`summarise`'s fields) of one implementation's outputs ``y`` on ``rows``
    (``x``: ``rows`` in float64, when the caller has it)."""
    c = y.astype(np.float64)
    x = rows.astype(np.float64) if x is None else x
    n = rows.shape[0]
    cr, faithful, err, flags = _classified(c, r, lo, hi, x, sweep.function == "log_softmax",
                                           sweep.format)
    undecided = np.flatnonzero(faithful < 0)
    if undecided.size:
        _settle(sweep, rows, x, c, r, undecided, faithful, err)
    finite = np.isfinite(err)
    worst = _first_rows(err, rows, np.flatnonzero(finite))
    nonfinite = _first_rows(err, rows, np.flatnonzero(~finite), by_error=False)
    return {
        "rows": int(n), "correctly_rounded": int(cr.sum()), "faithful": int((faithful == 1).sum()),
        "max_error": float(err.max()) if n else 0.0,
        "nan_rows": int(((flags & 1) != 0).sum()), "inf_rows": int(((flags & 2) != 0).sum()),
        "zero_rows": int(((flags & 4) != 0).sum()), "missed_nan_rows": int(((flags & 8) != 0).sum()),
        "failed_rows": 0, "failures": {},
        "worst": [_row_info(rows, c, r, err, k) for k in worst],
        "nonfinite": [_row_info(rows, c, r, err, k) for k in nonfinite],
    }


def _failed(n: int, status: str, reason: str) -> dict:
    return {"rows": 0, "correctly_rounded": 0, "faithful": 0, "max_error": 0.0, "nan_rows": 0,
            "inf_rows": 0, "zero_rows": 0, "missed_nan_rows": 0, "failed_rows": n,
            "failures": {status: reason},
            "worst": [], "nonfinite": []}


def summarise(total: dict | None, part: dict) -> dict:
    """Two totals of one implementation made one: counts added, the largest error, the worst rows
    (largest error, then bit order) and the non-finite examples (bit order) merged."""
    if total is None:
        return part
    merged = {k: total[k] + part[k] for k in ("rows", "correctly_rounded", "faithful", "nan_rows",
                                              "inf_rows", "zero_rows", "missed_nan_rows", "failed_rows")}
    merged["max_error"] = max(total["max_error"], part["max_error"])
    merged["failures"] = {**part["failures"], **total["failures"]}
    merged["worst"] = sorted(total["worst"] + part["worst"],
                             key=lambda w: (-w["error"], w["bits"]))[:KEEP]
    merged["nonfinite"] = sorted(total["nonfinite"] + part["nonfinite"], key=lambda w: w["bits"])[:KEEP]
    return merged


# --- one chunk (a task: runs in a pool process or on a Dask worker) ---------------------------

_CALLABLES: dict = {}


def _callable(name: str, function: str):
    """The implementation ``name`` (a kernel id or a built-in peer), loaded once per process."""
    key = (name, function)
    if key not in _CALLABLES:
        if "/" in name:
            from softmax_bench.kernels.registry import list_kernels

            spec = next((s for s in list_kernels(function=function) if s.id == name), None)
            if spec is None:
                raise ExhaustiveError(f"no kernel {name!r}")
            _CALLABLES[key] = spec.fn
        else:
            from softmax_bench.peers import get_peer

            _CALLABLES[key] = get_peer(name).fns[function]
    return _CALLABLES[key]


def _one_thread() -> None:
    """Each task on one core: the executor runs one task per core."""
    import sys

    import numba

    numba.set_num_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_chunk(sweep: Sweep, chunk: int) -> dict:
    """``{"totals": implementation -> totals, "seconds": {"reference" and each implementation:
    the CPU seconds it took on this chunk, its call and its measuring}}`` (this process's CPU
    time, one thread: unlike wall time, not stretched by other work on the machine)."""
    _one_thread()
    started = time.process_time()
    rows = chunk_rows(sweep, chunk)
    r, lo, hi = chunk_reference(sweep, chunk, rows)
    x = rows.astype(np.float64)
    seconds = {"reference": time.process_time() - started}
    totals = {}
    for name in sweep.implementations:
        started = time.process_time()
        totals[name] = _measure_one(sweep, name, rows, x, r, lo, hi)
        seconds[name] = time.process_time() - started
    return {"totals": totals, "seconds": seconds}


def _measure_one(sweep, name, rows, x, r, lo, hi) -> dict:
    try:
        fn = _callable(name, sweep.function)
    except Exception as exc:  # noqa: BLE001 - a failure of this implementation, not the sweep
        return _failed(rows.shape[0], "error", describe(exc))
    _one_thread()  # torch may have been imported just now
    out = guarded_call(fn, rows)
    if out["status"] != "returned":
        return _failed(rows.shape[0], out["status"], out["reason"])
    y = out["y"]
    if y.dtype != rows.dtype:  # rounded into the format, as the audit does
        y = y.astype(rows.dtype)
    totals = measure(sweep, rows, y, r, lo, hi, x)
    if out["modified_input"]:
        totals["failures"]["modified_input"] = "changed its input array in place"
    return totals


# --- the run ---------------------------------------------------------------------------------

def _load(path: Path, sweep: Sweep) -> dict:
    try:
        state = load_json(path)
    except (OSError, ValueError) as exc:
        raise ExhaustiveError(f"{path}: not a readable exhaustive-sweep JSON ({exc})") from exc
    if not isinstance(state, dict) or state.get("meta", {}).get("tool") != "softmax-bench exhaustive":
        raise ExhaustiveError(f"{path} is not an exhaustive-sweep JSON; refusing to overwrite it")
    if state["meta"]["config"] != sweep.config():
        raise ExhaustiveError(f"{path} holds a sweep of other settings ({state['meta']['config']}); "
                              "use another file")
    return state


def run(sweep: Sweep, path: Path | None, workers: int = 0, scheduler: str | None = None,
        resume: bool = False, progress: bool = True) -> dict:
    """Run the chunks not yet in ``path`` (all of them unless ``resume``); returns the state
    ``{"meta", "done", "totals", "timing"}`` (``done``: finished chunks; ``totals``:
    implementation -> :func:`summarise` of them; ``timing``: the seconds the reference and each
    implementation took, summed over ``chunks`` of them) and keeps ``path`` up to date, holding
    its lock (a second sweep on the file refuses)."""
    sweep.check()
    path = None if path is None else Path(path)
    lock = None if path is None else hold_lock(path, ExhaustiveError, "softmax-bench exhaustive")
    try:
        return _run(sweep, path, workers, scheduler, resume, progress)
    finally:
        if lock is not None:
            lock.release()


def _run(sweep, path, workers, scheduler, resume, progress):
    import os

    from tqdm import tqdm

    if path is not None and path.exists() and not resume:
        _load(path, sweep)  # never overwrite a foreign file
        raise ExhaustiveError(f"{path} exists: --resume to go on with it, or another file")
    if resume and path is not None and path.exists():
        state = _load(path, sweep)
    else:
        state = {"meta": {"tool": "softmax-bench exhaustive", "config": sweep.config(), "runs": []},
                 "done": [], "totals": {}}
    executor = scaleout.executor(workers or os.cpu_count() or 1, scheduler)
    run_info = {**provenance(), "workers": executor.workers, "scheduler": scheduler,
                "chunks": 0, "wall_s": 0.0}
    state["meta"]["runs"].append(run_info)
    done = set(state["done"])
    todo = [c for c in sweep.chunks() if c not in done]
    started = saved = time.monotonic()
    bar = tqdm(total=len(sweep.chunks()), initial=len(done), disable=not progress, unit="chunk",
               desc=f"exhaustive {sweep.dtype} {sweep.function}")

    def save():
        run_info["wall_s"] = round(time.monotonic() - started, 1)
        if path is not None:
            write_json_atomic(path, state)

    try:
        futures = {executor.submit(run_chunk, sweep, c): c for c in todo}
        for future in concurrent.futures.as_completed(futures):
            part = future.result()
            # the new totals whole, then taken with the chunk in one step: an interrupt in
            # between leaves the state as it was (a chunk counted twice after --resume otherwise)
            totals = {name: summarise(state["totals"].get(name), part["totals"][name])
                      for name in sweep.implementations}
            old = state.get("timing", {"chunks": 0, "seconds": {}})
            timing = {"chunks": old["chunks"] + 1,
                      "seconds": {name: old["seconds"].get(name, 0.0) + t
                                  for name, t in part["seconds"].items()}}
            done.add(futures[future])
            state.update(totals=totals, timing=timing, done=sorted(done))
            run_info["chunks"] += 1
            bar.update(1)
            if time.monotonic() - saved >= SAVE_INTERVAL_S:
                save()
                saved = time.monotonic()
    finally:  # an error or Ctrl-C: the chunks not started are dropped, the finished ones kept
        executor.shutdown(wait=False, cancel_futures=True)
        save()
        bar.close()
    return state


# --- the table -------------------------------------------------------------------------------

def _share(count: int, rows: int) -> str:
    if count == rows:
        return "all"
    if not rows:
        return "-"
    share = f"{100.0 * count / rows:.4g}"
    if share == "100":  # not every row: never shown as 100%
        share = f"{math.floor(1e6 * count / rows) / 1e4:.4f}"
    return f"{count:,} ({share}%)"


def _row_text(info: dict) -> str:
    x = ", ".join(f"{v:.6g}" for v in info["x"])
    out = ", ".join(f"{v:.6g}" for v in info["output"])
    ref = ", ".join(f"{v:.6g}" for v in info["reference"])
    return f"[{x}] -> [{out}], CR [{ref}] ({' '.join(info['bits'])})"


def markdown(state: dict) -> str:
    """One table of a sweep's totals: per implementation the rows correctly rounded and faithful,
    the worst error (an upper bound, ULPs of the exact value), the rows with a NaN, an infinity or
    a zero where the reference is not, and the worst row."""
    sweep = Sweep.from_config(state["meta"]["config"])
    chunks = len(sweep.chunks())
    if sweep.domain == "pairs":
        domain = f"every pair of {sweep.dtype} values ({sweep.rows:,} rows of two)"
    else:
        start, count = sweep.window
        values = sweep.format.all_values()[[start, start + count - 1]].astype(np.float64)
        domain = (f"every row of three {sweep.dtype} values among the {count} from "
                  f"{values[0]:g} to {values[1]:g} ({sweep.rows:,} rows)")
    done = len(state["done"])
    wall = sum(run["wall_s"] for run in state["meta"]["runs"])
    lines = [f"### {sweep.function}, {domain}", ""]
    if done < chunks:
        lines += [f"**Partial:** {done} of {chunks} chunks (`--resume` runs the rest).", ""]
    lines += [f"{done} chunks in {wall:,.0f} s on {state['meta']['runs'][-1]['workers']} workers "
              f"({state['meta']['runs'][-1]['machine']['processor']}).", "",
              "| implementation | correctly rounded | faithful | worst error (ULP) | NaN / inf / zero / missed NaN rows | worst row | s (1 core) |",
              "|---|---|---|---|---|---|---|"]
    timing = state.get("timing") or {"chunks": 0, "seconds": {}}

    def one_core(name):
        """Seconds on one core for every chunk, from the chunks timed (their share of rows)."""
        t = timing["seconds"].get(name)
        return "-" if t is None or not timing["chunks"] else f"{t * chunks / timing['chunks']:,.0f}"

    verdicts = {"correctly rounded on every row": [], "faithful on every row": [], "neither": []}
    for name in sweep.implementations:
        t = state["totals"].get(name)
        if t is None:
            continue
        rows = t["rows"]
        kind = ("neither" if t["failed_rows"] or t["faithful"] < rows else "faithful on every row"
                if t["correctly_rounded"] < rows else "correctly rounded on every row")
        verdicts[kind].append(f"`{name}`")
        worst = _row_text(t["worst"][0]) if t["worst"] else ""
        if t["max_error"] == math.inf and t["nonfinite"]:
            worst = _row_text(t["nonfinite"][0])
        failed = f" (failed on {t['failed_rows']:,} rows: {'; '.join(t['failures'].values())})" \
            if t["failed_rows"] else ""
        error = f"{t['max_error']:.6g}"
        if t["max_error"] == math.inf and t["worst"]:
            error += f" (finite: {t['worst'][0]['error']:.6g})"
        lines.append(f"| {name}{failed} | {_share(t['correctly_rounded'], rows)} | "
                     f"{_share(t['faithful'], rows)} | {error} | "
                     f"{t['nan_rows']:,} / {t['inf_rows']:,} / {t['zero_rows']:,} / "
                     f"{t['missed_nan_rows']:,} | {worst} | "
                     f"{one_core(name)} |")
    lines += ["", f"The reference: {one_core('reference')} s on one core. Times: CPU seconds of the "
              f"call and its measuring, summed over {timing['chunks']} chunks and scaled to all {chunks}."]
    lines += [""] + [f"- {kind}: {', '.join(names)}" for kind, names in verdicts.items() if names]
    return "\n".join(lines) + "\n"
