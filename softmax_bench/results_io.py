"""Writing under ``results/``: every file goes to a temporary name in the same folder and is then
renamed into place (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a
half-written file and never damages one that was already there. Temporary names carry the
writer's pid (``.audit.json.<pid>.<random>.tmp``): the next write of the same file removes those
left by writers that were killed (their pid no longer runs).

JSON is strict (no NaN/Infinity literals): non-finite floats are written as the strings
``"inf"``, ``"-inf"`` and ``"nan"`` and turned back into floats by :func:`load_json`.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_json_atomic", "write_text_atomic", "json_text", "json_list_text",
           "json_object_text", "load_json", "provenance", "hold_lock", "cpu_flags",
           "machine_name", "ISA_FLAGS"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` to make the file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def hold_lock(path, error, writer: str):
    """The exclusive lock ``.<name>.lock`` beside ``path`` (``filelock``), held until released:
    one writer of a results file at a time; ``error(message)`` is raised when ``writer`` (a
    command's name) already holds it elsewhere."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise error(f"another {writer} is writing {path} (it holds {lock.lock_file}); wait for it "
                    "to finish, or choose another --json") from None
    return lock


def write_json_atomic(path, data) -> Path:
    return write_text_atomic(path, json_text(data) + "\n")


def write_text_atomic(path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write)


# The text of a JSON document as write_json_atomic writes it, put together from the texts of its
# parts: a part made once (an audit record) goes into every later save of a growing document
# as it is; json's indented encoder is pure Python (a 10 MB audit file: about 0.8 s of a core).
def json_text(value, level: int = 0) -> str:
    """``value`` as :func:`write_json_atomic` writes it when nested ``level`` deep."""
    return json.dumps(_json_ready(value), indent=1, allow_nan=False).replace("\n", "\n" + " " * level)


def json_list_text(item_texts: list, level: int = 0) -> str:
    """A JSON array ``level`` deep of items given as :func:`json_text` at ``level + 1``."""
    if not item_texts:
        return "[]"
    inner = "\n" + " " * (level + 1)
    return "[" + inner + ("," + inner).join(item_texts) + "\n" + " " * level + "]"


def json_object_text(member_texts: dict, level: int = 0) -> str:
    """A JSON object ``level`` deep of members given as name -> :func:`json_text` at
    ``level + 1``."""
    if not member_texts:
        return "{}"
    inner = "\n" + " " * (level + 1)
    return ("{" + inner + ("," + inner).join(f"{json.dumps(k)}: {t}" for k, t in member_texts.items())
            + "\n" + " " * level + "}")


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


def _git_commit() -> str | None:
    """HEAD of the checkout the package lives in (editable install), else of the working folder."""
    for folder in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The vector ISA extensions that decide the kernels' speed (and their conversions), as Linux names them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_fp16", "avx512_bf16")


def cpu_flags() -> list[str]:
    """The :data:`ISA_FLAGS` this CPU has (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def _microarchitecture() -> str:
    """The CPU's micro-architecture as LLVM names it (``znver4``, ``sapphirerapids``; what numba
    compiles for), or "" when LLVM does not know it (``generic``)."""
    from llvmlite import binding

    name = binding.get_host_cpu_name()
    return "" if name == "generic" else name


def machine_name() -> str:
    """A name for this machine's results that differs between machines whose timings differ: the
    CPU model, its micro-architecture, the core count and the widest vector ISA
    (``amd-epyc-znver4-2cpu-avx512``); asv files its history under it (``asv machine --machine
    NAME``), so two machines never share one history. The micro-architecture is there because a
    hypervisor may show one model string for several generations: Zen 4 and Zen 5 machines both
    call themselves "AMD EPYC" here."""
    import re

    model = re.sub(r"\((r|tm)\)|cpu|@.*|processor", " ", _cpu_model().lower())
    slug = re.sub(r"[^a-z0-9]+", "-", f"{model} {_microarchitecture()}").strip("-") or platform.machine()
    flags = cpu_flags()
    isa = next((name for name, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"))
                if flag in flags), platform.machine())
    return f"{slug}-{os.cpu_count()}cpu-{isa}"


def provenance() -> dict:
    """Where and with what a result was made: date, git commit, machine, library versions
    (``None`` for an optional library that is not installed)."""
    import softmax_bench

    versions = {"softmax_bench": softmax_bench.__version__}
    for name in ("numpy", "numba", "mpmath", "scipy", "torch", "jax"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        import mpmath.libmp

        versions["mpmath_backend"] = mpmath.libmp.BACKEND
    except ImportError:
        versions["mpmath_backend"] = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "isa": cpu_flags(),
            "name": machine_name(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": versions,
    }
