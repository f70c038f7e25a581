"""softmax_bench.bench through `softmax-bench bench`: the command runs and writes its JSON (a smoke
run: no timing is asserted, timings belong to benchmarks), and the load warning."""
import json

from softmax_bench import bench
from softmax_bench.cli import main


def test_bench_command_writes_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--cases", "float32 1000", "bfloat16 1000", "--budget", "0.02",
            "--min-repeat", "3", "--max-repeat", "3", "--no-torch", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    names = {c["case"] for c in data["cases"]}
    assert names == {"float32 1000", "bfloat16 1000", "float32 100000", "bfloat16 100000"}  # substrings
    bf = next(c for c in data["cases"] if c["case"] == "bfloat16 1000")
    assert {"softmax/shifted/bfloat16@float32", "softmax/shifted/bfloat16@bfloat16", "numpy", "copy"} <= set(bf["results"])
    assert set(bf["ratios"]["softmax/shifted/bfloat16@float32"]) >= {"numpy", "copy"}
    assert "processor" in data["meta"]["machine"]


def test_loaded_machine_is_warned_about():
    assert bench.loaded_warning({"loadavg_start": [0.1, 0, 0], "loadavg_end": [0.2, 0, 0]}) is None
    text = bench.loaded_warning({"loadavg_start": [0.1, 0, 0], "loadavg_end": [64.0, 0, 0]})
    assert text and "loaded" in text and "64.00" in text
