"""Binary floating-point formats: the one home of format facts.

Every other part of softmax-bench (the reference, the kernels, the harness) takes unit roundoffs,
overflow and underflow limits, ULP distances and rounding to a format from here and nowhere else.
This module depends only on the standard library, numpy and ml_dtypes.

Conventions: a format has ``precision`` significand bits ``t`` (the implicit bit included) and
normal exponents ``emin..emax``; a normal number is ``m * 2**e`` with ``2**(t-1) <= m < 2**t``.
Rounding is round-to-nearest, ties to even, with gradual underflow; a result beyond the largest
finite value (after rounding) overflows to infinity, or to NaN in a format without one.

Formats: IEEE float16, float32, float64 (numpy) and, from ``ml_dtypes`` (the dtype package behind
JAX), bfloat16 (float32's exponent range, 8 significand bits), float8_e5m2 (IEEE-like, with
infinities) and float8_e4m3fn (no infinity; its all-ones significand at the top exponent is NaN,
so the largest finite value is 448, not 480). e4m3fn overflow gives NaN, as ml_dtypes' cast
does: saturating to 448 instead (what PyTorch's ``.to(torch.float8_e4m3fn)`` does, even from inf)
would hide an overflow from the audit. Exact values up to 464, the tie between 448 and the missing
480, round to 448. Note: ml_dtypes casts float64 to bfloat16 and float8 through float32, a double
rounding (a float64 just past a tie lands on it); from float32 its casts round once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes  # noqa: F401  (registers bfloat16 and float8 with numpy: np.dtype("bfloat16"))
import numpy as np

__all__ = [
    "Format",
    "FORMATS",
    "FLOAT16",
    "FLOAT32",
    "FLOAT64",
    "BFLOAT16",
    "FLOAT8_E4M3FN",
    "FLOAT8_E5M2",
    "format_of",
    "is_format",
    "round_rational",
    "round_float64",
    "ulp",
    "ulp_error",
    "exact_ulp_error",
]


@dataclass(frozen=True)
class Format:
    """Facts about one IEEE 754 binary format."""

    name: str
    precision: int  # significand bits t, implicit bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number
    #: the largest significand at ``emax`` (None: all ones, 2**t - 1; e4m3fn: 0b1110)
    max_significand: int | None = None
    has_inf: bool = True  # False: overflow gives NaN (e4m3fn)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(getattr(ml_dtypes, self.name) if self.name in _ML_DTYPES else self.name)

    def all_values(self) -> np.ndarray:
        """Every bit pattern of the format as an array of it (NaNs and infinities included), in
        bit order: for exhaustive checks of the 8- and 16-bit formats."""
        bits = self.dtype.itemsize * 8
        if bits > 16:
            raise ValueError(f"{self.name} has 2**{bits} values: too many to list")
        return np.arange(2**bits, dtype=f"u{bits // 8}").view(self.dtype)

    @property
    def _top_significand(self) -> int:
        return (1 << self.precision) - 1 if self.max_significand is None else self.max_significand

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-t: the largest relative error of one round-to-nearest operation."""
        return math.ldexp(1.0, -self.precision)

    @property
    def eps(self) -> float:
        """Machine epsilon 2**(1-t): the gap between 1 and the next float."""
        return math.ldexp(1.0, 1 - self.precision)

    @property
    def max_finite(self) -> float:
        return math.ldexp(self._top_significand, self.emax - self.precision + 1)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    @property
    def overflow_boundary(self) -> float:
        """max_finite + ulp/2 = 2**emax * (2 - 2**-t): a correctly rounded result is inf at or above
        this (the exact value at it is a tie, and ties go to the even 'next' value, infinity).
        Returned as a float64, where it is exact for float16 and float32; for float64 it rounds to
        inf, so use :attr:`log_overflow_boundary` instead."""
        return math.ldexp(self._top_significand + 0.5, self.emax - self.precision + 1)

    @property
    def exp_overflow(self) -> float:
        """ln(max_finite): exp(x) exceeds the largest finite number for x above this
        (float16 11.0898, float32 88.7228, float64 709.7827)."""
        top = math.ldexp(self._top_significand, 1 - self.precision)  # max_finite / 2**emax
        return math.log(top) + self.emax * math.log(2.0)

    @property
    def log_overflow_boundary(self) -> float:
        """ln(max_finite + ulp/2): a correctly rounded exp(x) overflows for x above this."""
        top = math.ldexp(self._top_significand + 0.5, 1 - self.precision)
        return math.log(top) + self.emax * math.log(2.0)

    @property
    def exp_underflow(self) -> float:
        """ln(smallest_subnormal / 2): a correctly rounded exp(x) is 0 for x below this
        (float16 -17.33, float32 -103.97, float64 -745.13). exp(x) at a float x is never exactly
        the tie smallest_subnormal/2, since that would need x = k*ln 2 with k an integer."""
        return (self.emin - self.precision) * math.log(2.0)


_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")

FLOAT16 = Format("float16", precision=11, emin=-14, emax=15)
FLOAT32 = Format("float32", precision=24, emin=-126, emax=127)
FLOAT64 = Format("float64", precision=53, emin=-1022, emax=1023)
BFLOAT16 = Format("bfloat16", precision=8, emin=-126, emax=127)
FLOAT8_E4M3FN = Format("float8_e4m3fn", precision=4, emin=-6, emax=8, max_significand=0b1110, has_inf=False)
FLOAT8_E5M2 = Format("float8_e5m2", precision=3, emin=-14, emax=15)
FORMATS: dict[str, Format] = {
    f.name: f for f in (FLOAT16, FLOAT32, FLOAT64, BFLOAT16, FLOAT8_E4M3FN, FLOAT8_E5M2)
}


def format_of(dtype) -> Format:
    """The :class:`Format` of a numpy dtype, dtype name, array or Format.

    Raises TypeError for anything that is not one of :data:`FORMATS`."""
    if isinstance(dtype, Format):
        return dtype
    if isinstance(dtype, str) and dtype in FORMATS:
        return FORMATS[dtype]
    if isinstance(dtype, np.ndarray):
        dtype = dtype.dtype
    try:
        name = np.dtype(dtype).name
    except TypeError as err:
        raise TypeError(f"not a floating-point format: {dtype!r}") from err
    if name not in FORMATS:
        raise TypeError(f"unsupported dtype {name!r}: softmax-bench handles {', '.join(FORMATS)}")
    return FORMATS[name]


def is_format(dtype) -> bool:
    """Whether ``dtype`` is one of :data:`FORMATS` (bfloat16 and e4m3fn have numpy kind 'V', so
    ``dtype.kind == 'f'`` is not the test)."""
    try:
        format_of(dtype)
    except TypeError:
        return False
    return True


def round_rational(num: int, den: int, fmt) -> float:
    """Round the exact rational ``num/den`` to ``fmt``: round-to-nearest-even, gradual underflow,
    overflow to inf (NaN in a format without infinities) when the rounded value passes the
    largest finite one. Returns a Python float holding the rounded value exactly (every value of
    every format here is a float64). A zero result keeps the sign of ``num/den`` (IEEE: an
    underflow to zero is signed like the exact value); ``num == 0`` gives +0.0.

    Pure integer arithmetic, so it rounds an mpmath value (``man * 2**exp``) or any Fraction
    exactly, whatever its size.
    """
    fmt = format_of(fmt)
    if den <= 0:
        if den == 0:
            raise ZeroDivisionError("round_rational: zero denominator")
        num, den = -num, -den
    if num == 0:
        return 0.0
    negative = num < 0
    num = -num if negative else num
    # E = floor(log2(num/den)), from bit lengths then one correction.
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    q = max(e, fmt.emin) - (fmt.precision - 1)  # exponent of the quantum (ulp) at this value
    n2, d2 = (num, den << q) if q >= 0 else (num << -q, den)
    k, r = divmod(n2, d2)
    if 2 * r > d2 or (2 * r == d2 and k & 1):
        k += 1
    top_q = fmt.emax - fmt.precision + 1  # the quantum at the top binade
    top = fmt._top_significand
    if k and (k << (q - top_q) if q >= top_q else k) > (top if q >= top_q else top << (top_q - q)):
        if not fmt.has_inf:
            return math.nan
        return -math.inf if negative else math.inf
    value = math.ldexp(k, q)  # exact: k < 2**t and k * 2**q is a float of fmt
    return -value if negative else value


def round_fraction(x: Fraction | int, fmt) -> float:
    """:func:`round_rational` for a Fraction or int."""
    x = Fraction(x)
    if x == 0:
        return 0.0
    return round_rational(x.numerator, x.denominator, fmt)


def round_float64(v, fmt) -> np.ndarray:
    """Each float64 of ``v`` rounded once to ``fmt`` (round-to-nearest-even, gradual underflow,
    overflow to inf, or NaN in a format without one, when the rounded value passes the largest
    finite), returned as float64 holding the rounded values exactly; zeros keep their sign, NaN
    stays NaN. Vectorised (``v / ulp`` is an exact power-of-two scaling, ``np.rint`` rounds half
    to even), so it never rounds twice as ml_dtypes' float64 casts do (through float32)."""
    fmt = format_of(fmt)
    v = np.asarray(v, dtype=np.float64)
    if fmt.precision == 53:
        return v.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        q = ulp(v, fmt)
        r = np.where(np.isfinite(v), np.rint(v / q) * q, v)
        over = np.abs(r) > fmt.max_finite
    r = np.where(over, np.copysign(np.inf, v) if fmt.has_inf else np.nan, r)
    return np.copysign(r, v)  # a zero keeps the sign of what rounded to it


#: float64 bit fields: the exponent (2**floor(log2|v|) for a normal ``v``: its bits with the
#: sign and significand cleared) and the significand.
_EXPONENT_BITS = np.int64(0x7FF0000000000000)
_SIGNIFICAND_BITS = np.int64(0x000FFFFFFFFFFFFF)


def _spacing(power, fmt) -> np.ndarray:
    """The spacing of ``fmt`` in the binade of ``power`` (a float64 array of powers of two,
    ``2**E``; 0 at and below the subnormal range; inf for a non-finite value), computed in place:
    ``2**(max(E, emin) - t + 1)`` (exact: the product is 0 or at least ``2**-1074``), inf for inf."""
    power *= 2.0 ** (1 - fmt.precision)
    return np.maximum(power, 2.0 ** (fmt.emin - fmt.precision + 1), out=power)


def ulp(x, dtype=None) -> np.ndarray:
    """The spacing of format ``dtype`` at the magnitude of ``x``: 2**(max(E, emin) - t + 1) with
    ``E = floor(log2|x|)``. At 0 and in the subnormal range it is the smallest subnormal; at inf it
    is the spacing just below inf; NaN gives NaN. Returned as float64 (exact). From the float64
    exponent bits, in place: on a 160,000-element case 0.2-0.3 ms where ``np.frexp`` and
    ``np.ldexp`` took 7-10 ms (this runs on every output of every audited implementation)."""
    x = np.asarray(x)
    fmt = format_of(x.dtype if dtype is None else dtype)
    bits = x.astype(np.float64).view(np.int64)
    bits &= _EXPONENT_BITS
    spacing = _spacing(bits.view(np.float64), fmt)
    special = np.isinf(spacing)  # inf and NaN (their exponent bits are all ones) only
    if special.any():
        top = 2.0 ** (fmt.emax - fmt.precision + 1)
        spacing = np.where(special, np.where(np.isnan(x.astype(np.float64)), np.nan, top), spacing)
    return spacing


def ulp_error(computed, exact, dtype=None) -> np.ndarray:
    """Error of ``computed`` in ULPs of the exact value's format: ``|computed - exact| / ulp(exact)``.

    ``exact`` is the correctly rounded reference (or a wider-precision value); ``dtype`` names the
    format whose ULP is the unit (default: ``computed``'s dtype). Defined for every pair:

    - both NaN -> 0; one NaN -> inf (a NaN where a number was due, or the reverse);
    - equal infinities -> 0; any other pair involving an infinity -> inf;
    - exact 0 -> the error in smallest-subnormal steps (so a spurious non-zero shows);
    - subnormal exact -> the subnormal spacing, the format's real resolution there;
    - +0 and -0 are equal (error 0).

    Computed in float64: for float16 and float32 operands the difference is exact; for float64 it
    carries a relative error of 2**-53 in the count, which no threshold here is sensitive to.
    An error too large for float64 is reported as inf.
    """
    computed = np.asarray(computed)
    exact = np.asarray(exact)
    fmt = format_of(computed.dtype if dtype is None else dtype)
    c = np.asarray(computed, dtype=np.float64)  # (no copy of float64 operands: read only here)
    x = np.asarray(exact, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(c - x) / ulp(x, fmt)
    both_nan = np.isnan(c) & np.isnan(x)
    one_nan = np.isnan(c) ^ np.isnan(x)
    same_inf = np.isinf(c) & np.isinf(x) & (c == x)
    err = np.where(one_nan | (np.isinf(c) | np.isinf(x)), np.inf, err)
    return np.where(both_nan | same_inf, 0.0, err)


def exact_ulp_error(computed, exact_hi, exact_lo, rounded, dtype=None) -> np.ndarray:
    """Error of ``computed`` in ULPs of the *exact* value ``v = exact_hi + exact_lo`` (a
    double-double, ``reference.exact``), fractional: below 0.5 exactly where ``computed`` is the
    correctly rounded value, below 1 where it is faithful (one of the two format numbers around
    ``v``).

    ULP as libm audits take it (Zimmermann's "Accuracy of mathematical functions", CORE-MATH):
    ``ulp(v) = 2**(max(E, emin) - t + 1)`` with ``2**E <= |v| < 2**(E+1)``, the binade of the
    exact value (so just below a power of two the unit is the smaller spacing there); at
    ``v = 0`` and in the subnormal range the smallest subnormal. Non-finite ``computed`` or a
    non-finite ``v`` (NaN rows, masked log outputs, an overflow): 0 where ``computed`` equals
    ``rounded`` (the correctly rounded reference: the same NaN, infinity or largest value), inf
    otherwise. ``dtype``: the format of the unit (default ``computed``'s)."""
    computed = np.asarray(computed)
    fmt = format_of(computed.dtype if dtype is None else dtype)
    c = np.asarray(computed, dtype=np.float64)  # (read only here: no copy of float64 operands)
    hi = np.asarray(exact_hi, dtype=np.float64)
    lo = np.asarray(exact_lo, dtype=np.float64)
    r = np.asarray(rounded, dtype=np.float64)
    hi_bits, lo_bits = hi.view(np.int64), lo.view(np.int64)  # (same item size: any layout)
    power = np.asarray(hi_bits & _EXPONENT_BITS).view(np.float64)  # 2**E: the binade of |hi|
    # v just below a power of two (|hi| one, lo of the other sign: sign bits compared, as the
    # product of 0.5 and a lo of 2**-1074 underflows to 0): the binade under it
    below = ((hi_bits & _SIGNIFICAND_BITS) == 0) & ((hi_bits ^ lo_bits) < 0) & (lo != 0)
    unit = _spacing(np.multiply(power, 0.5, out=power, where=below), fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs((c - hi) - lo) / unit
    finite = np.isfinite(c) & np.isfinite(hi) & np.isfinite(r)
    if finite.all():
        return np.asarray(err)
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    return np.where(finite, err, np.where(same, 0.0, np.inf))
