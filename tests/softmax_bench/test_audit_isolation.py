"""The audit survives what it is pointed at: hostile implementations (tests/softmax_bench/hostile.py)
audited with numpy and the kernels in one run, Ctrl-C, SIGKILL of the audit, two audits on one file.

The subprocess tests run ``python -m softmax_bench.cli`` from a temporary folder (the repo root's
source folders would shadow the installed package) with hostile.py's folder on PYTHONPATH."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softmax_bench.cli import main

HERE = Path(__file__).resolve().parent

#: hostile implementation -> the status its records must have (None: every case measured, ok).
HOSTILE = {
    "raises": "error",
    "exits": "error",
    "hard_exit": "crashed",
    "segfault": "crashed",
    "sleeps_forever": "timeout",
    "hogs_memory": "out_of_memory",
    "modifies_input": "modified_input",
    "whole_array": "refused",
    "wrong_dtype": "wrong_dtype",
    "all_nan": "ok",
    "finite_for_posinf": "ok",
}
BASE = ["audit", "--kernels", "shifted", "--dtypes", "float32", "--families", "normal1,posinf",
        "--sizes", "3,10", "--rows", "2", "--peers", "numpy", "--workers", "2", "--no-progress"]
TIMEOUT_S = 1.0


def records(path):
    return json.loads(Path(path).read_text())["records"]


def test_hostile_implementations_each_get_their_status_and_spoil_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(HERE))  # the peers' processes inherit sys.path
    impls = [*HOSTILE, "wrong_shape_at_10"]
    hostile_json, clean_json = tmp_path / "hostile.json", tmp_path / "clean.json"
    argv = BASE + sum((["--impl", f"hostile:{h}"] for h in impls), []) + [
        "--timeout", str(TIMEOUT_S), "--memory-limit", "2", "--json", str(hostile_json)]
    start = time.monotonic()
    assert main(argv) == 1
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert main(BASE + ["--json", str(clean_json)]) == 0

    got = records(hostile_json)
    good = [r for r in got if not r["implementation"].startswith("hostile:")]
    assert good == records(clean_json), "a hostile implementation changed another's records"
    cases = 4
    for name, status in HOSTILE.items():
        mine = [r for r in got if r["implementation"] == f"hostile:{name}"]
        assert len(mine) == cases and {r["status"] for r in mine} == {status}, (name, mine[0])
        assert f"hostile:{name}" in err or status == "ok"
    by_n = {r["n"]: r["status"] for r in got if r["implementation"] == "hostile:wrong_shape_at_10"}
    assert by_n == {3: "ok", 10: "bad_output"}
    reasons = {r["implementation"]: r["reason"] for r in got}
    assert reasons["hostile:segfault"] == "its process killed by SIGSEGV"
    assert reasons["hostile:hard_exit"] == "its process exited with status 1"
    assert reasons["hostile:exits"] == "SystemExit: 0"
    assert reasons["hostile:raises"] == "ValueError: hostile: refuses to work"
    assert "axis=-1" in reasons["hostile:whole_array"]
    # the row classes tell what ok-but-wrong outputs did
    posinf = {r["implementation"]: r for r in got if r["family"] == "posinf"}
    assert posinf["hostile:finite_for_posinf"]["missed_nan_rows"] == 2
    assert posinf["numpy"]["missed_nan_rows"] == 0
    assert all(r["nan_rows"] == r["rows"] for r in got
               if r["implementation"] == "hostile:all_nan" and r["family"] == "normal1")
    # the sleeper's probe (4 calls) and each case time out; the rest finish at once
    assert elapsed < 60, f"the run took {elapsed:.0f} s"


def _audit_process(args, tmp_path, **kw):
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.Popen([sys.executable, "-m", "softmax_bench.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _cases_on_disk(path):
    try:
        return len({(r["family"], r["n"]) for r in records(path)})
    except (OSError, ValueError):
        return 0


def _descendants(pid):
    """Every process under ``pid`` (Linux /proc)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


SLOW = ["audit", "--kernels", "shifted", "--dtypes", "float64", "--families", "normal1,uniform",
        "--sizes", "2,3,5,8", "--rows", "2", "--peers", "numpy", "--impl", "hostile:slow",
        "--workers", "1", "--no-progress"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_one_ctrl_c_stops_within_seconds_and_resume_completes(tmp_path, monkeypatch):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
    monkeypatch.syspath_prepend(str(HERE))
    uninterrupted = tmp_path / "full.json"
    assert main(SLOW + ["--json", str(uninterrupted)]) == 0
    path = tmp_path / "a.json"
    proc = _audit_process(SLOW + ["--json", str(path)], tmp_path, start_new_session=True)
    try:
        _wait_for(lambda: _cases_on_disk(path) >= 1, 120, "the first case on disk")
        workers = _descendants(proc.pid)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert stopped < 5, f"took {stopped:.1f} s to stop"
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err, err
    # multiprocessing's resource tracker ends when its pipe closes, a moment after the audit
    _wait_for(lambda: not [p for p in workers if _running(p)], 5, "every worker to end")
    saved = _cases_on_disk(path)
    assert 1 <= saved < 8, "the interrupt should have landed mid-run"
    assert main(SLOW + ["--json", str(path), "--resume"]) == 0
    strip = lambda recs: [{k: v for k, v in r.items() if k != "run"} for r in recs]  # noqa: E731
    assert strip(records(path)) == strip(records(uninterrupted))
    assert not list(tmp_path.glob(".a.json.*.tmp"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_no_worker_outlives_a_killed_audit(tmp_path):
    path = tmp_path / "a.json"
    args = ["--kernels", "shifted", "--dtypes", "float64", "--families", "normal1", "--sizes", "2",
            "--rows", "2", "--peers", "numpy", "--impl", "hostile:sleeps_forever", "--timeout", "300",
            "--json", str(path), "--no-progress"]
    proc = _audit_process(["audit", *args], tmp_path)
    try:
        # the case worker and both peers' processes (and multiprocessing's resource tracker)
        _wait_for(lambda: len(_descendants(proc.pid)) >= 3, 120, "the audit's workers")
        time.sleep(3)  # the sleeper is now inside its call
        workers = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # returns only once no process holds its stdout/stderr
    finally:
        proc.kill()
    _wait_for(lambda: not [p for p in workers if _running(p)], 10, "every worker to end")


def test_two_audits_on_one_file(tmp_path, capsys):
    path = tmp_path / "a.json"
    first = _audit_process([*SLOW, "--json", str(path)], tmp_path)
    try:
        _wait_for(lambda: (tmp_path / ".a.json.lock").exists() and _cases_on_disk(path) >= 1, 120,
                  "the first audit to hold the file")
        assert main([*SLOW, "--json", str(path)]) == 2
        assert "another softmax-bench audit is writing" in capsys.readouterr().err
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 130
