"""kernels/warm.py: the first-run notice (compiling, once) appears exactly when this version of
the kernels has no compiled code in its cache folder."""
from softmax_bench.kernels import cache, warm


def test_compile_notice_only_while_the_cache_folder_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_FOLDER", str(tmp_path))
    text = warm.compile_notice(126, 2)
    assert text is not None and "compiling 126 kernels once" in text and "2 cores" in text
    assert str(tmp_path) in text
    expected_min = round(warm.COMPILE_S * 126 / 2 / 60)
    assert f"about {expected_min} min" in text
    # numba's index of a compiled function, in the folder numba makes per source package
    (tmp_path / "kernels_0123abcd").mkdir()
    (tmp_path / "kernels_0123abcd" / "rows-1.py311.nbi").write_bytes(b"")
    assert warm.compile_notice(126, 2) is None


def test_the_real_cache_is_seen_once_a_kernel_is_compiled():
    from softmax_bench.kernels import get_kernel
    import numpy as np

    get_kernel("shifted", "float32")(np.zeros(3, np.float32))  # compiled, or loaded: indexed
    assert warm.compile_notice(126, 2) is None
    assert warm.compile_notice(0, 2) is None and warm.compile_notice(5, 0) is None


def test_no_notice_without_a_cache_folder(monkeypatch):
    monkeypatch.setattr(cache, "CACHE_FOLDER", None)
    assert warm.compile_notice(10, 1) is None
