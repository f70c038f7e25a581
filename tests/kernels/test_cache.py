"""kernels/cache.py: compiled kernels go to a per-user folder keyed by the sources' digest, never
into the package (numba's settings restored after each decoration:
tests/softmax_bench/test_jit.py)."""
import os
import subprocess
import sys
from pathlib import Path

import softmax_bench.kernels as kernels_pkg
from softmax_bench.kernels.cache import CACHE_FOLDER, cached_njit


@cached_njit
def _plus_one(x):
    return x + 1


def test_kernels_cache_outside_the_package_in_a_digest_folder():
    assert CACHE_FOLDER is not None
    folder = Path(CACHE_FOLDER)
    assert len(folder.name) == 16 and int(folder.name, 16) >= 0  # sources' sha256, 16 hex digits
    package = Path(kernels_pkg.__file__).resolve().parent
    assert package not in folder.parents
    assert _plus_one(1) == 2
    assert Path(_plus_one._cache._cache_path).is_relative_to(folder)  # numba's locator took it
    assert list(Path(_plus_one._cache._cache_path).glob("*_plus_one*.nbi"))


def test_numba_cache_dir_is_honoured(tmp_path):
    code = "from softmax_bench.kernels.cache import CACHE_FOLDER; print(CACHE_FOLDER)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)), timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent == tmp_path / "softmax-bench" / "numba"
