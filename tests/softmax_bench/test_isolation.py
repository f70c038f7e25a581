"""softmax_bench.isolation: guarded calls, and child processes that die, hang or outlive nothing."""
import os
import signal
import sys

import numpy as np
import pytest

from softmax_bench import isolation
from softmax_bench.isolation import Worker, guarded_call, wait

X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, np.nan]], np.float32)


def test_a_returned_array_and_the_input_untouched():
    out = guarded_call(lambda x: x * 2, X)
    assert out["status"] == "returned" and out["modified_input"] is False
    np.testing.assert_array_equal(out["y"], X * 2)
    assert out["returned_dtype"] == "float32"


@pytest.mark.parametrize(
    "fn, status, reason",
    [
        (lambda x: 1 / 0, "error", "ZeroDivisionError: division by zero"),
        (lambda x: sys.exit(3), "error", "SystemExit: 3"),
        (lambda x: (_ for _ in ()).throw(KeyboardInterrupt), "error", "KeyboardInterrupt"),
        (lambda x: (_ for _ in ()).throw(MemoryError("no room")), "out_of_memory", "MemoryError: no room"),
        (lambda x: x[0], "bad_output", "returned shape (3,) for input shape (2, 3)"),
        (lambda x: None, "bad_output", "returned object values, not floating point"),
        (lambda x: np.zeros(x.shape, np.int64), "bad_output", "returned int64 values, not floating point"),
    ],
)
def test_failures_become_a_status_and_one_line(fn, status, reason):
    out = guarded_call(fn, X)
    assert (out["status"], out["reason"], out["y"]) == (status, reason, None)


def test_changes_to_the_input_are_seen_on_a_copy():
    def scribble(x):
        x[0, 0] = -0.0 if x[0, 0] == 0 else 0.0
        return x.copy()

    original = X.copy()
    out = guarded_call(scribble, X)
    assert out["modified_input"] is True and out["status"] == "returned"
    np.testing.assert_array_equal(X, original)  # the caller's array is never touched
    # a NaN with another payload is a change too (bitwise comparison)
    payload = guarded_call(lambda x: x.view(np.uint32).__setitem__((1, 2), 0x7FC00001) or x, X)
    assert payload["modified_input"] is True


def test_exit_reasons():
    assert isolation.exit_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert isolation.exit_reason(1) == "exited with status 1"
    assert isolation.describe(ValueError("a\nb")) == "ValueError: a"


# Workers pickle setup and handler by name, so these tests use builtins: the child's state is its
# own pid (os.getpid) and each task is a signal it sends itself (os.kill(pid, task)).


def _receive(worker, timeout=60):
    assert wait([worker.conn], timeout), "no answer"
    return worker.receive()


def test_a_worker_answers_dies_and_restarts():
    w = Worker((os.getpid, ()), os.kill, label="test")
    try:
        assert _receive(w) == ("ready", None) and w.idle
        assert w.submit(0, "key", None)  # signal 0: only checks the process exists
        assert _receive(w) == ("done", None) and w.idle
        w.submit(signal.SIGKILL, "key", None)
        assert _receive(w) == ("died", "killed by SIGKILL")
        w.restart()
        assert _receive(w) == ("ready", None) and w.starts == 2
    finally:
        w.kill()
    assert not w.process.is_alive()


def test_setup_failure_is_reported():
    w = Worker((int, ("not a number",)), os.kill, label="test")
    try:
        kind, reason = _receive(w)
        assert kind == "setup_failed" and reason.startswith("ValueError: invalid literal")
    finally:
        w.kill()
