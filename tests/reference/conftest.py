"""An independent judge for the reference: plain high-level mpmath at high precision, and a
rounding check that asks numpy for the neighbouring floats (np.nextafter) instead of using
softmax_bench.formats. It shares no code with reference/ beyond mpmath itself."""
import types

import mpmath
import numpy as np
import pytest


def _neighbours_check(r, exact, dtype, margin):
    """True if float ``r`` (of ``dtype``) is the round-to-nearest-even value of the mpf ``exact``;
    None if ``exact``'s own error ``margin`` could change the verdict (caller raises precision)."""
    rv = np.array(r, dtype=dtype)
    if np.isnan(rv):
        return False
    fmax = np.finfo(dtype).max
    # Round-to-nearest overflows at max + ulp(max)/2 (the tie goes to inf).
    overflow_at = mpmath.mpf(float(fmax)) + (mpmath.mpf(float(fmax)) - mpmath.mpf(float(np.nextafter(fmax, np.array(0, dtype))))) / 2
    if np.isinf(rv):
        return (exact >= overflow_at) if rv > 0 else (exact <= -overflow_at)
    d = abs(exact - mpmath.mpf(float(rv)))
    for direction in (np.inf, -np.inf):
        nb = np.nextafter(rv, np.array(direction, dtype=dtype))
        if not np.isfinite(nb):  # r is +-max: it is right if exact is short of the overflow point
            if abs(exact) >= overflow_at:
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


def assert_correctly_rounded(result, exact_fn, dtype, start_prec=None):
    """``result``: array from the reference; ``exact_fn(prec)`` -> list of mpf (same order as
    ``result.ravel()``) computed at ``prec`` bits with relative error well below 2**(10-prec).
    Starts at 4x the format's precision and doubles while a verdict is too close to call."""
    dtype = np.dtype(dtype)
    t = np.finfo(dtype).nmant + 1
    prec = start_prec or 4 * t + 32
    flat = np.asarray(result).ravel()
    pending = list(range(flat.size))
    while pending:
        assert prec <= 1 << 15, f"oracle could not decide {len(pending)} elements"
        with mpmath.workprec(prec):
            exact = exact_fn(prec)
            undecided = []
            for i in pending:
                margin = abs(exact[i]) * mpmath.ldexp(1, 12 - prec) + mpmath.ldexp(1, -(1 << 14))
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
        lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in xs if v != mpmath.ninf))
        return [v - lse if v != mpmath.ninf else mpmath.ninf for v in xs]


@pytest.fixture
def oracle():
    return types.SimpleNamespace(
        assert_correctly_rounded=assert_correctly_rounded,
        softmax=mp_softmax,
        log_softmax=mp_log_softmax,
    )
