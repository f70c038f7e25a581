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
    (tmp_path / "rows-1.py311.nbi").write_bytes(b"")  # numba's index of a compiled function
    assert warm.compile_notice(126, 2) is None


def test_no_notice_without_a_cache_folder(monkeypatch):
    monkeypatch.setattr(cache, "CACHE_FOLDER", None)
    assert warm.compile_notice(10, 1) is None
