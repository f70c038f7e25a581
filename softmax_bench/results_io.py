"""Writing under ``results/``: every file goes to a temporary name in the same folder and is then
renamed into place (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a
half-written file and never damages one that was already there.

JSON is strict (no NaN/Infinity literals): non-finite floats are written as the strings
``"inf"``, ``"-inf"`` and ``"nan"`` and turned back into floats by :func:`load_json`.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_json_atomic", "load_json"]


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` to make the file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by everyone
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_ready(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_json_atomic(path, data) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(_json_ready(data), f, indent=1, allow_nan=False)
            f.write("\n")

    return atomic_write(path, write)


def _revive(value):
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


def load_json(path) -> dict:
    with open(path) as f:
        return _revive(json.load(f))
