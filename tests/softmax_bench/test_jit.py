"""softmax_bench/jit.py: one numba cache per package's sources, shared by every install of them."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from numba.core import config

_SOURCE = '''
from pathlib import Path
from softmax_bench.jit import numba_cache

FOLDER, cached_njit = numba_cache(Path(__file__).parent)


@cached_njit
def twice(x):
    return 2 * x
'''

_RUN = '''
import json, pkgx.mod as m
print(json.dumps([m.twice(21), m.FOLDER, sum(m.twice.stats.cache_hits.values()),
                  sum(m.twice.stats.cache_misses.values())]))
'''


def _run_from(root: Path, cache: Path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, env=env,
                         cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_installs_of_the_same_sources_share_compiled_code(tmp_path):
    """The package copied elsewhere (another venv, an editable install against a wheel's) loads
    what the first copy compiled; an edited copy compiles into a folder of its own."""
    first = tmp_path / "a" / "pkgx"
    first.mkdir(parents=True)
    (first / "__init__.py").write_text("")
    (first / "mod.py").write_text(_SOURCE)
    second = tmp_path / "b" / "pkgx"
    shutil.copytree(first, second)
    cache = tmp_path / "cache"

    value, folder, hits, misses = _run_from(first.parent, cache)
    assert (value, hits, misses) == (42, 0, 1)  # compiled
    assert Path(folder).parent == cache / "softmax-bench" / "numba"
    assert list((Path(folder) / "pkgx.mod").glob("mod.twice-*.nbi"))  # by module, not by path

    assert _run_from(second.parent, cache) == [42, folder, 1, 0]  # loaded, not compiled

    (second / "mod.py").write_text(_SOURCE.replace("2 * x", "x + x"))
    value, edited_folder, hits, misses = _run_from(second.parent, cache)
    assert (value, hits, misses) == (42, 0, 1) and edited_folder != folder


def test_numbas_settings_are_restored_after_each_decoration():
    from softmax_bench.kernels.cache import CACHE_FOLDER, cached_njit

    assert CACHE_FOLDER  # (so the decoration below swaps the settings in)
    before = config.CACHE_DIR, config.CACHE_LOCATOR_CLASSES
    cached_njit(lambda x: x)
    assert (config.CACHE_DIR, config.CACHE_LOCATOR_CLASSES) == before
