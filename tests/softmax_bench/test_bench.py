"""softmax_bench.bench through `softmax-bench bench`: the command runs and writes its JSON (a smoke
run: no timing is asserted, timings belong to benchmarks), and the load warning."""
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from softmax_bench import bench
from softmax_bench.cli import main


def test_bench_command_writes_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--cases", "float32 1000", "bfloat16 1000", "--budget", "0.02",
            "--min-repeat", "3", "--max-repeat", "3", "--no-torch", "--no-jax", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    names = {c["case"] for c in data["cases"]}
    assert names == {"float32 1000", "bfloat16 1000", "float32 100000", "bfloat16 100000"}  # substrings
    text = out.with_suffix(".md").read_text()
    assert "| bfloat16 1000 | softmax/shifted/bfloat16@float32 |" in text and "/ copy" in text
    bf = next(c for c in data["cases"] if c["case"] == "bfloat16 1000")
    assert {"softmax/shifted/bfloat16@float32", "softmax/shifted/bfloat16@bfloat16", "numpy", "copy"} <= set(bf["results"])
    assert set(bf["ratios"]["softmax/shifted/bfloat16@float32"]) >= {"numpy", "copy"}
    q1, q3 = bf["ratio_quartiles"]["softmax/shifted/bfloat16@float32"]["copy"]
    assert q1 <= q3
    assert f"({q1:.2f}-{q3:.2f})" in text
    assert "processor" in data["meta"]["machine"]
    # every round probed the CPUs; the shares of slowed rounds are in the JSON and the Markdown
    assert len(bf["probe_s"]) == 3 and 0 <= bf["slowed_rounds"] <= 1
    assert 0 <= data["meta"]["slowed_rounds"] <= 1
    assert f"in {data['meta']['slowed_rounds']:.0%} of the rounds" in text


def test_plot_takes_quartiles_that_do_not_hold_the_ratio(tmp_path):
    """The ratio of medians can lie outside the round-by-round quartiles (seen: 1.30 against
    1.12-1.25); the plot draws both, and a run's JSON from before the quartiles plots too."""
    pytest.importorskip("matplotlib")
    case = {"case": "float32 8x8", "results": {"softmax/shifted/float32@float32": {}, "copy": {}},
            "ratios": {"softmax/shifted/float32@float32": {"copy": 1.3}},
            "ratio_quartiles": {"softmax/shifted/float32@float32": {"copy": [1.12, 1.25]}}}
    old = {**case, "case": "float32 9x9"}
    del old["ratio_quartiles"]
    data = {"meta": {"function": "softmax"}, "cases": [case, old]}
    assert bench.plot(data, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_ratios_are_medians_of_the_round_by_round_ratios():
    """A machine switching between two speeds, once between our timing and the peer's (round 2):
    our median falls in the slow cluster, the peer's in the fast one (their ratio 1.82), while
    in four rounds of five ours took 10/11 of the peer's time: the ratio is that, 0.91."""
    times = {"k": [1.0, 1.0, 2.0, 2.0, 2.0], "torch": [1.1, 1.1, 1.1, 2.2, 2.2]}
    ratios, quartiles = bench._ratios(times, ["k"])
    assert np.median(times["k"]) / np.median(times["torch"]) == pytest.approx(2.0 / 1.1)
    assert ratios["k"]["torch"] == pytest.approx(1.0 / 1.1)
    assert quartiles["k"]["torch"] == pytest.approx([1.0 / 1.1, 1.0 / 1.1])
    assert bench._ratios(times, ["k"], rounds=[2])[0]["k"]["torch"] == pytest.approx(2.0 / 1.1)


def test_paired_quartiles_follow_the_rounds_not_the_machine():
    """A machine that slows down during the run moves both timings of a round together: the
    round-by-round ratio stays put while each implementation's timings spread."""
    speed = np.array([1.0, 1.5, 2.0, 3.0, 1.2])
    ours, peer = 0.9 * speed, speed
    assert bench.paired_quartiles(list(ours), list(peer)) == pytest.approx([0.9, 0.9])
    assert bench.paired_quartiles([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]) == [0.875, 1.625]


def test_rounds_vary_the_order_and_time_after_an_untimed_call():
    """Each implementation's calls of a round come together, one more than are timed (the first
    pays for what the one before left), and no implementation always follows the same one."""
    log = []
    impls = {name: (lambda name=name: log.append(name)) for name in "abcde"}
    number = dict(zip("abcde", (1, 2, 1, 3, 1)))
    times = bench.time_rounds(impls, number, budget=0.0, min_repeat=12, max_repeat=12)
    assert {k: len(v) for k, v in times.items()} == dict.fromkeys("abcde", 12)
    runs, i = [], 0  # the log cut into each implementation's consecutive calls
    while i < len(log):
        name, calls = log[i], number[log[i]] + 1
        assert log[i : i + calls] == [name] * calls
        runs.append(name)
        i += calls
    rounds = [runs[5 * r : 5 * r + 5] for r in range(12)]
    assert len(runs) == 60 and all(sorted(r) == list("abcde") for r in rounds)
    before = {}
    for prev, name in zip(runs, runs[1:]):
        before.setdefault(name, set()).add(prev)
    assert all(len(preceding) > 1 for preceding in before.values())
    assert len({r[0] for r in rounds}) > 1


def test_cases_that_match_nothing_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as err:
        main(["bench", "--cases", "float16 1 x 100,000", "--no-torch", "--no-jax", "--out", str(out)])
    assert err.value.code == 2
    assert "no case matches 'float16 1 x 100,000'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 targets")
def test_code_targets_name_a_capped_target(tmp_path):
    """A run with numba's target capped to AVX2 (as on an AVX-512 machine timing AVX2 code) says
    so: the report names the target it was built for, not only the CPU's flags."""
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2,+fma,+f16c",
           "ATEN_CPU_CAPABILITY": "avx2"}
    code = "import json; from softmax_bench import bench; print(json.dumps(bench.code_targets()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    targets = json.loads(out.stdout.strip().splitlines()[-1])
    assert targets["numba"] == "haswell avx2"
    assert targets["torch"] in (None, "AVX2", "NO AVX")  # None without torch; NO AVX: a CPU without AVX2
    line = bench._targets_line(targets)[0]
    assert "numba `haswell avx2`" in line
    assert bench.code_targets(use_torch=False) == {"numba": bench.code_targets()["numba"], "torch": None}
    assert bench.code_targets()["numba"]  # the host's, unless capped


def test_loaded_machine_is_warned_about():
    assert bench.loaded_warning({"loadavg_start": [0.1, 0, 0], "loadavg_end": [0.2, 0, 0]}) is None
    text = bench.loaded_warning({"loadavg_start": [0.1, 0, 0], "loadavg_end": [64.0, 0, 0]})
    assert text and "loaded" in text and "64.00" in text
    # where the CPU time of others was measured, it decides (the load average counts our threads)
    busy_avg = {"loadavg_start": [3.0, 0, 0], "loadavg_end": [3.0, 0, 0]}
    assert bench.loaded_warning({**busy_avg, "interference": {"others": 0.01, "steal": 0.02}}) is None
    text = bench.loaded_warning({**busy_avg, "interference": {"others": 0.30, "steal": 0.01}})
    assert text and "30.0%" in text


def test_interference_counts_other_processes():
    import subprocess
    import sys
    import time

    start, t0 = bench._cpu_seconds(), time.perf_counter()
    if start is None:
        pytest.skip("no /proc/stat")
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time() + 0.5\n"
                    "while time.process_time() < t: pass"], check=True)
    wall = time.perf_counter() - t0
    share = bench.interference(start, bench._cpu_seconds(), wall)
    # the child's 0.5 s of CPU (plus its start-up) is others' time (the kernel counts in 10 ms ticks)
    assert share["others"] * wall * (os.cpu_count() or 1) >= 0.45
    assert 0.0 <= share["steal"] <= 1.0


def test_bench_times_the_other_functions_and_float8(tmp_path):
    out = tmp_path / "lse.json"
    argv = ["bench", "--function", "logsumexp", "--cases", "float8_e4m3fn 1000", "--budget", "0.02",
            "--min-repeat", "3", "--max-repeat", "3", "--no-torch", "--no-jax", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["function"] == "logsumexp"
    (case,) = [c for c in data["cases"] if c["case"] == "float8_e4m3fn 1000"]
    assert set(case["ratios"]) == {"logsumexp/shifted/float8_e4m3fn@float32",
                                   "logsumexp/shifted/float8_e4m3fn@float32 out="}
    assert {"numpy", "copy"} <= set(case["results"])


def test_bench_refuses_an_algorithm_the_function_lacks(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--function", "log_softmax", "--algorithms", "online"])
    assert "log_softmax has no algorithm online" in capsys.readouterr().err


def test_numpy_composed_peers_compute_the_functions():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    sm = bench._numpy_composed("softmax", x)
    assert np.allclose(sm.sum(axis=-1), 1.0)
    assert np.allclose(bench._numpy_composed("log_softmax", x), np.log(sm))
    assert np.allclose(bench._numpy_composed("logsumexp", x), np.log(np.exp(x).sum(axis=-1)))


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
def test_torch_peers_allocate_and_fill_out(function):
    """torch is timed both ways, like ours: allocating, and with out= into one preallocated
    tensor (the result the same as the allocating call's)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    peers = bench._peers(function, x, use_torch=True, use_jax=False)
    filled = peers["torch out="]()
    assert torch.equal(filled, peers["torch"]()) and peers["torch out="]().data_ptr() == filled.data_ptr()


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_peer_computes_the_function_in_the_input_format(function, dtype):
    """jax is timed jit-compiled on an array placed once, each call waited for: its result is
    jax.nn's function of x, float64 kept in float64 (x64 on)."""
    jax = pytest.importorskip("jax")
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(dtype)
    y = bench._peers(function, x, use_torch=False, use_jax=True)["jax"]()
    assert isinstance(y, jax.Array) and y.dtype == x.dtype
    assert np.array_equal(np.asarray(y), np.asarray(getattr(jax.nn, function)(x, axis=-1)))


def test_a_jax_that_fails_to_set_up_is_recorded_as_unsupported(monkeypatch):
    """jax installed but failing (here: device_put refuses) is not dropped silently, nor does it
    stop the bench: calling the peer raises the error, which time_case records as unsupported."""
    jax = pytest.importorskip("jax")

    def refuse(x):
        raise RuntimeError("no device")

    monkeypatch.setattr(jax, "device_put", refuse)
    record = bench.time_case(bench.Case("float32", (40,), ("float32",)), budget=0.01, min_repeat=2,
                             max_repeat=2, use_torch=False, use_jax=True)
    assert record["unsupported"]["jax"] == "RuntimeError: no device"
    assert "jax" not in record["results"] and "copy" in record["results"]


def test_markdown_has_a_column_for_each_timed_peer_only(tmp_path):
    """A peer timed on no case (here torch and jax, left out) gets no column."""
    out = tmp_path / "peers.json"
    assert main(["bench", "--cases", "float32 1000", "--budget", "0.02", "--min-repeat", "3",
                 "--max-repeat", "3", "--no-torch", "--no-jax", "--out", str(out)]) == 0
    header = next(line for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("| case"))
    assert header.endswith("| / numpy | / scipy | / copy |")


def test_bench_times_given_shapes(tmp_path, capsys):
    """--shapes replaces the grid's shapes (in every format; --cases still filters them); a
    malformed shape is refused by name."""
    out = tmp_path / "shapes.json"
    argv = ["bench", "--shapes", "3x16", "40", "--cases", "float32", "--budget", "0.02",
            "--min-repeat", "3", "--max-repeat", "3", "--no-torch", "--no-jax", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [c["case"] for c in data["cases"]] == ["float32 3x16", "float32 40"]
    with pytest.raises(SystemExit):
        main(["bench", "--shapes", "64x0"])
    assert "'64x0' is not a shape" in capsys.readouterr().err


def test_cpu_probe_times_every_cpu_and_restores_the_affinity():
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    seconds = bench.cpu_probe()
    assert 0 < seconds < 0.1  # 2,000 additions in Python: tens of microseconds
    if allowed is not None:
        assert os.sched_getaffinity(0) == allowed


def test_rounds_are_probed_and_slowed_rounds_counted():
    probes = []
    times = bench.time_rounds({"a": lambda: None}, {"a": 1}, budget=0.0, min_repeat=5, max_repeat=5,
                              probes=probes)
    assert len(probes) == len(times["a"]) == 5 and all(p > 0 for p in probes)
    # slowed: above SLOWED times the fastest probe of the run
    assert bench.slowed_share([1.0, 1.1, 1.2, 1.3, 2.0], 1.0) == pytest.approx(2 / 5)
    assert bench.slowed_share([], 1.0) == 0.0


def test_rounds_go_on_until_enough_of_them_are_quiet(monkeypatch):
    """--quiet-rounds: past the budget and min_repeat, rounds go on until that many are quiet
    against the fastest probe yet (the run's before the case, or the case's own), or max_repeat."""
    def timed(quiet_min, fastest=float("inf"), max_repeat=100):
        probes = iter([30e-6, 30e-6, 10e-6] * 100)  # every third round quiet
        monkeypatch.setattr(bench, "cpu_probe", lambda: next(probes))
        seen = []
        times = bench.time_rounds({"a": lambda: None}, {"a": 1}, budget=0.0, min_repeat=1,
                                  max_repeat=max_repeat, probes=seen, quiet_min=quiet_min,
                                  fastest=fastest)
        assert len(times["a"]) == len(seen)
        return seen

    assert len(timed(0)) == 1  # min_repeat only
    seen = timed(4)  # quiet: rounds 2, 5, 8, 11 (round 0, quiet against itself, no more once 2 ran)
    assert len(seen) == 12 and bench.quiet_so_far(seen) == 4
    assert len(timed(4, max_repeat=7)) == 7  # max_repeat still bounds it
    assert len(timed(4, fastest=5e-6)) == 100  # a faster probe earlier in the run: none is quiet
    assert bench.quiet_so_far([]) == 0 and bench.quiet_so_far([30e-6, 10e-6, 11e-6], 5e-6) == 0
    with pytest.raises(ValueError, match="probes"):
        bench.time_rounds({"a": lambda: None}, {"a": 1}, budget=0.0, min_repeat=1, max_repeat=1,
                          quiet_min=1)


def test_quiet_rounds_from_the_command_line(tmp_path, monkeypatch):
    probes = iter([30e-6, 10e-6] * 1000)  # every other round quiet
    monkeypatch.setattr(bench, "cpu_probe", lambda: next(probes))
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--cases", "float32 1000", "float32 4096x10", "--budget", "0",
                 "--min-repeat", "1", "--max-repeat", "500", "--quiet-rounds", "7", "--no-torch",
                 "--no-jax", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["quiet_rounds_wanted"] == 7
    # ("float32 1000" also picks "float32 100000"): the run's first round is quiet against itself
    # alone; from its second on the fastest probe is 10 us, and every other round is quiet
    assert len(data["cases"]) == 3
    assert [c["quiet_rounds"] for c in data["cases"]] == [7, 7, 7]
    assert [len(c["probe_s"]) for c in data["cases"]] == [14, 14, 14]
    with pytest.raises(SystemExit):
        main(["bench", "--quick", "--quiet-rounds", "-1", "--out", str(out)])


def test_slowed_rounds_are_warned_about():
    quiet = {"interference": {"others": 0.0, "steal": 0.0}}
    assert bench.loaded_warning({**quiet, "slowed_rounds": bench.SLOWED_SHARE}) is None
    text = bench.loaded_warning({**quiet, "slowed_rounds": 0.4})
    assert text and "40%" in text and "slower" in text


def test_ratios_over_the_quiet_rounds(tmp_path, monkeypatch):
    """Rounds whose probe ran slow are left out of the quiet ratios, chosen by the probe alone."""
    times = {"k": [1.0, 5.0, 1.0, 5.0], "torch": [2.0, 2.0, 2.0, 2.0], "copy": [1.0, 1.0, 1.0, 1.0]}
    ratios, quartiles = bench._ratios(times, ["k"], rounds=[0, 2])
    assert ratios == {"k": {"torch": 0.5, "copy": 1.0}} and quartiles["k"]["torch"] == [0.5, 0.5]
    assert bench._ratios(times, ["k"])[0]["k"]["torch"] == 1.5  # all rounds: median of 0.5, 2.5, 0.5, 2.5

    probes = iter([10e-6, 30e-6] * 100)  # every other round slowed (3x the fastest)
    monkeypatch.setattr(bench, "cpu_probe", lambda: next(probes))
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--cases", "float32 1000", "--budget", "0", "--min-repeat", "12",
                 "--max-repeat", "12", "--no-torch", "--no-jax", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rec = next(c for c in data["cases"] if c["case"] == "float32 1000")
    assert rec["slowed_rounds"] == 0.5 and rec["quiet_rounds"] == 6 and "_times" not in rec
    assert set(rec["ratios_quiet"]) == set(rec["ratios"])
    text = out.with_suffix(".md").read_text()
    assert "in 50% of the rounds" in text and "warning" in text
    assert "| float32 1000 | softmax/shifted/float32@float32 | 6 of 12 |" in text
