"""kernels/float8.py against ml_dtypes: every float8 value widened (both formats), and every
float32 narrowed. The narrowing is compared with ml_dtypes on every float32 whose exponent lies
where the rounding is not a constant (from below half the smallest subnormal up to twice the
overflow binade: 3.4e8 values for e4m3fn, 5.7e8 for e5m2, each sign); the rest of the 2**32 are
checked to give the constant they must (a signed zero below, the overflow pattern above, NaN for
NaN), and a sample of them against ml_dtypes too."""
import ml_dtypes
import numba
import numpy as np
import pytest

from softmax_bench.formats import FORMATS
from softmax_bench.kernels import list_kernels
from softmax_bench.kernels.float8 import (decode_e4m3, decode_e5m2, encode_e4m3, encode_e5m2,
                                          float_to_e4m3, float_to_e5m2)

#: name -> (ml_dtypes type, bits view, decode, encode, overflow bits, NaN bits)
CASES = {
    "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, np.uint8, decode_e4m3, encode_e4m3, 0x7F, 0x7F),
    "float8_e5m2": (ml_dtypes.float8_e5m2, np.int8, decode_e5m2, encode_e5m2, 0x7C, 0x7E),
}


@pytest.mark.parametrize("name", CASES)
def test_every_float8_widens_exactly(name):
    dt, view, decode, *_ = CASES[name]
    bits = np.arange(256, dtype=np.uint8).view(view)
    got = decode(bits)
    want = bits.view(dt).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # NaN bits too


def _field_range(name):
    """float32 exponent fields where narrowing to ``name`` is not constant: from the binade of
    half the smallest subnormal to that of the overflow threshold's double."""
    f = FORMATS[name]
    return 127 + f.emin - f.precision, 127 + f.emax + 1


@numba.njit
def _constant_mismatches(lo_field, hi_field, e5m2, over, nan):
    """Count the float32 bit patterns outside exponent fields [lo_field, hi_field] whose encoding
    (e4m3fn, or e5m2 when ``e5m2``) is not the signed zero (below), the overflow pattern (above,
    inf included) or NaN (NaN)."""
    bad = 0
    for sign in (0, 1):
        for field in range(256):
            if lo_field <= field <= hi_field:
                continue
            for frac in range(1 << 23):
                if field == 0xFF and frac != 0:
                    want = nan
                elif field > hi_field:
                    want = over
                else:
                    want = 0
                f = np.uint32((sign << 31) | (field << 23) | frac).view(np.float32)
                got = np.int64(float_to_e5m2(f)) if e5m2 else np.int64(float_to_e4m3(f))
                bad += (got & 0xFF) != (want | (sign << 7))
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_every_float32_narrows_like_ml_dtypes(name):
    dt, view, _, encode, over, nan = CASES[name]
    lo, hi = _field_range(name)
    for sign in (0, 1 << 31):
        for field in range(lo, hi + 1):
            u = np.arange(1 << 23, dtype=np.uint32) | np.uint32(sign | (field << 23))
            f = u.view(np.float32)
            with np.errstate(over="ignore"):
                assert np.array_equal(encode(f), f.astype(dt).view(view)), (sign, field)
    assert _constant_mismatches(lo, hi, name == "float8_e5m2", over, nan) == 0
    sample = np.arange(0, 1 << 32, 65521, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.array_equal(encode(sample), sample.astype(dt).view(view))


@pytest.mark.parametrize("name", CASES)
def test_boundaries(name):
    """Ties at the top and bottom of the range, with their neighbours."""
    dt, view, decode, encode, *_ = CASES[name]
    f = FORMATS[name]
    top = float(f.max_finite)
    edges = [top, f.overflow_boundary, f.smallest_subnormal / 2, f.smallest_subnormal,
             1.5 * f.smallest_subnormal, f.smallest_normal, 1.0 + 2.0**-f.precision, np.inf, np.nan]
    x = np.array(edges, np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(0))])
    x = np.concatenate([x, -x])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(dt)
    assert np.array_equal(encode(x), want.view(view))
    assert np.array_equal(decode(want.view(view)), want.astype(np.float32), equal_nan=True)


E4M3_KERNELS = list_kernels(dtype="float8_e4m3fn")


@pytest.mark.parametrize("spec", E4M3_KERNELS, ids=lambda k: k.id)
def test_e4m3fn_kernels_nan_and_overflow(spec):
    """e4m3fn has no infinity: a NaN spoils its own row only, and an output past 448 (after
    rounding) is NaN, as the reference's and ml_dtypes' rule says (formats.py)."""
    dt = spec.dtype
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], dt)
    args = (x, np.ones_like(x)) if spec.function == "softmax_vjp" else (x,)
    y = spec(*args).astype(np.float32)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert np.array_equal(y[1:], spec(*(a[1:] for a in args)).astype(np.float32))
    if spec.function in ("logsumexp", "log_softmax"):
        wide = np.array([-448.0, 448.0], dt)  # logsumexp 448 + e^-896: rounds to 448
        y = spec(wide).astype(np.float32)
        if spec.algorithm == "naive":  # exp(448) overflows float32 first
            assert np.isnan(y).all()
        elif spec.function == "logsumexp":
            assert y == 448.0
        else:
            assert np.isnan(y[0]) and y[1] == 0.0  # -896 overflows e4m3fn: NaN
