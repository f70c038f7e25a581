"""softmax_bench.testing: the assertion passes what is accurate, and its message reproduces the
worst row of what is not."""
import re
from pathlib import Path

import numpy as np
import pytest

from softmax_bench import inputs, reference
from softmax_bench.testing import assert_softmax_accurate, ulp_errors

README_EXAMPLE = Path(__file__).with_name("test_readme_example.py")


def composed(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def correctly_rounded(x):
    return reference.softmax(x)


def test_the_reference_itself_passes_with_zero_ulp():
    assert assert_softmax_accurate(correctly_rounded, "float16", max_ulp=0, sizes=(1, 3, 20)) == 0


def test_the_message_reproduces_the_worst_row():
    with pytest.raises(AssertionError) as exc:
        assert_softmax_accurate(composed, "float32", max_ulp=2, sizes=(10, 100))
    text = str(exc.value)
    err = float(re.search(r"softmax error (\S+) ULP > max_ulp 2 \(float32\)", text).group(1))
    call = re.search(r"reproduce: x = softmax_bench\.(inputs\.make\(.*\)\[\d+\])$", text).group(1)
    x = eval(call, {"inputs": inputs})  # noqa: S307 - the message's own reproducer
    j = int(re.search(r"worst at element (\d+)", text).group(1))
    assert ulp_errors(composed, x[None, :])[0, j] == err > 2
    bits = re.search(r"input bits \[(0x[0-9a-f]{8})", text).group(1)
    assert int(bits, 16) == int(x.view(np.uint32)[0])
    assert "expected" in text and "correctly rounded" in text


def test_nan_where_a_number_is_due_and_a_number_where_nan_is_due_both_fail():
    def naive16(x):
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    with pytest.raises(AssertionError, match="softmax error inf ULP"):
        assert_softmax_accurate(naive16, "float16", max_ulp=1e6, families=["far_positive"], sizes=(4,))

    def clamps_posinf(x):
        return composed(np.minimum(x, np.finfo(x.dtype).max))

    with pytest.raises(AssertionError, match="family posinf"):
        assert_softmax_accurate(clamps_posinf, "float32", max_ulp=1e6, families=["posinf"], sizes=(4,))


def test_wrong_dtype_or_shape_is_an_assertion():
    with pytest.raises(AssertionError, match="returned a float64 array"):
        ulp_errors(lambda x: composed(x.astype(np.float64)), np.ones(3, np.float32))
    with pytest.raises(AssertionError, match=r"shape \(3,\) returned a float32 array of shape \(\)"):
        ulp_errors(lambda x: x.sum(), np.ones(3, np.float32))


def test_the_readme_shows_the_example_that_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert README_EXAMPLE.read_text() in readme
