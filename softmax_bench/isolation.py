"""Child processes that may fail: code we did not write, and work that may die.

A :class:`Worker` is one spawned child process that runs tasks one at a time for the process that
owns the results. Whatever a task does (raise, ``sys.exit``, ``os._exit``, a fatal signal, run
forever, exhaust its memory), the owner learns it as a message or as the child's death, and can
always kill the child and start another. Children never outlive their owner: on Linux the kernel
kills them when it dies (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread in the child
polls the owner's pid. Children ignore SIGINT: a Ctrl-C reaches the whole process group, and it is
the owner that decides what it means.

:func:`guarded_call` is the one way an implementation is called: on its own copy of the input,
every exception caught (``SystemExit`` and ``KeyboardInterrupt`` too), the output checked for
shape and dtype, and the input compared afterwards with what it was.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait

import numpy as np

from softmax_bench.formats import is_format

__all__ = ["Worker", "guarded_call", "describe", "exit_reason", "wait"]

_CTX = multiprocessing.get_context("spawn")  # never fork a process that runs numba's thread pool
_PR_SET_PDEATHSIG = 1
_WATCHDOG_PERIOD_S = 0.5


def describe(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its text."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def exit_reason(exitcode: int | None) -> str:
    """How a child ended, in words: 'killed by SIGSEGV', 'exited with status 1'."""
    if exitcode is None:
        return "ended without an exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if is_format(a.dtype):  # compare bit patterns: NaN payloads and -0.0 count
        view = np.dtype(f"u{a.dtype.itemsize}")
        return np.array_equal(a.view(view), b.view(view))
    return np.array_equal(a, b)


def guarded_call(fn, x: np.ndarray, shape: tuple | None = None, extra: tuple = ()) -> dict:
    """Call ``fn`` on a copy of ``x`` (and copies of the ``extra`` operands: a backward pass's
    cotangent ``g``); never raises.

    Returns ``{"status", "reason", "y", "modified_input", "returned_dtype"}``: status ``returned``
    with ``y`` a float array of the expected ``shape`` (default ``x``'s; possibly of another
    dtype), or ``error``, ``out_of_memory`` or ``bad_output`` (not an array of a format of
    softmax_bench.formats, or another shape) with ``y`` None and a one-line reason."""
    shape = x.shape if shape is None else tuple(shape)
    mine = x.copy()
    theirs = [e.copy() for e in extra]
    out = {"status": "returned", "reason": None, "y": None, "modified_input": None, "returned_dtype": None}
    try:
        with np.errstate(all="ignore"):  # overflow and invalid are what the audit measures
            y = np.asarray(fn(mine, *theirs))
    except MemoryError as exc:
        out.update(status="out_of_memory", reason=describe(exc))
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        out.update(status="error", reason=describe(exc))
    else:
        out["returned_dtype"] = y.dtype.name
        if not is_format(y.dtype):
            out.update(status="bad_output", reason=f"returned {y.dtype.name} values, not floating point")
        elif y.shape != shape:
            expected = "" if shape == x.shape else f" (expected {shape})"
            out.update(status="bad_output",
                       reason=f"returned shape {y.shape} for input shape {x.shape}{expected}")
        else:
            out["y"] = y
    out["modified_input"] = not (_same_bits(mine, x) and all(map(_same_bits, theirs, extra)))
    return out


# --- the child's side ------------------------------------------------------------------------

def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the owner died before prctl took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(_WATCHDOG_PERIOD_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _limit_memory(limit_bytes: int) -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ValueError, OSError):
        pass  # a hard limit already lower: keep it


def _child_main(conn, parent_pid, setup, handler, memory_limit):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    if memory_limit:
        _limit_memory(memory_limit)
    func, args = setup
    try:
        state = func(*args)
    except BaseException as exc:  # noqa: BLE001
        conn.send(("setup_failed", describe(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(("done", handler(state, task)))


# --- the owner's side ------------------------------------------------------------------------

class Worker:
    """One child process: ``setup = (func, args)`` runs once in the child and its result is the
    state passed to ``handler(state, task)`` for every task. Both must be module-level functions
    (they are pickled by name). ``memory_limit`` (bytes) caps the child's address space.

    The owner waits on :attr:`conn` (with :func:`wait`), then calls :meth:`receive`, which gives
    ``("ready", None)``, ``("setup_failed", reason)``, ``("done", result)`` or
    ``("died", reason)``."""

    def __init__(self, setup, handler, memory_limit: int | None = None, label: str = ""):
        self.setup, self.handler, self.memory_limit, self.label = setup, handler, memory_limit, label
        self.starts = 0
        self.start()

    def start(self) -> None:
        parent_conn, child_conn = _CTX.Pipe()
        self.process = _CTX.Process(
            target=_child_main,
            args=(child_conn, os.getpid(), self.setup, self.handler, self.memory_limit),
            daemon=True,
            name=f"softmax-bench {self.label}".strip(),
        )
        self.process.start()
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.task = None  # what the child is working on (the owner's key for it)
        self.deadline = None  # time.monotonic() by which it must answer, or None
        self.starts += 1

    @property
    def idle(self) -> bool:
        return self.ready and self.task is None

    def submit(self, task, key, timeout: float | None) -> bool:
        """Send a task; False if the child is already dead (then :meth:`receive` says why)."""
        self.task = key
        self.deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.conn.send(task)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False
        return True

    def receive(self):
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError, ConnectionResetError):
            self.process.join(5)
            return "died", exit_reason(self.process.exitcode)
        if kind == "ready":
            self.ready = True
        if kind == "done":
            self.task, self.deadline = None, None
        return kind, payload

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def restart(self) -> None:
        self.kill()
        self.start()
