"""softmax_bench.results_io: atomic replacement and strict JSON with non-finite numbers."""
import json
import math

import pytest

from softmax_bench.results_io import atomic_write, load_json, write_json_atomic


def test_round_trip_of_non_finite_numbers(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"a": [math.inf, -math.inf, 1.5], "b": {"c": math.nan}})
    json.loads(path.read_text())  # strict JSON
    back = load_json(path)
    assert back["a"] == [math.inf, -math.inf, 1.5] and math.isnan(back["b"]["c"])


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"v": 1})

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write('{"v": 2, "half')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_temporary_files_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    import os

    path = tmp_path / "r.json"
    dead = tmp_path / ".r.json.999999999.x1.tmp"  # pid beyond any pid_max: that writer is gone
    alive = tmp_path / f".r.json.{os.getpid()}.x2.tmp"  # a writer still running: left alone
    other = tmp_path / ".q.json.999999999.x3.tmp"  # another file's
    for p in (dead, alive, other):
        p.write_text("{")
    write_json_atomic(path, {"v": 1})
    assert not dead.exists() and alive.exists() and other.exists()


def test_machine_name_tells_machines_apart_by_cpu_microarchitecture_cores_and_isa(monkeypatch):
    from softmax_bench import results_io

    monkeypatch.setattr(results_io, "_cpu_model", lambda: "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz")
    monkeypatch.setattr(results_io, "_microarchitecture", lambda: "sapphirerapids")
    monkeypatch.setattr(results_io, "cpu_flags", lambda: ["avx2", "fma", "avx512f", "avx512_fp16"])
    monkeypatch.setattr(results_io.os, "cpu_count", lambda: 2)
    assert results_io.machine_name() == "intel-xeon-platinum-8481c-sapphirerapids-2cpu-avx512"
    monkeypatch.setattr(results_io, "_cpu_model", lambda: "AMD EPYC 7B13 64-Core Processor")
    monkeypatch.setattr(results_io, "_microarchitecture", lambda: "znver3")
    monkeypatch.setattr(results_io, "cpu_flags", lambda: ["avx", "avx2", "fma"])
    assert results_io.machine_name() == "amd-epyc-7b13-64-core-znver3-2cpu-avx2"
    # a hypervisor's one model string for two generations: the micro-architecture tells them apart
    monkeypatch.setattr(results_io, "_cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(results_io, "cpu_flags", lambda: ["avx2", "avx512f"])
    names = set()
    for uarch in ("znver4", "znver5"):
        monkeypatch.setattr(results_io, "_microarchitecture", lambda: uarch)
        names.add(results_io.machine_name())
    assert names == {"amd-epyc-znver4-2cpu-avx512", "amd-epyc-znver5-2cpu-avx512"}
    monkeypatch.setattr(results_io, "_microarchitecture", lambda: "")  # LLVM's "generic"
    assert results_io.machine_name() == "amd-epyc-2cpu-avx512"
    monkeypatch.undo()
    made = results_io.provenance()["machine"]
    assert made["name"] == results_io.machine_name() and set(made["isa"]) <= set(results_io.ISA_FLAGS)


def test_a_document_put_together_from_its_parts_texts_is_what_write_json_atomic_writes(tmp_path):
    from softmax_bench.results_io import json_list_text, json_object_text, json_text, write_text_atomic

    records = [{"a": 1, "b": [1.5, math.inf, {"c": None, "d": "x\ny\"", "e": []}], "f": {}},
               {"nested": {"deeper": [[1, 2], []]}, "u": "\u00e9"}, {}]
    for recs in (records, []):
        data = {"meta": {"runs": [{"x": math.nan}], "tool": "t"}, "records": recs}
        write_json_atomic(tmp_path / "whole.json", data)
        text = json_object_text({"meta": json_text(data["meta"], 1),
                                 "records": json_list_text([json_text(r, 2) for r in recs], 1)})
        write_text_atomic(tmp_path / "parts.json", text + "\n")
        assert (tmp_path / "parts.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert json_object_text({}) == "{}"
