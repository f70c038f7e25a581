"""Where numba keeps compiled code: a per-user cache folder per source package, never inside it.

numba's ``cache=True`` writes beside the source by default (``__pycache__``). In an installed
package those files outlive ``pip uninstall`` (pip did not write them), and a later
``pip install -e .`` then finds ``site-packages/softmax_bench/kernels`` as an empty namespace
package that shadows the editable install. numba also checks a cached function against its own
source file only, so a kernel would keep code it inlined from an edited ``exp.py``. So a package
of numba code (``kernels/``, the reference's phase 1) decorates its functions with the
``cached_njit`` of :func:`numba_cache`, which compiles into

    <cache>/numba/<first 16 hex digits of the sha256 of that package's sources>

where ``<cache>`` is the per-user cache folder of ``platformdirs`` (``~/.cache/softmax-bench`` on
Linux), or ``$NUMBA_CACHE_DIR/softmax-bench`` when that is set. An edit of any file of the package
gives a new folder; installs of the same sources share one, compiled code included: inside it a
function's files go to a sub-folder named by its module (:class:`PackageCacheLocator`), where
numba's own locator names it by the source file's absolute path, so that an editable install, a
wheel install and a venv elsewhere each compiled every kernel again (minutes; three times in a
CI run). numba fixes a function's cache location when its decorator runs, so the settings are
swapped in for that moment only: no other numba function in the process is affected. Where the
folder cannot be made, numba's default applies.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import types
from pathlib import Path
from typing import Callable

from llvmlite.binding import ffi as llvm_ffi
from numba import njit
from numba.core import config
from numba.extending import overload
from numba.core.caching import UserProvidedCacheLocator
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler import Compiler
from numba.core.registry import CPUDispatcher

__all__ = ["numba_cache", "PackageCacheLocator", "CompiledCallersOnly", "LinkedOnlyLibrary",
           "linked_only_overload", "call_from_python"]


class PackageCacheLocator(UserProvidedCacheLocator):
    """numba's locator of a function's cache files in ``config.CACHE_DIR`` (the package's digest
    folder while :func:`numba_cache`'s decorator runs), at the same place wherever the package
    is installed: the sub-folder is the module's name, and the freshness stamp the source's
    sha256 (as numba >= 0.68 does; 0.62-0.67 used the file's mtime, which an install changes).
    numba picks it by name from ``config.CACHE_LOCATOR_CLASSES`` (numba >= 0.62, hence the floor
    in pyproject.toml)."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(config.CACHE_DIR, py_func.__module__)

    def get_source_stamp(self):
        st = os.stat(self._py_file)
        return _source_sha256(self._py_file, st.st_mtime, st.st_size)


class LinkedOnlyLibrary(JITCodeLibrary):
    """numba's code library for a function that only numba code calls, finalised for linking
    only: its callers link its LLVM module (as they link every callee's) and optimise and compile
    the whole once; its own module is neither optimised nor turned into machine code, which
    nothing would ever run. numba finalises every function's library in full, so a kernel's row
    code was optimised and compiled once per helper level it passes through (the rows schedule,
    the bundles, one row, ...) and again in the entry point: with its helpers linked only, the
    default audit's 98 kernels compiled in 106 s instead of 145 s (two processes, Zen 4), and the
    kernels ran as fast (an entry point's code is optimised once where it was optimised at every
    level; the outputs are the same bits, no fast-math flag being set anywhere). Not cached
    (numba caches a function as object code): a process that compiles a kernel compiles its
    helpers with it (cheap, now), and one that loads a kernel loads its entry point's machine
    code only."""

    def _optimize_final_module(self):
        pass  # the callers' libraries optimise this module, linked into theirs

    def _finalize_final_module(self):
        self._finalize_dynamic_globals()
        self._verify_declare_only_symbols()
        self._finalized = True  # (no machine code: not added to numba's execution engine)

    def get_pointer_to_function(self, name):
        self._ensure_finalized()
        return 0  # (numba asks for the Python wrapper's address, 0 without one)

    @property
    def codegen(self):
        return _EnvironmentLessCodegen(self._codegen)


class _EnvironmentLessCodegen:
    """numba's codegen, but for ``set_env``: numba stores a function's environment (the Python
    objects of object-mode code) at the address of a global in the machine code, which a
    :class:`LinkedOnlyLibrary` does not have (and a nopython function never reads)."""

    def __init__(self, codegen):
        self._codegen = codegen

    def set_env(self, env_name, env):
        pass

    def __getattr__(self, name):
        return getattr(self._codegen, name)


#: The names of the code libraries numba makes for a ``prange`` loop (``parfors/parfor_lowering.py``,
#: ``np/ufunc/wrappers.py``, ``np/ufunc/parallel.py``): the loop's body as a function, its gufunc
#: wrapper, the wrapper its threads call; each links the one before, the function with the loop
#: links the last.
_PARFOR_LIBRARIES = ("__numba_parfor_gufunc", "<numba.np.ufunc.wrappers._GufuncWrapper",
                     "parallelgufuncwrapper")


class _ParforsLinkedOnlyCompiler(Compiler):
    """numba's compiler, the libraries of the ``prange`` loops of what it compiles (and of what
    that compiles in turn) made :class:`LinkedOnlyLibrary`: numba finalises each in full, so a
    loop's body was optimised and compiled to machine code four times (itself, twice wrapped,
    and in the function with the loop), where it runs once, in that function. The default
    audit's 98 kernels and the reference's phase 1, two processes, empty cache, Zen 3: 461 ->
    298 s of CPU (232 -> 150 s wall); the same bytes out (70 kernels, 1 and 2 threads, 8,400
    arrays); the machine code differs only in the loop over a thread's chunks, as fast (in-process
    A/B, 2 threads: 0.97-1.02). A name numba no longer uses only costs that time again."""

    def compile_extra(self, func):
        codegen = self.state.targetctx.codegen()
        if "create_library" in vars(codegen):  # inside such a compile: in place already
            return super().compile_extra(func)

        def create_library(name, **kwargs):
            if name.startswith(_PARFOR_LIBRARIES):
                return LinkedOnlyLibrary(codegen, name, **kwargs)
            return type(codegen).create_library(codegen, name, **kwargs)

        codegen.create_library = create_library  # (numba compiles under its global lock)
        try:
            with _no_llvm_lock_events():
                return call_on_a_large_stack_chunk(super().compile_extra, func)
        finally:
            del codegen.create_library


def _call(fn, *args):
    return fn(*args)


#: ``fn(*args)`` from a frame with 65,536 more (unused) slots of value stack. CPython 3.11 keeps
#: its frames in 16 KB chunks: a call that does not fit maps a new chunk (``mmap``), which is
#: unmapped as soon as that call returns, so a recursion that goes back and forth across a
#: chunk's edge maps and unmaps it each time (python/cpython#142183, fixed in 3.13 and 3.14 by
#: keeping one chunk). numba's compiler does: 9,300 ``mmap``/``munmap`` pairs a kernel, each with
#: its page faults, and, once a process runs threads, the kernel's TLB shootdowns. This frame
#: gets a chunk of its own, 1 MB, half of it free: the compile's recursion stays inside. The
#: default audit's kernels and reference, two processes, empty cache, Zen 3: 138.6 -> 125.1 s
#: wall, 273 -> 247 s of CPU (24.7 -> 7.6 s of it in the kernel; 2.2 -> 0.6 million page faults).
call_on_a_large_stack_chunk = types.FunctionType(
    _call.__code__.replace(co_stacksize=_call.__code__.co_stacksize + (1 << 16)), globals(),
    "call_on_a_large_stack_chunk")


@contextlib.contextmanager
def _no_llvm_lock_events():
    """numba's callbacks on llvmlite's lock taken out for the moment: numba broadcasts an event
    as it takes and releases that lock around each of the tens of thousands of llvmlite calls a
    kernel's compile makes (for the "llvm_lock" time of a dispatcher's compile metadata, which
    nothing here reads), and those events were 7% of the compile's samples (py-spy, 28 float32
    kernels). Other callbacks stay."""
    numba_callbacks = [(acquire, release) for acquire, release
                       in getattr(getattr(llvm_ffi.lib, "_lock", None), "_cblist", ())
                       if getattr(acquire, "__module__", None) == "numba.core.base"]
    for callbacks in numba_callbacks:
        llvm_ffi.unregister_lock_callback(*callbacks)
    try:
        yield
    finally:
        for callbacks in numba_callbacks:
            llvm_ffi.register_lock_callback(*callbacks)


class _LinkedOnlyCompiler(_ParforsLinkedOnlyCompiler):
    """numba's compiler, with a :class:`LinkedOnlyLibrary` for the function it compiles."""

    def compile_extra(self, func):
        self.state.library = LinkedOnlyLibrary(self.state.targetctx.codegen(), func.__qualname__)
        return super().compile_extra(func)


class CompiledCallersOnly(CPUDispatcher):
    """numba's dispatcher for a function that only numba code calls (a kernel's helpers, inlined
    into its entry point): compiled without the wrappers that let Python call it (numba's
    ``no_cpython_wrapper``/``no_cfunc_wrapper``, as numba compiles its own ``@overload``
    implementations), which were a quarter of a kernel's compile time, and into a
    :class:`LinkedOnlyLibrary`. A call from Python, which would jump to the missing wrapper and
    crash the process, raises TypeError instead; a test calls it through
    :func:`call_from_python`."""

    def __init__(self, py_func, locals, targetoptions):
        super().__init__(py_func, locals=locals, targetoptions=targetoptions,
                         pipeline_class=_LinkedOnlyCompiler)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.py_func.__module__}.{self.py_func.__qualname__} is compiled for "
                        "calls from numba code only: call_from_python(f, *args) calls it")


def linked_only_overload(func, **kwargs):
    """numba's ``@overload``, its implementations compiled into a :class:`LinkedOnlyLibrary` as a
    :class:`CompiledCallersOnly` helper is: numba otherwise optimises an overload's implementation
    and compiles it to machine code of its own, which nothing runs (callers link and inline it).
    The kernels' option switches and passes use it: the default audit's 98 kernels compiled in
    226 s on two processes (416 s of CPU) instead of 258 s (491 s), Zen 3, empty cache, the same
    bits. Not for what a bundle of short rows runs once per row (the element operations of
    :mod:`softmax_bench.kernels.arith`, eight of :mod:`softmax_bench.kernels.passes`): reaching
    their callers unoptimised, those were inlined worse, and bundles of 16-term rows ran 1.07-1.25x
    slower."""
    return overload(func, jit_options={"pipeline_class": _LinkedOnlyCompiler}, **kwargs)


@njit
def call_from_python(f, *args):
    """``f(*args)`` from numba code, for a :class:`CompiledCallersOnly` function ``f`` (numba
    compiles this once per ``f`` and argument types; not cached, as it names ``f``)."""
    return f(*args)


@functools.lru_cache(maxsize=None)
def _source_sha256(path: str, mtime: float, size: int) -> str:
    """The sha256 of a source file, read once per version of it (as numba's own stamp: a kernels
    import decorates 172 functions in 14 files)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _folder(package: Path) -> str | None:
    digest = hashlib.sha256()
    if package.is_file():
        root, files = package.parent, [package]
    else:
        root, files = package, sorted(package.rglob("*.py"))
    for p in files:
        digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    if os.environ.get("NUMBA_CACHE_DIR"):
        base = Path(os.environ["NUMBA_CACHE_DIR"]) / "softmax-bench"
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("softmax-bench"))
    folder = base / "numba" / digest.hexdigest()[:16]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


def numba_cache(package) -> tuple[str | None, Callable]:
    """``(folder, cached_njit)`` for the package folder ``package`` (or one module file, for
    numba code that calls nothing outside it: the folder of ``softmax_bench`` itself would hold
    ``kernels/`` and ``reference/`` in a wheel install and not in the source tree, two digests
    for one source): ``cached_njit`` is
    ``numba.njit(cache=True, **options)`` compiling into ``folder`` (None: numba's default
    location; its ``prange`` loops compiled once: :class:`_ParforsLinkedOnlyCompiler`); use it
    bare (``@cached_njit``) or with options (``@cached_njit(parallel=True)``).
    ``compiled_callers_only=True`` makes a :class:`CompiledCallersOnly` dispatcher instead (for a
    function that Python never calls; not cached itself: :class:`LinkedOnlyLibrary`)."""
    folder = _folder(Path(package).resolve())

    @contextlib.contextmanager
    def caching_here():
        saved = config.CACHE_DIR, config.CACHE_LOCATOR_CLASSES
        if folder:
            config.CACHE_DIR = folder
            config.CACHE_LOCATOR_CLASSES = f"{__name__}.{PackageCacheLocator.__name__}"
        try:
            yield
        finally:
            config.CACHE_DIR, config.CACHE_LOCATOR_CLASSES = saved

    def cached_njit(fn=None, *, compiled_callers_only=False, **options):
        def decorate(f):
            with caching_here():
                if not compiled_callers_only:
                    return njit(cache=True, pipeline_class=_ParforsLinkedOnlyCompiler, **options)(f)
                # (numba.njit's own steps, with the dispatcher class swapped)
                targetoptions = {"nopython": True, "boundscheck": None, **options,
                                 "no_cpython_wrapper": True, "no_cfunc_wrapper": True}
                return CompiledCallersOnly(py_func=f, locals={}, targetoptions=targetoptions)

        return decorate if fn is None else decorate(fn)

    return folder, cached_njit
