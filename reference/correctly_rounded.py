"""The ground truth: softmax, log-softmax, log-sum-exp, the Jacobian and its VJP in mpmath,
correctly rounded into any format of ``softmax_bench.formats`` (float16, float32, float64,
bfloat16, float8_e4m3fn, float8_e5m2).

How a result is made (a Ziv loop over interval enclosures)
----------------------------------------------------------
Inputs are taken exactly (every value of every format is a dyadic rational, an exact mpmath value). For a
row ``x`` with maximum ``m`` the differences ``d_j = x_j - m <= 0`` are exact. At a working
precision of ``p`` bits each term ``e_j = exp(d_j)`` is enclosed in ``[lo_j, hi_j]``: mpmath's
``exp`` at ``p`` bits is off by less than one unit in the last place (it works with 14 guard bits,
then rounds), so the ``p``-bit neighbours on either side of its result bracket the true value.
Every further operation (sums, quotients, products, logarithms) is done with directed rounding
(floor for lower ends, ceiling for upper ends), so every output has a guaranteed enclosure.

An output is *decided* when both ends of its enclosure round to the same number of the target
format (round-to-nearest-even, gradual underflow, overflow to inf: ``formats.round_rational``);
rounding is monotone, so the exact value rounds there too. Undecided outputs are recomputed at
twice the precision, up to ``MAX_PRECISION`` bits; past that ``ReferencePrecisionError`` is raised
rather than a guess returned.

Log-softmax ``d_i - log S`` and log-sum-exp ``m + log S`` are an exact number plus a positive
remainder of known sign. When that exact part is itself a rounding boundary (a midpoint, or the
overflow tie of a narrow format: ``-57344 - 4096`` in float8_e5m2) and the remainder is below
2**-MAX_PRECISION, the loop decides from that structure (``_exact_plus_tiny``) instead of giving up.

The VJP's ``g_i S - T`` cancels the same way: with one dominant entry, ``S`` and ``T`` are
enclosed near ``1`` and ``g_k`` while the difference is ``e^-(gap)``. An output left undecided by
that fast form is recomputed group by group (groups of equal ``x``),
``g_i S - T = sum_G e^{d_G} (|G| g_i - sum_G g)``: exact coefficients, each term of known sign,
so a result of ``e^-(10^4)`` (which rounds to a zero, whose sign it also decides) is settled at
ordinary precision. The output of a maximum (``t`` tied maxima) is ``c / t^2`` exactly plus a
remainder computed from the small terms alone (their coefficients combined exactly first); when
``c / t^2`` is a rounding midpoint and the remainder below ``2**-MAX_PRECISION``,
``_exact_plus_tiny`` decides from the remainder's sign. Rows of N(0, 10^4) of length 2 or 3, of which a third used to reach the
precision cap, now take milliseconds.

The loop ends because no undecided output is exactly a rounding boundary: by Lindemann-Weierstrass,
``exp`` of distinct rationals are linearly independent over the rationals, so softmax outputs are
rational only when all unmasked inputs of the row are equal. Those rows (and the exact zeros of the
VJP, which the same theorem characterises) are computed exactly with rationals instead.

Special values (one rule per case; peers compared in README.md)
---------------------------------------------------------------
- NaN anywhere in a row: the whole row is NaN (as scipy and torch do).
- ``-inf`` entries are masked: their softmax is exactly 0, their log-softmax ``-inf``.
- A row of only ``-inf``: softmax and log-softmax NaN (0/0, as in scipy and torch), log-sum-exp
  ``-inf`` (log 0, as scipy.special.logsumexp).
- ``+inf`` anywhere in a row: softmax, log-softmax, Jacobian and VJP are NaN for the whole row, and
  log-sum-exp is ``+inf``. The limit of softmax as entries grow without bound depends on how fast
  each grows (``inf - inf`` is undefined), so no finite answer is the truth; NaN is also what
  scipy.special.softmax and torch.softmax return.
- Exact zeros are returned as +0.0.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
from mpmath.libmp import (
    fone,
    from_float,
    from_int,
    fzero,
    mpf_add,
    mpf_cmp,
    mpf_div,
    mpf_exp,
    mpf_log,
    mpf_mul,
    mpf_neg,
    mpf_perturb,
    mpf_shift,
    mpf_sub,
    round_ceiling,
    round_floor,
    round_nearest,
)

from softmax_bench.formats import FORMATS, Format, format_of, is_format, round_rational

from . import phase1

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "jacobian",
    "vjp",
    "exact",
    "warm",
    "ReferencePrecisionError",
    "MAX_PRECISION",
]

#: Largest working precision (bits) the Ziv loop may reach. Enough for float64 log-softmax of
#: inputs near 1e308 (about 1100 bits) with room to spare; the escalation doubles from ~100 bits.
MAX_PRECISION = 1 << 14
#: Extra bits above the target precision at the first try, on top of 2 log2(n) for the sums.
GUARD_BITS = 24

F, C = round_floor, round_ceiling
Enclosure = tuple  # (lo, hi) raw mpf tuples


class ReferencePrecisionError(ArithmeticError):
    """The Ziv loop hit MAX_PRECISION without deciding the rounding of some output."""


# ---------------------------------------------------------------------------------------------
# Rounding an enclosure
# ---------------------------------------------------------------------------------------------
def _round_mpf(v, fmt: Format) -> float:
    """Round the raw mpf ``v`` (sign, man, exp, bc) to ``fmt``; magnitudes far outside the format
    short-cut to 0 or inf before any big integer is built."""
    sign, man, exp, bc = v
    if not man:
        if v == fzero:
            return 0.0
        raise ValueError(f"non-finite enclosure end {v!r}")  # never: ends are finite
    top = exp + bc  # |v| < 2**top
    if top <= fmt.emin - fmt.precision:  # |v| < half the smallest subnormal: rounds to 0
        return -0.0 if sign else 0.0
    if top - 1 > fmt.emax + 1:  # |v| >= 2**(emax+1): overflow (NaN in a format without inf)
        if not fmt.has_inf:
            return math.nan
        return -math.inf if sign else math.inf
    num = -man if sign else man
    return round_rational(num << exp, 1, fmt) if exp >= 0 else round_rational(num, 1 << -exp, fmt)


def _decide(enclosure: Enclosure, fmt: Format):
    """The rounded value if both ends of the enclosure round alike (sign of zero included; two
    NaN ends are alike when both overflow a format without infinity, e4m3fn, on the same side:
    an enclosure from -1e284 to 1e284 rounds to NaN at both ends but holds finite values)."""
    lo, hi = enclosure
    a = _round_mpf(lo, fmt)
    if lo == hi:
        return a
    b = _round_mpf(hi, fmt)
    if math.isnan(a) and math.isnan(b):
        return a if lo[0] == hi[0] else None  # mpf sign bits: both ends on one side
    if a == b and math.copysign(1.0, a) == math.copysign(1.0, b):
        return a
    return None


def _widen(v, p: int) -> Enclosure:
    """Enclosure of an irrational value approximated by ``v``.

    The ends are the p-bit numbers just below ``v - eps`` and just above ``v + eps``, with
    ``eps = 2**-(p+1) |v|`` (about half an ulp at p bits): for a p-bit ``v`` that is a full ulp on
    either side. mpmath's exp and log are within half an ulp plus a guard-bit error of at most
    2**-12 ulp (they work at p+14 or p+20 bits), so the true value lies inside."""
    return mpf_perturb(v, 1, p, F), mpf_perturb(v, 0, p, C)


def _imul(a: Enclosure, b: Enclosure, p: int) -> Enclosure:
    """Product of two intervals, outward rounded."""
    los = [mpf_mul(x, y, p, F) for x in a for y in b]
    his = [mpf_mul(x, y, p, C) for x in a for y in b]
    lo = min(los, key=_cmp_key)
    hi = max(his, key=_cmp_key)
    return lo, hi


class _cmp_key:
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return mpf_cmp(self.v, other.v) < 0


def _log1p_bound(r, p: int, rnd) -> object:
    """A lower (``rnd`` = floor) or upper (ceiling) bound of ``log1p(r)`` for an mpf ``r >= 0``.

    For ``r < 2**-(p+8)``: ``r - r**2/2 <= log1p(r) <= r``, no logarithm needed (and none could
    see ``r`` next to 1). Otherwise ``1 + r`` is formed exactly (at most ~2p bits) and its log,
    irrational since ``1 + r != 1`` is rational, is widened by one ulp. (mpmath 1.3, which
    PyTorch's sympy pins, has no mpf_log1p.)"""
    if r == fzero:
        return fzero
    _, man, exp, bc = r
    if exp + bc < -(p + 8):
        if rnd == C:
            return r
        return mpf_mul(r, mpf_sub(fone, mpf_shift(r, -1), p, F), p, F)
    lo, hi = _widen(mpf_log(mpf_add(fone, r), p, round_nearest), p)
    return lo if rnd == F else hi


# ---------------------------------------------------------------------------------------------
# One row at one working precision
# ---------------------------------------------------------------------------------------------
class _Row:
    """Enclosures of ``e_j = exp(x_j - m)``, of ``R = sum_{j != k} e_j`` (all terms but the one at
    the first maximum ``k``, where ``e_k = 1`` exactly) and of ``S = 1 + R``, at ``p`` bits.

    ``d`` holds the exact differences ``x_j - m`` as raw mpf values, ``None`` for masked entries.
    Keeping ``R`` apart from the 1 keeps its information when ``R`` is far below 2**-p: then
    ``log S = log1p(R)`` is still enclosed away from 0 (Blanchard, Higham & Higham's form).
    """

    def __init__(self, d: list, p: int):
        self.p = p
        self.k = d.index(fzero)
        self.e = []
        r_lo = r_hi = fzero
        for j, dj in enumerate(d):
            if dj is None:
                ej = (fzero, fzero)
            elif dj == fzero:
                ej = (fone, fone)
            else:
                ej = _widen(mpf_exp(dj, p, round_nearest), p)
            self.e.append(ej)
            if j != self.k:
                r_lo = mpf_add(r_lo, ej[0], p, F)
                r_hi = mpf_add(r_hi, ej[1], p, C)
        self.r = (r_lo, r_hi)
        self.s = (mpf_add(fone, r_lo, p, F), mpf_add(fone, r_hi, p, C))
        self._log_s = None

    def y(self, i: int) -> Enclosure:
        lo, hi = self.e[i]
        return mpf_div(lo, self.s[1], self.p, F), mpf_div(hi, self.s[0], self.p, C)

    def log_s(self) -> Enclosure:
        """Enclosure of ``log S = log1p(R)``."""
        if self._log_s is None:
            self._log_s = (_log1p_bound(self.r[0], self.p, F), _log1p_bound(self.r[1], self.p, C))
        return self._log_s

    def rest(self, i: int, d: list) -> Enclosure:
        """Enclosure of ``S - e_i = sum_{j != i} e_j``, summed directly (no cancellation)."""
        if i == self.k:
            return self.r
        p, lo, hi = self.p, fzero, fzero
        for j, ej in enumerate(self.e):
            if j != i and d[j] is not None:
                lo = mpf_add(lo, ej[0], p, F)
                hi = mpf_add(hi, ej[1], p, C)
        return lo, hi


def _exact_plus_tiny(c, sign: int, enclosure: Enclosure, fmt: Format):
    """The rounding of ``c + sign * t`` for an exact mpf ``c`` and a ``t > 0`` known only to lie in
    the enclosure's distance from ``c``, or None while that distance may reach ``eta`` = a quarter
    of the smallest subnormal. Rounding boundaries (the format's numbers, the midpoints between
    them, the overflow tie) are at least half a smallest subnormal apart, so no boundary but ``c``
    itself lies within ``eta`` of ``c``: every ``c + sign * t`` with ``0 < t < eta`` rounds as
    ``c + sign * eta`` does, and that point is no boundary."""
    eta = mpf_shift(fone, fmt.emin - fmt.precision - 1)
    far = enclosure[0] if sign < 0 else enclosure[1]
    if mpf_cmp(mpf_sub(far, c, 0) if sign > 0 else mpf_sub(c, far, 0), eta) >= 0:
        return None
    return _round_mpf(mpf_add(c, eta if sign > 0 else mpf_neg(eta), 0), fmt)


def _ziv(d: list, fmt: Format, keys: Iterable, enclose: Callable[[_Row, object], Enclosure],
         exact_part: Callable[[object], tuple] | None = None):
    """Decide ``enclose(row, key)`` for every key, doubling the precision as needed.

    ``exact_part(key) -> (c, sign)`` (or None: no such structure known for that key yet): the
    output is the exact mpf ``c`` plus ``sign`` times a positive remainder (log-softmax
    ``d_i - log S``, log-sum-exp ``m + log S``, the VJP of a maximum). When the
    enclosure puts the remainder below a quarter of the smallest subnormal, with ``c`` a rounding
    boundary (where no precision could decide), :func:`_exact_plus_tiny` decides from that
    structure at once, at whatever precision the enclosure was made: an output ``c`` plus
    ``e^-(10^4)`` costs one pass, not the climb to the precision cap."""
    result = {}
    pending = list(keys)
    p = fmt.precision + GUARD_BITS + 2 * max(1, len(d)).bit_length()
    while pending:
        if p > MAX_PRECISION:
            raise ReferencePrecisionError(
                f"rounding of {len(pending)} output(s) to {fmt.name} still undecided at "
                f"{p // 2} bits (MAX_PRECISION={MAX_PRECISION}); first undecided key {pending[0]!r}"
            )
        row = _Row(d, p)
        undecided = []
        for key in pending:
            enclosure = enclose(row, key)
            value = _decide(enclosure, fmt)
            part = None if value is not None or exact_part is None else exact_part(key)
            if part is not None:
                value = _exact_plus_tiny(*part, enclosure, fmt)
            if value is None:
                undecided.append(key)
            else:
                result[key] = value
        pending = undecided
        p *= 2
    return result


# ---------------------------------------------------------------------------------------------
# Row preparation and the exact (rational) cases
# ---------------------------------------------------------------------------------------------
class _Prepared:
    """A row split into its cases: ``kind`` is 'nan', 'posinf', 'allmasked' or 'finite'.

    For 'finite' rows: ``m`` (exact max as mpf), ``d`` (exact x_j - m, None where masked),
    ``unmasked`` indices, and ``uniform`` (all unmasked entries equal)."""

    def __init__(self, row: np.ndarray):
        self.n = row.shape[0]
        if np.isnan(row).any():
            self.kind = "nan"
            return
        if np.isposinf(row).any():
            self.kind = "posinf"
            return
        self.unmasked = np.flatnonzero(row != -np.inf).tolist()
        if not self.unmasked:
            self.kind = "allmasked"
            return
        self.kind = "finite"
        xmax = float(row[self.unmasked].max())
        self.m = from_float(xmax)
        self.d = [None] * self.n
        for j in self.unmasked:
            self.d[j] = mpf_sub(from_float(float(row[j])), self.m)  # exact (prec=0)
        self.uniform = all(row[j] == xmax for j in self.unmasked)


def _nan_row(n: int) -> list:
    return [math.nan] * n


def _softmax_row(row: np.ndarray, fmt: Format) -> list:
    r = _Prepared(row)
    if r.kind != "finite":
        return _nan_row(r.n)
    if r.uniform:
        share = round_rational(1, len(r.unmasked), fmt)
        return [share if dj is not None else 0.0 for dj in r.d]
    keys = r.unmasked
    got = _ziv(r.d, fmt, keys, lambda row_, i: row_.y(i))
    return [got.get(j, 0.0) for j in range(r.n)]


def _log_softmax_row(row: np.ndarray, fmt: Format) -> list:
    r = _Prepared(row)
    if r.kind != "finite":
        return _nan_row(r.n)

    def enclose(row_: _Row, i):
        ls_lo, ls_hi = row_.log_s()
        return mpf_sub(r.d[i], ls_hi, row_.p, F), mpf_sub(r.d[i], ls_lo, row_.p, C)

    got = _ziv(r.d, fmt, r.unmasked, enclose, exact_part=lambda i: (r.d[i], -1))
    return [got.get(j, -math.inf) for j in range(r.n)]


def _logsumexp_row(row: np.ndarray, fmt: Format) -> float:
    r = _Prepared(row)
    if r.kind == "nan":
        return math.nan
    if r.kind == "posinf":
        return math.inf
    if r.kind == "allmasked":
        return -math.inf

    def enclose(row_: _Row, _key):
        ls_lo, ls_hi = row_.log_s()
        return mpf_add(r.m, ls_lo, row_.p, F), mpf_add(r.m, ls_hi, row_.p, C)

    return _ziv(r.d, fmt, [0], enclose, exact_part=lambda _key: (r.m, 1))[0]


def _jacobian_row(row: np.ndarray, fmt: Format) -> list:
    """Rows of ``J = diag(y) - y y^T`` as a list of lists."""
    r = _Prepared(row)
    n = r.n
    if r.kind != "finite":
        return [_nan_row(n) for _ in range(n)]
    out = [[0.0] * n for _ in range(n)]
    if r.uniform:
        k = len(r.unmasked)
        diag = round_rational(k - 1, k * k, fmt)
        off = round_rational(-1, k * k, fmt)
        for i in r.unmasked:
            for j in r.unmasked:
                out[i][j] = diag if i == j else off
        return out

    rest_cache = {}

    def enclose(row_: _Row, key):
        i, j = key
        p = row_.p
        if i != j:  # -y_i y_j
            lo, hi = _imul(row_.y(i), row_.y(j), p)
            return mpf_neg(hi), mpf_neg(lo)
        # y_i (1 - y_i) = e_i * (S - e_i) / S^2, with S - e_i summed directly.
        if rest_cache.get("p") != p:
            rest_cache.clear()
            rest_cache["p"] = p
        if i not in rest_cache:
            rest_cache[i] = row_.rest(i, r.d)
        rest = rest_cache[i]
        if rest == (fzero, fzero):  # a single unmasked entry: J = 0
            return fzero, fzero
        e_lo, e_hi = row_.e[i]
        s_lo, s_hi = row_.s
        lo = mpf_div(mpf_mul(e_lo, rest[0], p, F), mpf_mul(s_hi, s_hi, p, C), p, F)
        hi = mpf_div(mpf_mul(e_hi, rest[1], p, C), mpf_mul(s_lo, s_lo, p, F), p, C)
        return lo, hi

    keys = [(i, j) for i in r.unmasked for j in r.unmasked]
    got = _ziv(r.d, fmt, keys, enclose)
    for (i, j), v in got.items():
        out[i][j] = v
    return out


def _vjp_row(row: np.ndarray, g: np.ndarray, fmt: Format) -> list:
    """``J^T g = y * (g - <g, y>)`` for one row."""
    r = _Prepared(row)
    n = r.n
    if r.kind != "finite" or not np.isfinite(g[r.unmasked]).all():
        return _nan_row(n)
    gq = {j: Fraction(float(g[j])) for j in r.unmasked}
    # Exact zeros: sum_j (g_i - g_j) e_j = sum over groups G of equal x of
    # e^{d_G} (|G| g_i - sum_G g), which vanishes (Lindemann-Weierstrass) iff g_i equals the mean
    # of g over every group.
    groups: dict = {}  # keyed by the Python float (ml_dtypes scalars do not hash by value)
    for j in r.unmasked:
        cnt, tot = groups.get(float(row[j]), (0, Fraction(0)))
        groups[float(row[j])] = (cnt + 1, tot + gq[j])
    means = {tot / cnt for cnt, tot in groups.values()}
    common_mean = means.pop() if len(means) == 1 else None
    if r.uniform:
        k = len(r.unmasked)
        mean = common_mean
        return [
            _round_fraction(gq[j] / k - mean / k, fmt) if j in gq else 0.0 for j in range(n)
        ]
    keys = [j for j in r.unmasked if gq[j] != common_mean]
    gm = {j: from_float(float(g[j])) for j in r.unmasked}
    members = {}  # a representative index and (count, sum of g) per group of equal x
    for j in r.unmasked:
        members.setdefault(float(row[j]), j)
    group_list = [(members[v], cnt, tot) for v, (cnt, tot) in groups.items()]

    cache = {}
    tries: dict = {}

    def mpf_of(q: Fraction):
        """A dyadic Fraction as an exact mpf."""
        shift = q.denominator.bit_length() - 1
        return mpf_shift(from_int(q.numerator), -shift)

    top = next(grp for grp in group_list if r.d[grp[0]] == fzero)  # the maxima
    below = [grp for grp in group_list if grp[0] != top[0]]
    exact_parts: dict = {}

    def top_output(row_: _Row, i) -> Enclosure | None:
        """For ``i`` among the maxima (group ``G1`` of size ``t``, ``e = 1``): with
        ``c = t g_i - sum_G1 g``, ``c_G = |G| g_i - sum_G g`` and ``r = sum_{G != G1} |G| e_G``,
        ``z_i = c / t^2 + (sum_{G != G1} k_G e_G - c r^2) / (t^2 S^2)``,
        ``k_G = t^2 c_G - 2 t c |G|`` (exact): an exact part plus a remainder built from the small
        terms alone, their coefficients combined exactly first (a ``k_G`` of 0 cancels exactly,
        not to within ``2**-p``), so the remainder's sign and size are known at ordinary precision
        even when it is ``e^-(10^5)`` next to a rounding boundary ``c / t^2``
        (``_exact_plus_tiny``). None when ``c / t^2`` is not dyadic (then it is no boundary)."""
        _, t, tot = top
        c = t * gq[i] - tot
        c0 = c / (t * t)
        if c0.denominator & (c0.denominator - 1):
            return None
        p = row_.p
        l_lo = l_hi = rr_lo = rr_hi = fzero
        for rep, cnt, tot_g in below:
            e_lo, e_hi = row_.e[rep]
            k = t * t * (cnt * gq[i] - tot_g) - 2 * t * c * cnt
            if k:
                km = mpf_of(k)
                lo, hi = (mpf_mul(km, e_lo, p, F), mpf_mul(km, e_hi, p, C)) if k > 0 else \
                    (mpf_mul(km, e_hi, p, F), mpf_mul(km, e_lo, p, C))
                l_lo, l_hi = mpf_add(l_lo, lo, p, F), mpf_add(l_hi, hi, p, C)
            rr_lo = mpf_add(rr_lo, mpf_mul(from_int(cnt), e_lo, p, F), p, F)
            rr_hi = mpf_add(rr_hi, mpf_mul(from_int(cnt), e_hi, p, C), p, C)
        cm = mpf_of(c)
        b = _imul((cm, cm), (mpf_mul(rr_lo, rr_lo, p, F), mpf_mul(rr_hi, rr_hi, p, C)), p)
        num = (mpf_sub(l_lo, b[1], p, F), mpf_sub(l_hi, b[0], p, C))
        t2 = from_int(t * t)
        den = _imul((t2, t2), cache["s2"], p)
        rem_lo = mpf_div(num[0], den[1] if mpf_cmp(num[0], fzero) >= 0 else den[0], p, F)
        rem_hi = mpf_div(num[1], den[0] if mpf_cmp(num[1], fzero) >= 0 else den[1], p, C)
        c0m = mpf_of(c0)
        if mpf_cmp(rem_lo, fzero) > 0:
            exact_parts[i] = (c0m, 1)
        elif mpf_cmp(rem_hi, fzero) < 0:
            exact_parts[i] = (c0m, -1)
        return mpf_add(c0m, rem_lo, p, F), mpf_add(c0m, rem_hi, p, C)

    def grouped_diff(row_: _Row, i) -> Enclosure:
        """``g_i S - T = sum_G e^{d_G} (|G| g_i - sum_G g)`` group by group: each coefficient
        exact, each term of known sign, no cancellation between a sum near 1 and tiny terms (the
        form that decides an output whose value is ``e^-(10^4)`` at ordinary precision)."""
        p = row_.p
        lo = hi = fzero
        for rep, cnt, tot in group_list:
            c = cnt * gq[i] - tot
            if c == 0:
                continue
            cm = mpf_of(c)  # g's are floats: c is dyadic, exact in mpf
            e_lo, e_hi = row_.e[rep]
            if c > 0:
                lo, hi = mpf_add(lo, mpf_mul(cm, e_lo, p, F), p, F), mpf_add(hi, mpf_mul(cm, e_hi, p, C), p, C)
            else:
                lo, hi = mpf_add(lo, mpf_mul(cm, e_hi, p, F), p, F), mpf_add(hi, mpf_mul(cm, e_lo, p, C), p, C)
        return lo, hi

    def enclose(row_: _Row, i):
        p = row_.p
        if cache.get("p") != p:  # T = sum_j g_j e_j, once per precision
            t_lo = t_hi = fzero
            for j in r.unmasked:
                lo, hi = _imul((gm[j], gm[j]), row_.e[j], p)
                t_lo, t_hi = mpf_add(t_lo, lo, p, F), mpf_add(t_hi, hi, p, C)
            cache.clear()
            cache.update(p=p, t=(t_lo, t_hi), s2=_imul(row_.s, row_.s, p))
        tries[i] = tries.get(i, 0) + 1
        if tries[i] > 1 and r.d[i] == fzero:  # a maximum: exact part plus small remainder
            got = top_output(row_, i)
            if got is not None:
                return got
        if tries[i] > 1:  # undecided once: the cancellation-free form, O(groups) per output
            diff = grouped_diff(row_, i)
        else:
            t_lo, t_hi = cache["t"]
            gs_lo, gs_hi = _imul((gm[i], gm[i]), row_.s, p)
            diff = (mpf_sub(gs_lo, t_hi, p, F), mpf_sub(gs_hi, t_lo, p, C))  # g_i S - T
        num = _imul(row_.e[i], diff, p)
        s2_lo, s2_hi = cache["s2"]
        # divide by S^2 > 0: the lower end by the larger S^2 if it is positive, etc.
        lo = mpf_div(num[0], s2_hi if mpf_cmp(num[0], fzero) >= 0 else s2_lo, p, F)
        hi = mpf_div(num[1], s2_lo if mpf_cmp(num[1], fzero) >= 0 else s2_hi, p, C)
        return lo, hi

    got = _ziv(r.d, fmt, keys, enclose, exact_part=exact_parts.get)
    return [got.get(j, 0.0) for j in range(n)]


def _round_fraction(q: Fraction, fmt: Format) -> float:
    return 0.0 if q == 0 else round_rational(q.numerator, q.denominator, fmt)


# ---------------------------------------------------------------------------------------------
# Public API: validation, batching, output
# ---------------------------------------------------------------------------------------------
def _check_input(x, dtype, axis, name="x"):
    """Validate ``x`` and return (x moved so the reduced axis is last, target Format, axis)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array of {', '.join(FORMATS)} "
            f"(its values are taken exactly), got {type(x).__name__}"
        )
    if not is_format(x.dtype):
        raise TypeError(f"{name} has dtype {x.dtype.name!r}: the reference takes {', '.join(FORMATS)}")
    if x.ndim == 0:
        raise ValueError(f"{name} is 0-dimensional: softmax needs an axis to reduce over")
    fmt = format_of(x.dtype if dtype is None else dtype)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for a {x.ndim}-dimensional array")
    axis = int(axis) % x.ndim
    if x.shape[axis] == 0:
        raise ValueError(f"{name} has an empty reduction axis (shape {x.shape}, axis {axis})")
    return np.moveaxis(x, axis, -1), fmt, axis


def _rows(x_last: np.ndarray):
    """The rows of ``x_last`` (reduced axis last) as exact float64 arrays."""
    return x_last.reshape(-1, x_last.shape[-1]).astype(np.float64)


def _two_phases(x, dtype, axis, fast, row_fn, reduces=False, extra=()):
    """Rows of ``x`` (and of the ``extra`` operands of its shape, the VJP's ``g``) through phase 1
    (``fast``, :mod:`.phase1`: float64 for targets of at most 24 bits, then double-doubles for
    the rows that leaves undecided; double-doubles for float64), and through the Ziv loop
    (``row_fn``) where phase 1 leaves them undecided; the result in the target format, the
    reduced axis in place (or removed)."""
    x_last, fmt, axis = _check_input(x, dtype, axis)
    operands = [_rows(x_last)] + [_rows(np.moveaxis(a, axis, -1)) for a in extra]
    out, decided, _ = phase1.two_tries(fast, fmt, *operands)
    for i in np.flatnonzero(~decided):
        out[i] = row_fn(*(a[i] for a in operands), fmt)
    return _shaped(out, x_last.shape, axis, reduces).astype(fmt.dtype)  # exact: values of fmt


def _shaped(out, shape_last, axis, reduces):
    """Rows of results back in the input's layout (the reduced axis removed when ``reduces``)."""
    if reduces:
        return out.reshape(shape_last[:-1])
    return np.moveaxis(out.reshape(shape_last), -1, axis)


_ROW_FUNCTIONS = {"softmax": "_softmax_row", "log_softmax": "_log_softmax_row",
                  "logsumexp": "_logsumexp_row", "vjp": "_vjp_row", "softmax_vjp": "_vjp_row"}


def exact(function: str, x: np.ndarray, g: np.ndarray | None = None, axis: int = -1):
    """``(hi, lo)``: float64 arrays, of the shape the function's result has, whose sums ``hi + lo``
    are its exact values (not rounded to any format) within about ``2**-96`` relative: phase 1's
    double-doubles (:func:`.phase1.exact`, bounds in its module docstring). ``function``:
    'softmax', 'log_softmax', 'logsumexp', 'vjp' (or 'softmax_vjp', with ``g``). Rows phase 1
    does not take are the correctly rounded float64 values (``lo = 0``): exactly the value for
    NaN, +inf and all-masked rows; within half a float64 ULP in the rest (non-finite
    cotangents give NaN; only inputs near float64's overflow threshold get there)."""
    if function not in _ROW_FUNCTIONS:
        raise ValueError(f"no exact values for {function!r}: one of {', '.join(_ROW_FUNCTIONS)}")
    x_last, _, axis = _check_input(x, None, axis)
    operands = [_rows(x_last)]
    if function in ("vjp", "softmax_vjp"):
        _check_cotangent(g, x, axis)
        operands.append(_rows(np.moveaxis(g, axis, -1)))
    name = "vjp" if function == "softmax_vjp" else function
    hi, lo, taken = phase1.exact(name, *operands)
    row_fn = globals()[_ROW_FUNCTIONS[function]]
    for i in np.flatnonzero(~taken):
        hi[i] = row_fn(*(a[i] for a in operands), FORMATS["float64"])
        lo[i] = 0.0
    reduces = function == "logsumexp"
    return tuple(_shaped(a.reshape(-1) if reduces else a, x_last.shape, axis, reduces)
                 for a in (hi, lo))


def softmax(x: np.ndarray, dtype=None, axis: int = -1) -> np.ndarray:
    """Correctly rounded ``exp(x_i) / sum_j exp(x_j)`` along ``axis``.

    ``x``: numpy array of any format here, values taken exactly. ``dtype``: the format of the
    result (default ``x.dtype``); every element is the round-to-nearest-even value of the exact
    softmax. Special values as in the module docstring: NaN or +inf in a row -> NaN row, -inf
    masked -> 0, all -inf -> NaN row. Every row goes through phase 1 (:mod:`.phase1`, compiled
    float64, or double-doubles for float64 targets, with a rigorous enclosure) first; the rows it
    leaves undecided through the Ziv loop here.
    """
    return _two_phases(x, dtype, axis, phase1.softmax, _softmax_row)


def log_softmax(x: np.ndarray, dtype=None, axis: int = -1) -> np.ndarray:
    """Correctly rounded ``x_i - logsumexp(x)`` along ``axis`` (masked entries give -inf); two
    phases as :func:`softmax`."""
    return _two_phases(x, dtype, axis, phase1.log_softmax, _log_softmax_row)


def logsumexp(x: np.ndarray, dtype=None, axis: int = -1) -> np.ndarray:
    """Correctly rounded ``log(sum_j exp(x_j))`` along ``axis`` (the axis is removed); two phases
    as :func:`softmax`.

    Overflows to inf exactly when the true value rounds past the format's largest finite number.
    NaN in a row -> NaN; +inf -> +inf; all -inf -> -inf."""
    return _two_phases(x, dtype, axis, phase1.logsumexp, _logsumexp_row, reduces=True)


def jacobian(x: np.ndarray, dtype=None) -> np.ndarray:
    """Correctly rounded Jacobian ``J = diag(y) - y y^T`` of softmax along the last axis.

    ``x`` of shape ``(..., n)`` gives ``(..., n, n)``; ``J[..., i, j] = dy_i/dx_j``. Masked (-inf)
    entries have zero rows and columns; NaN/+inf rows give NaN matrices. Two phases as
    :func:`softmax` (phase 1 through double-doubles for every format)."""
    x_last, fmt, _ = _check_input(x, dtype, -1)
    rows = _rows(x_last)
    out, decided = phase1.jacobian(rows, fmt)
    for i in np.flatnonzero(~decided):
        out[i] = _jacobian_row(rows[i], fmt)
    n = x_last.shape[-1]
    return out.reshape(x_last.shape[:-1] + (n, n)).astype(fmt.dtype)


def vjp(x: np.ndarray, g: np.ndarray, dtype=None, axis: int = -1) -> np.ndarray:
    """Correctly rounded vector-Jacobian product ``J^T g = y * (g - <g, y>)`` along ``axis``
    (``J`` is symmetric, so this is also ``J g``). ``g`` must have ``x``'s shape; it is taken
    exactly. A row whose unmasked ``g`` entries are not all finite is NaN. Two phases as
    :func:`softmax`."""
    axis = _check_input(x, dtype, axis)[2]
    _check_cotangent(g, x, axis)
    return _two_phases(x, dtype, axis, phase1.vjp, _vjp_row, extra=(g,))


def _check_cotangent(g, x, axis):
    """A clear error unless ``g`` is an array of a format here, of ``x``'s shape."""
    if not isinstance(g, np.ndarray) or g.shape != x.shape:
        raise ValueError(
            f"g must be a numpy array of x's shape {x.shape}, got "
            f"{getattr(g, 'shape', type(g).__name__)}"
        )
    _check_input(g, None, axis, name="g")


def warm() -> None:
    """Compile phase 1's numba code, or load it from numba's cache (``phase1.py``), for every
    function but :func:`jacobian` (which compiles its own on its first call): one call each, and
    of :func:`exact`, on a small row (phase 1 computes in float64 for every format). The audit's
    first run has one case worker do this while the others compile kernels, rather than every
    worker compiling the same code on its first case."""
    x = np.array([[0.5, -1.0, 2.0]])
    for function in (softmax, log_softmax, logsumexp):
        function(x)
        exact(function.__name__, x)
    vjp(x, x)
    exact("vjp", x, x)
