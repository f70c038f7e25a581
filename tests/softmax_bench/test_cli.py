"""The softmax-bench command line, through its entry function and once as a real subprocess."""
import json
import subprocess
import sys

import numpy as np
import pytest

from softmax_bench.cli import main


@pytest.mark.parametrize(
    "argv, words",
    [
        (["audit", "--dtypes", "float8"], "invalid value 'float8'"),
        (["audit", "--families", "normal1,gauss"], "invalid value 'gauss'"),
        (["audit", "--sizes", "2,x"], "invalid sizes '2,x'"),
        (["audit", "--sizes", "0"], "every size must be >= 1"),
        (["audit", "--kernels", "fast"], "invalid value 'fast'"),
        (["audit", "--peers", "tensorflow"], "invalid value 'tensorflow'"),
        (["audit", "--rows", "0"], "invalid value '0': give a number > 0"),
        (["audit", "--timeout", "-1"], "invalid value '-1'"),
        (["audit", "--max-ulp", "float32:4"], "invalid limit 'float32:4'"),
        (["audit", "--max-ulp", "float8=4"], "invalid limit 'float8=4'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags_exit_2_naming_the_value(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_unavailable_user_impl_is_a_clear_error(tmp_path, capsys):
    code = main(["audit", "--impl", "no_such_mod_q:f", "--json", str(tmp_path / "a.json"), "--no-progress"])
    assert code == 2
    assert "cannot import 'no_such_mod_q'" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "softmax/shifted/float16@float32" in out and "far_positive" in out and "numpy" in out


def test_audit_then_report(tmp_path, capsys):
    path = tmp_path / "audit.json"
    argv = ["audit", "--dtypes", "float16", "--families", "normal1,far_positive", "--sizes", "2,8",
            "--rows", "2", "--workers", "1", "--json", str(path), "--no-progress"]
    assert main(argv) == 0
    records = json.loads(path.read_text())["records"]
    assert {r["family"] for r in records} == {"normal1", "far_positive"}
    assert main(["report", "--json", str(path), "--out", str(tmp_path)]) == 0
    assert "far_positive" in (tmp_path / "report.md").read_text()
    assert main(["report", "--json", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2


def test_usage_errors_found_before_running_exit_2(tmp_path, capsys):
    assert main(["audit", "--impl", "mod:f(1, 2)", "--json", str(tmp_path / "a.json")]) == 2
    assert "cannot read 'mod:f(1, 2)'" in capsys.readouterr().err
    assert main(["audit", "--quick", "--sizes", "10000", "--json", str(tmp_path / "a.json")]) == 2
    assert "no sizes left" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert main(["audit", "--sizes", "2", "--json", str(notes), "--no-progress"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and notes.read_text() == "keep me"


def test_gates_set_the_exit_status(tmp_path, capsys):
    argv = ["audit", "--dtypes", "float16", "--families", "normal1,far_positive", "--sizes", "2,8",
            "--rows", "2", "--workers", "1", "--peers", "numpy", "--no-progress"]
    assert main(argv + ["--json", str(tmp_path / "a.json")]) == 0
    # naive float16@float16 overflows on far_positive: NaN rows where the reference is finite
    assert main(argv + ["--json", str(tmp_path / "b.json"), "--fail-on-nonfinite"]) == 1
    err = capsys.readouterr().err
    assert "softmax/naive/float16@float16: rows not finite where the reference is" in err
    assert main(argv + ["--kernels", "shifted", "--json", str(tmp_path / "c.json"), "--max-ulp", "float16=0"]) == 1
    assert "above --max-ulp float16=0" in capsys.readouterr().err
    assert main(argv + ["--kernels", "shifted", "--json", str(tmp_path / "d.json"), "--max-ulp", "float16=1000"]) == 0


def _run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "softmax_bench.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_scipy_as_a_user_implementation(tmp_path):
    """The README's example, run as a real process: scipy's default axis=None normalises the whole
    array, so the plain name is refused with the fix; with axis=-1 it is a few ULPs off."""
    pytest.importorskip("scipy")
    # cwd: not the repo root, whose source folders would shadow the installed package
    args = ["audit", "--dtypes", "float64", "--kernels", "shifted", "--families", "normal1,posinf",
            "--sizes", "3", "--rows", "2", "--workers", "1", "--no-progress"]
    refused = _run_cli(args + ["--impl", "scipy.special:softmax", "--json", "refused.json"], tmp_path)
    assert refused.returncode == 1
    assert "--impl 'scipy.special:softmax(axis=-1)'" in refused.stderr
    proc = _run_cli(args + ["--impl", "scipy.special:softmax(axis=-1)", "--json", "scipy.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "scipy.json").read_text())["records"]
    mine = {r["family"]: r for r in records if r["implementation"] == "scipy.special:softmax(axis=-1)"}
    assert mine["normal1"]["status"] == "ok" and mine["normal1"]["max_ulp"] <= 8
    assert mine["posinf"]["nan_output_rows"] == 2 and mine["posinf"]["missed_nan_rows"] == 0


def test_user_module_in_the_working_folder(tmp_path):
    (tmp_path / "mysoftmax.py").write_text(
        "import numpy as np\n"
        "def f(x):\n"
        "    e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
        "    return e / e.sum(axis=-1, keepdims=True)\n"
    )
    proc = _run_cli(["audit", "--impl", "mysoftmax:f", "--kernels", "shifted", "--dtypes", "float32",
                     "--families", "normal1", "--sizes", "4", "--rows", "2", "--peers", "numpy",
                     "--workers", "1", "--no-progress", "--json", "a.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_audit_of_a_saved_npy_of_rows(tmp_path):
    rows = (np.random.default_rng(0).standard_normal((40, 300)) * 5).astype(np.float32)
    np.save(tmp_path / "logits.npy", rows)
    path = tmp_path / "a.json"
    argv = ["audit", "--inputs", str(tmp_path / "logits.npy"), "--rows", "8", "--kernels", "shifted",
            "--functions", "softmax", "--peers", "numpy", "--workers", "1", "--json", str(path),
            "--no-progress"]
    assert main(argv) == 0
    records = json.loads(path.read_text())["records"]
    assert {(r["family"], r["dtype"], r["n"], r["rows"]) for r in records} == {("logits", "float32", 300, 8)}
    assert {r["implementation"] for r in records} == {"softmax/shifted/float32@float32", "softmax/shifted/float32@float64", "numpy"}
    assert all(r["status"] == "ok" for r in records)
    np.save(tmp_path / "logits.npy", rows[::-1])  # another content: resuming must notice
    assert main(argv + ["--resume"]) == 2


def test_exhaustive_writes_its_json_and_table_and_refuses_bad_settings(tmp_path, capsys):
    path = tmp_path / "e5m2.json"
    argv = ["exhaustive", "--dtype", "float8_e5m2", "--implementations",
            "softmax/two_pass/float8_e5m2@float32,numpy", "--workers", "1", "--json", str(path),
            "--no-progress"]
    assert main(argv) == 0
    state = json.loads(path.read_text())
    assert state["totals"]["softmax/two_pass/float8_e5m2@float32"]["correctly_rounded"] == 2**16
    assert "| numpy |" in path.with_suffix(".md").read_text()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err  # never overwritten
    assert main(argv + ["--resume"]) == 0
    assert main(["exhaustive", "--dtype", "float8_e5m2", "--json", str(path), "--resume",
                 "--no-progress"]) == 0  # the file's implementations, not every installed one
    for bad, words in [(["--triples", "0x3c00"], "FIRST+COUNT"), (["--triples", "0xfff0+100"], "outside"),
                       (["--implementations", "nope"], "no softmax 'nope' for float16")]:
        code = main(["exhaustive", "--dtype", "float16", "--json", str(tmp_path / "x.json"),
                     "--no-progress"] + bad)
        assert code == 2 and words in capsys.readouterr().err, bad


def test_machine_prints_the_name_asv_files_results_under(capsys):
    from softmax_bench.results_io import machine_name

    assert main(["machine"]) == 0
    assert capsys.readouterr().out.strip() == machine_name()


def test_an_interrupted_exhaustive_sweep_keeps_its_partial_table(tmp_path, monkeypatch, capsys):
    from softmax_bench import exhaustive

    calls = {"n": 0}
    real = exhaustive.summarise

    def interrupted(total, part):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real(total, part)

    monkeypatch.setattr(exhaustive, "summarise", interrupted)
    path = tmp_path / "e5m2.json"
    code = main(["exhaustive", "--dtype", "float8_e5m2", "--implementations", "numpy", "--workers", "1",
                 "--json", str(path), "--no-progress"])
    assert code == 130 and "--resume goes on" in capsys.readouterr().err
    assert "**Partial:** 10 of 1056 chunks" in path.with_suffix(".md").read_text()
