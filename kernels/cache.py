"""Where numba keeps the compiled kernels: a per-user cache folder, never inside the package.

numba's ``cache=True`` writes beside the source by default (``__pycache__``). In an installed
package those files outlive ``pip uninstall`` (pip did not write them), and a later
``pip install -e .`` then finds ``site-packages/softmax_bench/kernels`` as an empty namespace
package that shadows the editable install. numba also checks a cached function against its own
source file only, so a kernel would keep code it inlined from an edited ``exp.py``. So every
kernel is decorated by :func:`cached_njit`, which compiles into

    <cache>/numba/<first 16 hex digits of the sha256 of this package's sources>

where ``<cache>`` is the per-user cache folder of ``platformdirs`` (``~/.cache/softmax-bench`` on
Linux), or ``$NUMBA_CACHE_DIR/softmax-bench`` when that is set. An edit of any kernel file gives
a new folder; installs of the same sources share one. numba fixes a function's cache location
when its decorator runs, so the setting is swapped in for that moment only: no other numba
function in the process is affected. Where the folder cannot be made, numba's default applies.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from numba import njit
from numba.core import config

__all__ = ["CACHE_FOLDER", "cached_njit"]


def _folder() -> str | None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for p in sorted(here.rglob("*.py")):
        digest.update(str(p.relative_to(here)).encode() + b"\0" + p.read_bytes() + b"\0")
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


#: The folder of this package's numba cache (None: numba's default location).
CACHE_FOLDER = _folder()


@contextlib.contextmanager
def _caching_here():
    saved = config.CACHE_DIR
    if CACHE_FOLDER:
        config.CACHE_DIR = CACHE_FOLDER
    try:
        yield
    finally:
        config.CACHE_DIR = saved


def cached_njit(fn=None, **options):
    """``numba.njit(cache=True, **options)``, cached in :data:`CACHE_FOLDER`; use bare
    (``@cached_njit``) or with options (``@cached_njit(parallel=True)``)."""

    def decorate(f):
        with _caching_here():
            return njit(cache=True, **options)(f)

    return decorate if fn is None else decorate(fn)
