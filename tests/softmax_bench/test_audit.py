"""softmax_bench.audit: records, the JSON contract, the results file (lock, resume, refusals), the
contract probe and the verdict. Hostile implementations and interrupts: test_audit_isolation.py."""
import json

import numpy as np
import pytest

from softmax_bench import audit

CONTRACT = {
    "implementation", "dtype", "compute", "family", "n", "rows", "run", "status", "reason",
    "modified_input", "returned_dtype", "max_ulp", "median_ulp", "max_rel", "nan_rows", "inf_rows",
    "missed_nan_rows", "spurious_zero", "all_zero_rows",
}


def small_config(**kw):
    base = dict(
        kernels=["naive", "shifted"], functions=["softmax"], dtypes=["float16"],
        families=["normal1", "far_positive"], sizes=[2, 10], rows=3, peers=["numpy"], workers=1,
    )
    base.update(kw)
    return audit.AuditConfig(**base)


def without_run(records):
    return [{k: v for k, v in r.items() if k != "run"} for r in records]


def test_records_follow_the_contract(tmp_path):
    path = tmp_path / "a.json"
    result = audit.run(small_config(), path, progress=False)
    on_disk = json.loads(path.read_text())  # strict JSON: no NaN/Infinity literals
    meta = on_disk["meta"]
    assert meta["tool"] == "softmax-bench audit" and meta["config"]["families"] == ["normal1", "far_positive"]
    assert "workers" not in meta["config"], "result-neutral settings belong to the run"
    (run,) = meta["runs"]
    assert {"git_commit", "machine", "versions", "date", "settings"} <= set(run)
    assert run["settings"]["workers"] == 1
    records = result["records"]
    impls = {r["implementation"] for r in records}
    assert "numpy" in impls and any(i.startswith("softmax/naive/float16") for i in impls)
    assert len(records) == 4 * len(impls)  # 2 families x 2 sizes, every implementation
    for r in records:
        assert CONTRACT <= set(r) and r["status"] == "ok" and r["run"] == 0 and r["modified_input"] is False
    # naive in float16 arithmetic overflows past ln(65504); with compute=float32 it does not (yet).
    naive = [r for r in records if r["family"] == "far_positive" and r["implementation"] == "softmax/naive/float16@float16"]
    shifted = [r for r in records if r["family"] == "far_positive" and r["implementation"].startswith("softmax/shifted/")]
    assert naive and all(r["nan_rows"] + r["inf_rows"] > 0 for r in naive), "naive float16 must overflow there"
    assert all(r["nan_rows"] == r["inf_rows"] == r["all_zero_rows"] == 0 for r in shifted)
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_resume_runs_only_missing_cases_and_keeps_provenance(tmp_path):
    path = tmp_path / "a.json"
    full = audit.run(small_config(), path, progress=False)
    data = audit.load(path)
    first_run = data["meta"]["runs"][0]
    data["records"] = [r for r in data["records"] if r["n"] != 10]  # "interrupted" before n=10
    audit.write_json_atomic(path, data)
    # --workers and --timeout change no record: a resumed run may change them
    resumed = audit.run(small_config(workers=2, timeout=30.0), path, resume=True, progress=False)
    assert without_run(resumed["records"]) == without_run(full["records"])
    assert resumed["records"] == audit.load(path)["records"]
    assert {r["run"] for r in resumed["records"] if r["n"] == 10} == {1}
    assert {r["run"] for r in resumed["records"] if r["n"] == 2} == {0}
    runs = audit.load(path)["meta"]["runs"]
    assert len(runs) == 2 and runs[0] == first_run and runs[1]["settings"]["workers"] == 2


def test_resume_redoes_incomplete_and_duplicated_cases(tmp_path):
    path = tmp_path / "a.json"
    full = audit.run(small_config(), path, progress=False)
    data = audit.load(path)
    recs = data["records"]
    half = [r for r in recs if (r["family"], r["n"]) == ("normal1", 2)][0]
    dup = [r for r in recs if (r["family"], r["n"]) == ("far_positive", 10)][0]
    data["records"] = [r for r in recs if r is not half] + [dict(dup)]
    audit.write_json_atomic(path, data)
    resumed = audit.run(small_config(), path, resume=True, progress=False)["records"]
    assert without_run(resumed) == without_run(full["records"])
    redone = {(r["family"], r["n"]) for r in resumed if r["run"] == 1}
    assert redone == {("normal1", 2), ("far_positive", 10)}


def test_resume_with_other_settings_names_the_flag(tmp_path):
    path = tmp_path / "a.json"
    audit.run(small_config(), path, progress=False)
    with pytest.raises(audit.AuditError, match=r"--sizes \[2, 10\] and this run has \[2\]"):
        audit.run(small_config(sizes=[2]), path, resume=True, progress=False)
    with pytest.raises(audit.AuditError, match="--rows 3 and this run has 5"):
        audit.run(small_config(rows=5), path, resume=True, progress=False)


def test_damaged_or_foreign_files_are_named_and_never_overwritten(tmp_path):
    damaged = tmp_path / "a.json"
    damaged.write_text("")
    with pytest.raises(audit.AuditError, match=f"cannot read {damaged} as an audit JSON"):
        audit.run(small_config(), damaged, resume=True, progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(audit.AuditError, match="not an audit JSON: refusing to overwrite"):
        audit.run(small_config(), notes, progress=False)
    assert notes.read_text() == "my notes"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"meta": {"tool": "something else"}, "records": []}))
    with pytest.raises(audit.AuditError, match="refusing to overwrite"):
        audit.run(small_config(), other, progress=False)


def test_unwritable_destination_fails_before_any_case(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(audit.AuditError, match="cannot create the folder"):
        audit.run(small_config(), blocker / "a.json", progress=False)


def test_a_second_audit_on_the_same_file_refuses(tmp_path):
    from filelock import FileLock

    path = tmp_path / "a.json"
    with FileLock(str(tmp_path / ".a.json.lock")):  # what a running audit holds
        with pytest.raises(audit.AuditError, match="another softmax-bench audit is writing"):
            audit.run(small_config(), path, progress=False)
    assert not path.exists()


def test_stale_temporary_files_are_removed(tmp_path):
    path = tmp_path / "a.json"
    stale = tmp_path / ".a.json.999999999.abc.tmp"  # a writer whose pid no longer runs
    stale.write_text("{")
    audit.run(small_config(sizes=[2], families=["normal1"]), path, progress=False)
    assert not stale.exists() and path.exists()


def test_user_implementation_and_peer_float64(tmp_path):
    config = small_config(dtypes=["float64"], families=["normal1"], sizes=[5], kernels=[],
                          peers=["softmax_bench.peers:numpy_softmax"])
    records = audit.run(config, None, progress=False)["records"]
    assert [r["implementation"] for r in records] == ["softmax_bench.peers:numpy_softmax"]
    assert records[0]["max_ulp"] < 8 and records[0]["kind"] == "peer"


def test_parallel_workers_match_serial():
    serial = audit.run(small_config(), None, progress=False)["records"]
    parallel = audit.run(small_config(workers=2), None, progress=False)["records"]
    assert serial == parallel


def test_sized_families_run_at_their_own_sizes():
    config = small_config(families=["normal1", "vocab:5000", "attention_causal"], sizes=[2], dtypes=["float32"])
    assert config.cases() == [
        ("normal1", "float32", 2), ("vocab", "float32", 5000),
        *[("attention_causal", "float32", n) for n in (128, 1024, 4096, 32_768)],
    ]


def test_cases_too_large_for_memory_are_refused_before_anything_runs(tmp_path):
    config = small_config(families=["vocab:256000"], max_memory=2**20)
    with pytest.raises(audit.AuditError, match=r"vocab float16 n=256000 needs about 0.2 GiB .* --max-memory"):
        audit.run(config, tmp_path / "a.json", progress=False)
    assert not (tmp_path / "a.json").exists()


@pytest.mark.slow
def test_vocabulary_and_attention_rows_at_their_largest_sizes():
    """One row of 256,000 (Gemma's vocabulary) and rows of 32,768 keys, every float format."""
    config = small_config(families=["vocab:256000", "attention_causal:32768"], rows=2,
                          dtypes=["float16", "float32", "float64"], kernels=["shifted"], workers=2)
    records = audit.run(config, None, progress=False)["records"]
    assert {(r["family"], r["n"]) for r in records} == {("vocab", 256_000), ("attention_causal", 32_768)}
    assert all(r["status"] == "ok" for r in records)
    shifted = [r for r in records if r["kind"] == "kernel"]
    assert all(r["within_bound"] for r in shifted)
    assert all(r["nan_rows"] == r["inf_rows"] == r["missed_nan_rows"] == 0 for r in records)


def test_rows_budget():
    """min(rows, ELEMENT_BUDGET // n), at least one: 16 rows of 10^4, five of 32,000, one of 10^6."""
    assert audit.ELEMENT_BUDGET == 160_000
    c = audit.AuditConfig(rows=16)
    assert c.rows_for(10) == 16 and c.rows_for(10_000) == 16 and c.rows_for(32_000) == 5
    assert c.rows_for(10**6) == 1


def test_contract_probe_refuses_whole_array_scipy_and_names_the_fix():
    """scipy.special.softmax normalises the whole array by default (axis=None): refused, with the
    fix in the reason; with axis=-1 it is a few ULPs off, like numpy."""
    pytest.importorskip("scipy")
    config = small_config(dtypes=["float64"], families=["normal1"], sizes=[5], kernels=[],
                          peers=["scipy.special:softmax", "scipy.special:softmax(axis=-1)"])
    wrong, right = audit.run(config, None, progress=False)["records"]
    assert wrong["status"] == "refused" and "max_ulp" not in wrong
    assert "--impl 'scipy.special:softmax(axis=-1)'" in wrong["reason"]
    assert right["status"] == "ok" and right["max_ulp"] <= 8


def test_probe_verdict_tolerates_batch_paths_but_not_wrong_axes():
    (batch,) = audit.probe_batches(["float32"])
    ok = lambda y: {"status": "returned", "y": y}  # noqa: E731
    e = np.exp(batch - batch.max(axis=-1, keepdims=True))
    rows = e / e.sum(axis=-1, keepdims=True)
    nudged = np.nextafter(rows, np.float32(1))  # one ULP: another vector path, not a wrong axis
    probe = [("softmax", batch)]
    assert audit._probe_verdict("m:f", probe, [(ok(nudged), [ok(r) for r in rows])]) is None
    whole = e / e.sum()
    assert "independently" in audit._probe_verdict("m:f", probe, [(ok(whole), [ok(r) for r in rows])])
    failed = {"status": "error", "y": None}
    assert audit._probe_verdict("m:f", probe, [(failed, [ok(r) for r in rows])]) is None
    # logsumexp: one value per row; a whole-array reduction is refused with the function named
    lse_rows = np.log(np.exp(batch).sum(axis=-1))
    lse = [("logsumexp", batch)]
    assert audit._probe_verdict("logsumexp=m:f", lse, [(ok(lse_rows), [ok(v) for v in lse_rows])]) is None
    wrong = np.full(3, np.log(np.exp(batch).sum()), np.float32)
    reason = audit._probe_verdict("logsumexp=m:f", lse, [(ok(wrong), [ok(v) for v in lse_rows])])
    assert "its logsumexp does not reduce" in reason and "--impl 'logsumexp=m:f(axis=-1)'" in reason


def test_every_function_is_audited_with_its_own_reference(tmp_path):
    """functions=all: our kernels of each function and every peer function, each judged against
    its function's reference (a softmax output judged against log_softmax's reference would fail
    everything); a user implementation names the function it computes."""
    pytest.importorskip("scipy")
    config = small_config(functions=["softmax", "log_softmax", "logsumexp"], kernels=["shifted_log1p"],
                          dtypes=["float32"], families=["normal1"], sizes=[5],
                          peers=["numpy", "logsumexp=scipy.special:logsumexp(axis=-1)"])
    records = audit.run(config, tmp_path / "a.json", progress=False)["records"]
    got = {(r["function"], r["implementation"]) for r in records}
    kernels = {(f, f"{f}/shifted_log1p/float32@{c}") for f in ("softmax", "log_softmax", "logsumexp")
               for c in ("float32", "float64")}
    assert got == kernels | {
        ("softmax", "numpy"), ("log_softmax", "numpy"), ("logsumexp", "numpy"),
        ("logsumexp", "logsumexp=scipy.special:logsumexp(axis=-1)"),
    }
    for r in records:
        assert r["status"] == "ok" and r["max_ulp"] <= 8, r
        assert r["within_bound"] is not False
    assert {audit.label(r) for r in records if r["kind"] == "peer"} == {
        "softmax/numpy (float32)", "log_softmax/numpy (float32)", "logsumexp/numpy (float32)",
        "logsumexp/logsumexp=scipy.special:logsumexp(axis=-1) (float32)"}


def test_a_peer_must_compute_an_audited_function():
    config = small_config(functions=["softmax"], peers=["logsumexp=scipy.special:logsumexp"])
    with pytest.raises(audit.AuditError, match="not among --functions"):
        audit.run(config, None, progress=False)
    with pytest.raises(audit.AuditError, match="unknown function"):
        audit.run(small_config(peers=["softmin=m:f"]), None, progress=False)


def rec(**kw):
    base = dict(implementation="numpy", dtype="float32", family="normal1", n=10, status="ok",
                reason=None, max_ulp=3.0, nan_rows=0, inf_rows=0, all_zero_rows=0, missed_nan_rows=0,
                within_bound=None)
    base.update(kw)
    return base


def test_verdict_gates():
    assert audit.verdict([rec()]) == []
    assert "timeout in 1 of 2 cases" in audit.verdict([rec(), rec(status="timeout", reason="slow")])[0]
    (line,) = audit.verdict([rec(implementation="softmax/shifted/float32@float32", within_bound=False)])
    assert "outside its derived error bound" in line
    assert audit.verdict([rec()], max_ulp={"float32": 4}) == []
    assert "above --max-ulp float32=2" in audit.verdict([rec()], max_ulp={"float32": 2})[0]
    assert audit.verdict([rec()], max_ulp={"float16": 2}) == []  # another dtype's limit
    nan = rec(max_ulp=0.0, nan_rows=2)
    assert audit.verdict([nan]) == []
    assert "above --max-ulp" in audit.verdict([nan], max_ulp={"float32": 4})[0]
    assert "2 nan rows" in audit.verdict([nan], fail_on_nonfinite=True)[0]
    missed = rec(max_ulp=0.0, missed_nan_rows=1)
    assert "1 missed_nan rows" in audit.verdict([missed], fail_on_nonfinite=True)[0]


def test_backward_pass_cases_share_one_seeded_cotangent(tmp_path):
    """softmax_vjp: every implementation of a case gets the same g (inputs.cotangent of the
    case's x and seed, reproducible in any process), the kernels are judged against J(x)^T g
    within their bound, a user implementation takes (x, g), and scipy (no backward pass) is not
    asked for one."""
    pytest.importorskip("scipy")
    config = small_config(functions=["softmax_vjp"], kernels=["shifted"], dtypes=["float32"],
                          families=["normal1"], sizes=[6],
                          peers=["numpy", "softmax_vjp=softmax_bench.peers:numpy_softmax_vjp"])
    records = audit.run(config, tmp_path / "a.json", progress=False)["records"]
    got = {r["implementation"] for r in records}
    assert got == {"softmax_vjp/shifted/float32@float32", "softmax_vjp/shifted/float32@float64", "numpy",
                   "softmax_vjp=softmax_bench.peers:numpy_softmax_vjp"}
    for r in records:
        assert r["function"] == "softmax_vjp" and r["status"] == "ok", r
        assert r["within_bound"] is not False
    by = {r["implementation"]: r for r in records}
    # the user's copy of the numpy peer saw the same x and g: the same measured errors
    user = by["softmax_vjp=softmax_bench.peers:numpy_softmax_vjp"]
    assert user["max_ulp"] == by["numpy"]["max_ulp"] and user["max_rel"] == by["numpy"]["max_rel"]
    x = config.make_inputs(("normal1", "float32", 6))
    assert np.array_equal(audit.inputs.cotangent(x, config.seed), audit.inputs.cotangent(x.copy(), config.seed))
    both = small_config(functions=["softmax", "softmax_vjp"], kernels=[], peers=["numpy", "scipy"])
    assert both.implementations("float16") == [("softmax", "numpy"), ("softmax_vjp", "numpy"), ("softmax", "scipy")]
    with pytest.raises(audit.AuditError, match="not among --functions"):
        audit.run(small_config(functions=["softmax_vjp"], peers=["scipy"]), None, progress=False)


def test_a_warm_task_compiles_one_unit_and_outlives_its_failure(monkeypatch):
    """A warm task compiles one kernel, or the reference's phase 1; a failure is left for the
    cases to record."""
    from softmax_bench import reference
    from softmax_bench.kernels import warm

    calls = []
    monkeypatch.setattr(reference, "warm", lambda: calls.append("reference") or 1 / 0)
    monkeypatch.setattr(warm, "warm", lambda ids: calls.append(list(ids)) or 1 / 0)
    assert audit._case_task(None, (None, audit.CompileUnit(audit.REFERENCE))) is None
    assert audit._case_task(None, (None, audit.CompileUnit("k1"))) is None
    assert calls == ["reference", ["k1"]]


class _FakeCaseWorker:
    """The owner's side of a case worker that ends its task when the test says so."""

    def __init__(self):
        self.task, self.sent = None, []

    @property
    def idle(self):
        return self.task is None

    def submit(self, task, key, timeout):
        self.task = key
        self.sent.append(key)
        return True

    def receive(self):
        key, self.task = self.task, None
        return "done", None if isinstance(key, audit.CompileUnit) else {"failed": "not run: a test"}


def test_idle_workers_take_the_next_unit_to_compile_and_cases_wait_for_theirs():
    """Whichever worker is idle compiles the next unit (the reference first), each unit once; a
    case starts only when no worker is still compiling what it runs: a worker that runs out of
    units takes a case whose kernels are ready, or waits, rather than compile them again."""
    config = small_config(dtypes=["float16", "float32"], families=["normal1"], sizes=[2], workers=2)
    run = audit._Run(config, {"records": []}, 0, None, config.cases(), 0, progress=False)
    fast, slow = run.cases = [_FakeCaseWorker(), _FakeCaseWorker()]
    f16, f32 = ([audit.CompileUnit(s.id) for s in config.kernel_specs(d)] for d in ("float16", "float32"))

    def end_task(w):
        run._case_message(w)
        run._dispatch()

    run._dispatch()
    for _ in f16 + f32[1:]:
        end_task(slow)  # the slow worker compiles every kernel while the other the reference
    assert fast.sent == [audit.CompileUnit(audit.REFERENCE)] and slow.sent == f16 + f32
    end_task(fast)
    assert fast.sent[-1] == ("normal1", "float16", 2)  # its kernels are compiled
    end_task(fast)
    assert fast.idle and slow.sent[-1] == f32[-1]  # the float32 case waits for its last kernel
    end_task(slow)
    assert fast.sent[-1] == ("normal1", "float32", 2) and slow.idle and not run.pending


def test_an_inputs_family_may_be_named_like_anything(tmp_path):
    """A user's file ``warm.npy`` gives the family ``warm``: a case like any other (the compile
    tasks are CompileUnit; a ("warm", ...) tuple was once taken for one and crashed the run)."""
    np.save(tmp_path / "warm.npy", np.linspace(-3, 3, 20, dtype=np.float32).reshape(2, 10))
    config = small_config(families=[], inputs=audit.inputs.read_inputs(tmp_path / "warm.npy"))
    records = audit.run(config, None, progress=False)["records"]
    assert {(r["family"], r["dtype"], r["n"]) for r in records} == {("warm", "float32", 10)}
    kernels = {s.id for s in config.kernel_specs("float32")}
    assert sorted(r["implementation"] for r in records) == sorted({"numpy", *kernels})
    assert {r["status"] for r in records} == {"ok"}
