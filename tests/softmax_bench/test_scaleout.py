"""softmax_bench.scaleout: the audit's cases and the exhaustive sweep's chunks on a Dask
``LocalCluster`` (loopback only) give the records and totals of the default local run."""
import pytest

from softmax_bench import audit, exhaustive, scaleout

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster():
    # processes, one thread each, as the module docstring asks of a real cluster
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local.scheduler_address


def config(**kw):
    base = dict(kernels=["naive", "shifted"], functions=["softmax", "log_softmax"],
                dtypes=["float16", "float32"], families=["normal1", "far_positive"], sizes=[2, 10],
                rows=3, peers=["numpy"])
    return audit.AuditConfig(**{**base, **kw})


def without_run(records):
    return [{k: v for k, v in r.items() if k != "run"} for r in records]


def test_an_audit_on_a_local_cluster_equals_the_default_run(cluster, tmp_path):
    local = audit.run(config(), None, progress=False)
    on_dask = audit.run(config(scheduler=cluster), tmp_path / "a.json", progress=False)
    c = config()
    assert len(local["records"]) == sum(len(c.implementations(case[1])) for case in c.cases())
    assert {r["status"] for r in local["records"]} == {"ok"}
    assert without_run(on_dask["records"]) == without_run(local["records"])
    assert on_dask["meta"]["runs"][0]["settings"]["scheduler"] == cluster
    assert on_dask["meta"]["config"] == local["meta"]["config"]  # the scheduler changes no record


def test_an_exhaustive_sweep_on_a_local_cluster_equals_the_default_run(cluster, tmp_path):
    sweep = exhaustive.Sweep("float8_e5m2", "softmax",
                             implementations=("softmax/online/float8_e5m2@float32", "numpy"))
    local = exhaustive.run(sweep, None, workers=2, progress=False)
    on_dask = exhaustive.run(sweep, tmp_path / "s.json", scheduler=cluster, progress=False)
    assert on_dask["totals"] == local["totals"]
    assert sorted(on_dask["done"]) == sweep.chunks()
    assert local["totals"]["numpy"]["rows"] == 2**16


def test_a_task_that_fails_on_the_cluster_is_reported_as_died(cluster):
    # the audit's own case task (the workers import it; a function of this test module they
    # could not): a malformed task raises there, a good one returns the case
    pool = scaleout.executor(0, cluster)
    try:
        worker = scaleout.FutureWorker(pool, audit._case_task)
        worker.submit(None, "key", None)
        assert scaleout.wait([worker.conn], 120) == [worker.conn]
        kind, reason = worker.receive()
        assert kind == "died" and "TypeError" in reason and worker.idle
        worker.submit((config(), ("normal1", "float32", 2)), "key", None)
        scaleout.wait([worker.conn], 120)
        kind, case = worker.receive()
        assert kind == "done" and {r["status"] for r in case["records"]} == {"ok"}
    finally:
        pool.shutdown()


def test_a_cancelled_task_never_answers_for_the_next(cluster):
    pool = scaleout.executor(0, cluster)
    try:
        worker = scaleout.FutureWorker(pool, audit._case_task)
        worker.submit((config(), ("normal1", "float32", 10)), "first", None)
        worker.restart()  # cancelled: its wake-up byte may come after the next submission
        worker.submit((config(), ("normal1", "float32", 2)), "second", None)
        kinds = []
        while not kinds or kinds[-1][0] != "done":
            assert scaleout.wait([worker.conn], 120) == [worker.conn]
            kinds.append(worker.receive())
        assert {k for k, _ in kinds[:-1]} <= {"ready"}
        assert kinds[-1][1]["records"][0]["n"] == 2 and worker.idle
        worker.close()
    finally:
        pool.shutdown()


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(scaleout, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(scaleout.ScaleOutError, match="cannot reach the Dask scheduler"):
        scaleout.executor(0, "tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="cannot reach"):
        audit.run(config(scheduler="tcp://127.0.0.1:9"), None, progress=False)
