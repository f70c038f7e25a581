"""The accuracy audit: implementations x formats x input families x sizes against the reference.

A *case* is (family, dtype, n): its inputs are made once, the correctly rounded reference is
computed once, and every implementation for that dtype (our kernels, every compute mode, and the
peers) is measured against it. Cases run in worker processes (spawned, so numba's thread pool is
never forked); each finished case is written to the JSON file at once, atomically, so an
interrupted run keeps what it finished and ``--resume`` picks up the rest.

JSON: ``{"meta": {...}, "records": [...]}``; see :func:`run` for the record fields.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from softmax_bench import inputs, metrics
from softmax_bench.results_io import load_json, provenance, write_json_atomic

__all__ = ["AuditConfig", "run", "run_case", "load", "write_json_atomic", "DEFAULT_SIZES"]

DEFAULT_SIZES = (1, 2, 10, 100, 1000, 10_000)
#: Elements per case: rows = min(config.rows, ELEMENT_BUDGET // n), at least 1. It bounds the
#: reference's cost per case (about 0.4 s at ~57,000 elements/s).
ELEMENT_BUDGET = 20_000


@dataclass
class AuditConfig:
    kernels: list = field(default_factory=lambda: ["naive", "shifted"])
    dtypes: list = field(default_factory=lambda: ["float16", "float32", "float64"])
    families: list = field(default_factory=inputs.family_names)
    sizes: list = field(default_factory=lambda: list(DEFAULT_SIZES))
    rows: int = 16
    seed: int = 0
    peers: list = field(default_factory=lambda: ["numpy"])
    ulp_budget: float = 2.0
    workers: int = 0  # 0: one per core

    def rows_for(self, n: int) -> int:
        return max(1, min(self.rows, ELEMENT_BUDGET // n))

    def cases(self) -> list[tuple[str, str, int]]:
        return [(f, d, n) for f in self.families for d in self.dtypes for n in self.sizes]


def _implementations(config: AuditConfig, dtype: str) -> list[dict]:
    """What runs on a case of ``dtype``: registered kernels of the chosen algorithms (every compute
    mode), then the peers. Each entry: name, kind, algorithm, compute, fn(x) -> y."""
    from softmax_bench.kernels import list_kernels
    from softmax_bench.peers import get_peer

    impls = [
        {
            "implementation": spec.id,
            "kind": "kernel",
            "spec": spec,
            "algorithm": spec.algorithm,
            "compute": spec.compute,
            "fn": spec.fn,
        }
        for spec in list_kernels()
        if spec.algorithm in config.kernels and spec.dtype == dtype
    ]
    for name in config.peers:
        peer = get_peer(name)
        impls.append(
            {"implementation": name, "kind": "peer", "algorithm": name, "compute": "native", "fn": peer}
        )
    return impls


def run_case(config: AuditConfig, family: str, dtype: str, n: int) -> list[dict]:
    """Records for one case: the reference once, then every implementation against it."""
    from softmax_bench import reference

    x = inputs.make(family, dtype, config.rows_for(n), n, seed=config.seed)
    exact = reference.softmax(x)
    records = []
    for impl in _implementations(config, dtype):
        with np.errstate(all="ignore"):  # overflow/invalid are what the audit measures
            y = np.asarray(impl["fn"](x))
        returned = y.dtype.name
        if y.dtype != x.dtype:
            y = y.astype(x.dtype)  # a peer that widened: judged in the input's format
        record = {
            "implementation": impl["implementation"],
            "kind": impl["kind"],
            "algorithm": impl["algorithm"],
            "dtype": dtype,
            "compute": impl["compute"],
            "returned_dtype": returned,
            "family": family,
            "n": n,
        }
        record.update(metrics.summarise(y, exact, config.ulp_budget))
        if impl["kind"] == "kernel":
            from softmax_bench import bounds

            record.update(bounds.record_fields(impl["spec"], x, y, exact))
        else:  # peers: no derived bound
            record.update(bound_ulp=None, tightness=None, within_bound=None)
        records.append(record)
    return records


def _meta(config: AuditConfig) -> dict:
    import softmax_bench

    return {
        "tool": "softmax-bench audit",
        "version": softmax_bench.__version__,
        **provenance(),
        "config": asdict(config),
    }


def load(path: Path) -> dict:
    """Read an audit JSON (non-finite numbers come back as floats)."""
    return load_json(path)


def _case_key(record: dict) -> tuple:
    return record["family"], record["dtype"], record["n"]


def run(config: AuditConfig, json_path: Path | None, resume: bool = False, progress: bool = True) -> dict:
    """Run every case; returns ``{"meta", "records"}`` and keeps ``json_path`` up to date.

    Record fields: implementation, kind, algorithm, dtype, compute, returned_dtype, family, n,
    then :func:`softmax_bench.metrics.summarise`'s fields (rows, max_ulp, median_ulp, mean_ulp,
    max_rel, nan_rows, inf_rows, all_zero_rows, spurious_zero, ... ), then the error-bound fields
    of :func:`softmax_bench.bounds.record_fields` for kernels (bound_ulp, max_ulp_in_domain,
    tightness, within_bound, bound_violations, outside_bound_domain_rows and _reasons,
    outside_domain_failed_rows); peers get ``bound_ulp``/``tightness``/``within_bound`` None.
    """
    result = {"meta": _meta(config), "records": []}
    done = set()
    if resume and json_path is not None and Path(json_path).exists():
        previous = load(json_path)
        if previous["meta"]["config"] != result["meta"]["config"]:
            raise ValueError(
                f"{json_path} was made with another configuration; run without --resume "
                "to start afresh, or with the same flags to resume"
            )
        result["records"] = previous["records"]
        done = {_case_key(r) for r in previous["records"]}
    todo = [c for c in config.cases() if c not in done]
    # Fail fast, in this process, on a peer or kernel that cannot run at all.
    for dtype in config.dtypes:
        _implementations(config, dtype)

    workers = config.workers or os.cpu_count() or 1
    bar = _progress(len(todo), len(done), progress)
    order = {c: i for i, c in enumerate(config.cases())}
    try:
        if workers == 1 or len(todo) <= 1:
            for case in todo:
                _collect(result, run_case(config, *case), json_path, order, bar)
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(run_case, config, *case) for case in todo]
                for fut in cf.as_completed(futures):
                    _collect(result, fut.result(), json_path, order, bar)
    finally:
        bar.close()
    return result


def _collect(result, records, json_path, order, bar):
    result["records"].extend(records)
    result["records"].sort(key=lambda r: (order[_case_key(r)], r["implementation"]))
    if json_path is not None:
        write_json_atomic(json_path, result)
    bar.update(1)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total + initial, initial=initial, disable=not enabled, unit="case", desc="audit")
