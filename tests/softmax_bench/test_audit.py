"""softmax_bench.audit: records, the JSON contract, atomic writes and resuming."""
import json

import numpy as np
import pytest

from softmax_bench import audit

CONTRACT = {
    "implementation", "dtype", "compute", "family", "n", "rows", "max_ulp", "median_ulp",
    "max_rel", "nan_rows", "inf_rows", "spurious_zero", "all_zero_rows",
}


def small_config(**kw):
    base = dict(
        kernels=["naive", "shifted"], dtypes=["float16"], families=["normal1", "far_positive"],
        sizes=[2, 10], rows=3, peers=["numpy"], workers=1,
    )
    base.update(kw)
    return audit.AuditConfig(**base)


def test_records_follow_the_contract(tmp_path):
    path = tmp_path / "a.json"
    result = audit.run(small_config(), path, progress=False)
    on_disk = json.loads(path.read_text())  # strict JSON: no NaN/Infinity literals
    assert on_disk["meta"]["config"]["families"] == ["normal1", "far_positive"]
    assert {"git_commit", "machine", "versions", "date", "version"} <= set(on_disk["meta"])
    records = result["records"]
    impls = {r["implementation"] for r in records}
    assert "numpy" in impls and any(i.startswith("naive/float16") for i in impls)
    assert len(records) == 4 * len(impls)  # 2 families x 2 sizes, every implementation
    for r in records:
        assert CONTRACT <= set(r)
    # naive in float16 arithmetic overflows past ln(65504); with compute=float32 it does not (yet).
    naive = [r for r in records if r["family"] == "far_positive" and r["implementation"] == "naive/float16@float16"]
    shifted = [r for r in records if r["family"] == "far_positive" and r["implementation"].startswith("shifted/")]
    assert naive and all(r["nan_rows"] + r["inf_rows"] > 0 for r in naive), "naive float16 must overflow there"
    assert all(r["nan_rows"] == r["inf_rows"] == r["all_zero_rows"] == 0 for r in shifted)
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_resume_runs_only_missing_cases(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    config = small_config()
    full = audit.run(config, path, progress=False)
    data = audit.load(path)
    data["records"] = [r for r in data["records"] if r["n"] != 10]  # "interrupted" before n=10
    audit.write_json_atomic(path, data)
    calls = []
    real = audit.run_case
    monkeypatch.setattr(audit, "run_case", lambda cfg, *case: calls.append(case) or real(cfg, *case))
    resumed = audit.run(config, path, resume=True, progress=False)
    assert sorted(calls) == sorted([("normal1", "float16", 10), ("far_positive", "float16", 10)])
    strip = lambda recs: [{k: v for k, v in r.items()} for r in recs]  # noqa: E731
    assert strip(resumed["records"]) == strip(audit.load(path)["records"])
    assert len(resumed["records"]) == len(full["records"])
    with pytest.raises(ValueError, match="another configuration"):
        audit.run(small_config(rows=5), path, resume=True, progress=False)


def test_user_implementation_and_peer_float64(tmp_path):
    config = small_config(dtypes=["float64"], families=["normal1"], sizes=[5], kernels=[],
                          peers=["softmax_bench.peers:_numpy_softmax"])
    records = audit.run(config, None, progress=False)["records"]
    assert [r["implementation"] for r in records] == ["softmax_bench.peers:_numpy_softmax"]
    assert records[0]["max_ulp"] < 8 and records[0]["kind"] == "peer"


def test_parallel_workers_match_serial(tmp_path):
    serial = audit.run(small_config(), None, progress=False)["records"]
    parallel = audit.run(small_config(workers=2), None, progress=False)["records"]
    assert serial == parallel


def test_rows_budget():
    c = audit.AuditConfig(rows=16)
    assert c.rows_for(10) == 16 and c.rows_for(10_000) == 2 and c.rows_for(10**6) == 1
