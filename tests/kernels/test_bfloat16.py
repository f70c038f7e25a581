"""kernels/bfloat16.py against ml_dtypes, exhaustively: every bfloat16 value widened, every
float32 value narrowed (round-to-nearest-even, gradual underflow, overflow to inf), and the
single rounding from float64."""
import ml_dtypes
import numpy as np
import pytest

from softmax_bench.kernels.bfloat16 import decode_bf16, encode_bf16, round64_to_bf16

BF16 = ml_dtypes.bfloat16


def test_every_bfloat16_widens_exactly():
    bits = np.arange(65536, dtype=np.uint16).view(np.int16)
    got = decode_bf16(bits)
    want = bits.view(BF16).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # NaN payloads too


@pytest.mark.slow
def test_every_float32_narrows_like_ml_dtypes():
    """All 2**32 float32 bit patterns in 64 chunks (about 35 s); NaN: any quiet NaN of the same
    sign (payloads are not compared)."""
    for chunk in range(64):
        f = np.arange(chunk << 26, (chunk + 1) << 26, dtype=np.uint32).view(np.float32)
        got = encode_bf16(f)
        with np.errstate(invalid="ignore"):
            want = f.astype(BF16).view(np.int16)
        nan = np.isnan(f)
        assert np.array_equal(got[~nan], want[~nan]), chunk
        back = got[nan].view(BF16).astype(np.float32)
        assert np.isnan(back).all() and np.array_equal(np.signbit(back), np.signbit(f[nan])), chunk


def test_float64_rounds_once():
    """Just past a bfloat16 tie: once-rounded goes up; ml_dtypes (through float32) goes to even."""
    tie = 1.0 + 2.0**-8
    assert round64_to_bf16(np.nextafter(tie, 2.0)) == np.float32(1.0 + 2.0**-7)
    assert round64_to_bf16(np.nextafter(tie, 0.0)) == np.float32(1.0)
    assert round64_to_bf16(tie) == np.float32(1.0)  # an exact tie: to even
    assert np.isinf(round64_to_bf16(3.5e38)) and round64_to_bf16(-1e-45) == 0.0
