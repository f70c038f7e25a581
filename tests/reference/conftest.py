"""An independent judge for the reference: plain high-level mpmath at high precision, and a
rounding check that asks numpy (with ml_dtypes for bfloat16 and float8) for the neighbouring
floats (np.nextafter) instead of using softmax_bench.formats. It shares no code with reference/
beyond mpmath itself."""
import types

import ml_dtypes
import mpmath
import numpy as np
import pytest


def _finfo(dtype):
    try:
        return np.finfo(dtype)
    except ValueError:  # bfloat16, float8: not numpy's own
        return ml_dtypes.finfo(dtype)


def _toward(dtype, sign):
    """np.nextafter's direction: +-inf, or +-max for e4m3fn, which has no infinity (nextafter
    toward an unrepresentable inf gives NaN there)."""
    big = np.array(np.inf, dtype=dtype)
    if not np.isinf(big):
        big = np.array(_finfo(dtype).max, dtype=dtype)
    return big if sign > 0 else -big


def _neighbours_check(r, exact, dtype, margin):
    """True if float ``r`` (of ``dtype``) is the round-to-nearest-even value of the mpf ``exact``;
    None if ``exact``'s own error ``margin`` could change the verdict (caller raises precision)."""
    rv = np.array(r, dtype=dtype)
    fmax = np.array(_finfo(dtype).max, dtype=dtype)
    # Round-to-nearest overflows past max + ulp(max)/2 (the tie goes to the even side: inf in IEEE
    # formats; e4m3fn's max 448 = 0b1.110 * 2**8 is even, so 464 still rounds to it, and past it
    # the result is NaN: e4m3fn has no infinity).
    below = np.nextafter(fmax, np.array(0, dtype))
    overflow_at = mpmath.mpf(float(fmax)) + (mpmath.mpf(float(fmax)) - mpmath.mpf(float(below))) / 2
    has_inf = bool(np.isinf(np.array(np.inf, dtype=dtype)))
    if np.isnan(rv):
        if has_inf:
            return False
        if abs(abs(exact) - overflow_at) <= margin:
            return None
        return abs(exact) > overflow_at
    if np.isinf(rv):
        return (exact >= overflow_at) if rv > 0 else (exact <= -overflow_at)
    d = abs(exact - mpmath.mpf(float(rv)))
    for sign in (1, -1):
        nb = np.nextafter(rv, _toward(dtype, sign))
        if not np.isfinite(nb) or nb == rv:  # r is +-max: right if exact is short of the overflow point
            if abs(exact) > overflow_at or (has_inf and abs(exact) == overflow_at):
                return False
            continue
        dn = abs(exact - mpmath.mpf(float(nb)))
        if abs(d - dn) <= 2 * margin:
            if margin or d != dn:
                return None  # too close to call at this precision
            if int(rv.view(f"u{rv.itemsize}")) % 2:  # an exact tie: r must be even
                return False
            continue
        if d > dn:
            return False
    return True


def assert_correctly_rounded(result, exact_fn, dtype, start_prec=None, max_prec=1 << 15):
    """``result``: array from the reference; ``exact_fn(prec)`` -> list of mpf (same order as
    ``result.ravel()``) computed at ``prec`` bits with relative error well below 2**(10-prec).
    Starts at 4x the format's precision and doubles while a verdict is too close to call."""
    dtype = np.dtype(dtype)
    t = _finfo(dtype).nmant + 1
    prec = start_prec or 4 * t + 32
    flat = np.asarray(result).ravel()
    pending = list(range(flat.size))
    while pending:
        assert prec <= max_prec, f"oracle could not decide {len(pending)} elements"
        with mpmath.workprec(prec):
            exact = exact_fn(prec)
            undecided = []
            for i in pending:
                # relative error of the exact values, plus an absolute floor for outputs at 0
                # (2**-16384, shrinking past 2**13 bits so that escalation can still decide)
                margin = abs(exact[i]) * mpmath.ldexp(1, 12 - prec) + mpmath.ldexp(1, -max(1 << 14, 2 * prec))
                verdict = _neighbours_check(flat[i], exact[i], dtype, margin)
                if verdict is None:
                    undecided.append(i)
                else:
                    assert verdict, (
                        f"element {i}: reference {flat[i]!r} is not the nearest {dtype} to "
                        f"{mpmath.nstr(exact[i], 30)}"
                    )
        pending = undecided
        prec *= 2


def mp_softmax(row, prec):
    """Exact-ish softmax of a 1-D float row (``-inf`` masked) at ``prec`` bits, high-level mpmath."""
    with mpmath.workprec(prec + 20):
        xs = [mpmath.mpf(float(v)) for v in row]
        m = max(v for v in xs if v != mpmath.ninf)
        e = [mpmath.exp(v - m) if v != mpmath.ninf else mpmath.mpf(0) for v in xs]
        s = mpmath.fsum(e)
        return [ei / s for ei in e]


def mp_log_softmax(row, prec):
    """``x_i - m - log(sum exp(x_j - m))`` at ``prec`` bits; precision grows with |x| so the
    subtraction keeps ``prec`` significant bits."""
    extra = int(max(abs(float(v)) for v in row if np.isfinite(v)) + 2).bit_length()
    with mpmath.workprec(prec + 20 + extra):
        xs = [mpmath.mpf(float(v)) for v in row]
        m = max(v for v in xs if v != mpmath.ninf)
        k = xs.index(m)
        r = mpmath.fsum(mpmath.exp(v - m) for j, v in enumerate(xs) if j != k and v != mpmath.ninf)
        # log(1 + r): for r below 2**-(prec+20) its series r - r**2/2 + r**3/3 - ... is r - r**2/2
        # to far better than the working precision (mpmath's log near 1 is slow at 10^5 bits)
        tiny = r < mpmath.ldexp(1, -(prec + 20))
        lse = m + (r - r * r / 2 if tiny else mpmath.log1p(r))
        return [v - lse if v != mpmath.ninf else mpmath.ninf for v in xs]


@pytest.fixture
def oracle():
    return types.SimpleNamespace(
        assert_correctly_rounded=assert_correctly_rounded,
        softmax=mp_softmax,
        log_softmax=mp_log_softmax,
    )
