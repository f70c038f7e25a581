"""The softmax-bench command line, through its entry function and once as a real subprocess."""
import json
import subprocess
import sys

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
    assert "shifted/float16@float32" in out and "far_positive" in out and "numpy" in out


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


def test_scipy_as_a_user_implementation(tmp_path):
    """The issue's example: softmax-bench audit --impl scipy.special:softmax --dtypes float64,
    run as a real process through the installed entry point's module."""
    pytest.importorskip("scipy")
    path = tmp_path / "scipy.json"
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_bench.cli", "audit", "--impl", "scipy.special:softmax",
         "--dtypes", "float64", "--kernels", "shifted", "--families", "normal1,posinf",
         "--sizes", "3", "--rows", "2", "--workers", "1", "--json", str(path), "--no-progress"],
        capture_output=True, text=True, timeout=300,
        cwd=tmp_path,  # not the repo root, whose source folders would shadow the installed package
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(path.read_text())["records"]
    scipy_posinf = [r for r in records if r["implementation"] == "scipy.special:softmax" and r["family"] == "posinf"]
    assert scipy_posinf and scipy_posinf[0]["nan_output_rows"] == 2
