"""softmax_bench/jit.py: one numba cache per package's sources, shared by every install of them."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _run_from(root: Path, cache: Path, run: str = _RUN):
    """What ``run`` prints (JSON), run in a subprocess (a crash stays there) from ``root`` with
    numba's cache in ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env,
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


_CALLERS_ONLY_SOURCE = '''
from pathlib import Path
from softmax_bench.jit import numba_cache

FOLDER, cached_njit = numba_cache(Path(__file__).parent)


@cached_njit(compiled_callers_only=True)
def plus_one(x):
    return x + 1


@cached_njit
def twice_plus_one(x):
    return 2 * plus_one(x)
'''

_CALLERS_ONLY_RUN = '''
import json, pkgy.mod as m
from softmax_bench.jit import call_from_python
value = m.twice_plus_one(20)  # compiles plus_one(int64) without the wrapper Python would call
try:
    m.plus_one(1)
    refused = None
except TypeError as e:
    refused = str(e)
print(json.dumps([value, call_from_python(m.plus_one, 41), refused,
                  m.plus_one.targetoptions["no_cpython_wrapper"],
                  sum(m.twice_plus_one.stats.cache_hits.values()),
                  [type(c.library).__name__ for c in m.plus_one.overloads.values()]]))
'''


def _compiled_then_loaded(tmp_path, name, source, run):
    """What ``run`` prints (:func:`_run_from`) in two processes sharing a numba cache, for a
    package ``name`` whose module ``mod`` is ``source``: the first compiles, the second loads."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(source)
    for _ in range(2):
        yield _run_from(tmp_path, tmp_path / "cache", run)


def test_a_compiled_callers_only_function_is_refused_from_python_not_a_crash(tmp_path):
    """A ``compiled_callers_only`` function has no Python wrapper: numba code calls it (and
    ``call_from_python``), a call from Python raises TypeError (the missing wrapper would have
    crashed the process: hence a subprocess), and its caller is cached as any other. Its code is
    linked into its callers only (no machine code, no cache files of its own): the caller loaded
    from the cache runs without it."""
    for hits, printed in enumerate(_compiled_then_loaded(tmp_path, "pkgy", _CALLERS_ONLY_SOURCE,
                                                         _CALLERS_ONLY_RUN)):
        value, via_numba, refused, no_wrapper, cache_hits, libraries = printed
        assert (value, via_numba, no_wrapper, cache_hits) == (42, 42, True, hits)
        assert refused and "pkgy.mod.plus_one is compiled for calls from numba code only" in refused
        # plus_one(int64), compiled for twice_plus_one (first run) and call_from_python
        assert libraries == ["LinkedOnlyLibrary"]
        indexes = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.nbi"))
        assert indexes == ["mod.twice_plus_one"]


_OVERLOAD_SOURCE = '''
from pathlib import Path
from softmax_bench.jit import linked_only_overload, numba_cache

FOLDER, cached_njit = numba_cache(Path(__file__).parent)


def add_two(x):
    """a stub for numba code"""


@linked_only_overload(add_two)
def _ov_add_two(x):
    def impl(x):
        return x + 2
    return impl


@cached_njit
def caller(x):
    return 2 * add_two(x)
'''

_RECORDING_LINKED_ONLY = '''
import json
from softmax_bench import jit
made = []  # the names of the LinkedOnlyLibrary made
_init = jit.LinkedOnlyLibrary.__init__
def init(self, codegen, name):
    made.append(name)
    _init(self, codegen, name)
jit.LinkedOnlyLibrary.__init__ = init
'''

_OVERLOAD_RUN = _RECORDING_LINKED_ONLY + '''
import pkgz.mod as m
print(json.dumps([m.caller(20), made, sum(m.caller.stats.cache_hits.values())]))
'''


def test_a_linked_only_overload_compiles_into_a_linked_only_library(tmp_path):
    """An ``@linked_only_overload`` implementation is compiled into a LinkedOnlyLibrary (no
    machine code of its own), its caller runs it and is cached as any other: loaded in a second
    process, nothing is compiled again."""
    for hits, printed in enumerate(_compiled_then_loaded(tmp_path, "pkgz", _OVERLOAD_SOURCE,
                                                         _OVERLOAD_RUN)):
        value, made, cache_hits = printed
        assert (value, cache_hits) == (44, hits)
        assert made == ([] if hits else ["_ov_add_two.<locals>.impl"])


_PARFOR_SOURCE = '''
from pathlib import Path
from numba import prange
from softmax_bench.jit import numba_cache

FOLDER, cached_njit = numba_cache(Path(__file__).parent)


@cached_njit(parallel=True)
def squares(x):
    out = x.copy()
    for i in prange(x.size):
        out[i] = x[i] * x[i]
    return out
'''

_PARFOR_RUN = _RECORDING_LINKED_ONLY + '''
import numpy as np
import pkgp.mod as m
x = np.arange(1000.0)
right = bool(np.array_equal(m.squares(x), x * x))
kinds = [next(i for i, p in enumerate(jit._PARFOR_LIBRARIES) if n.startswith(p)) for n in made]
print(json.dumps([right, kinds, sum(m.squares.stats.cache_hits.values())]))
'''


def test_a_prange_loop_is_compiled_once_in_the_function_that_runs_it(tmp_path):
    """The three libraries numba makes for a ``prange`` loop (the body, its gufunc wrapper, the
    threads' wrapper) are linked only (no machine code, no optimisation of their own): the
    function with the loop computes the same, and loads from the cache in a second process. A
    numba that names them otherwise fails here (its kernels would compile slower, not wrongly)."""
    for hits, printed in enumerate(_compiled_then_loaded(tmp_path, "pkgp", _PARFOR_SOURCE,
                                                         _PARFOR_RUN)):
        right, kinds, cache_hits = printed
        assert right and cache_hits == hits
        assert kinds == ([] if hits else [0, 1, 2])


def test_numbas_llvm_lock_events_are_off_while_a_kernel_compiles_and_back_after():
    """numba's callbacks on llvmlite's lock (an event per llvmlite call, for timings nothing
    reads) are taken out for the compile of a ``cached_njit`` function only."""
    from llvmlite.binding import ffi
    from numba import njit, types
    from numba.extending import intrinsic

    from softmax_bench.jit import _ParforsLinkedOnlyCompiler

    def numba_callbacks():
        return [a for a, _ in ffi.lib._lock._cblist if a.__module__ == "numba.core.base"]

    seen = []

    @intrinsic
    def record(typingctx, x):
        def codegen(context, builder, signature, args):
            seen.append(len(numba_callbacks()))  # while the function is lowered
            return args[0]
        return types.float64(types.float64), codegen

    before = numba_callbacks()
    assert before, "numba registers a callback on llvmlite's lock (numba.core.base)"
    plain = njit(lambda x: record(x))
    ours = njit(pipeline_class=_ParforsLinkedOnlyCompiler)(lambda x: record(x))
    assert plain(1.5) == ours(1.5) == 1.5
    assert seen == [len(before), 0]
    assert numba_callbacks() == before


@pytest.mark.skipif(not sys.platform.startswith("linux") or sys.version_info >= (3, 13),
                    reason="CPython 3.11 and 3.12 map a stack chunk afresh at each crossing of its "
                           "edge (python/cpython#142183); ru_minflt counts the page faults on Linux")
def test_a_recursion_on_a_large_stack_chunk_maps_no_chunks_as_it_crosses_their_edges():
    """``call_on_a_large_stack_chunk`` (the compile of every kernel runs on it): a recursion that
    goes back and forth across the 16 KB chunks' edges page-faults in a fresh chunk at each
    crossing, and none on the large chunk."""
    import resource

    from softmax_bench.jit import call_on_a_large_stack_chunk

    def down(n):
        return 0 if n == 0 else down(n - 1) + 1

    def sweep():  # some of these depths end just past a chunk's edge, wherever the edges are
        for depth in range(400):
            for _ in range(20):
                down(depth)

    def faults(call):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        call()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    plain = faults(sweep)
    large = faults(lambda: call_on_a_large_stack_chunk(sweep))
    assert plain > 1000 and large * 20 < plain, (plain, large)
    assert call_on_a_large_stack_chunk(divmod, 7, 2) == (3, 1)
