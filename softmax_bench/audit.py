"""The accuracy audit: implementations x formats x input families x sizes against the reference.

A *case* is (family, dtype, n): its inputs are made once, the correctly rounded reference of each
audited function (``functions``: softmax, log_softmax, logsumexp) is computed once, and every
implementation of that function for that dtype (our kernels, every algorithm and compute mode, and
the peers) is measured against it. A record is one (function, implementation) on one case.

Who runs what (softmax_bench.isolation):

- the process that calls :func:`run` owns the results file and runs no implementation;
- *case workers* (``workers`` of them) make a case's inputs and reference and run our kernels on
  it (our code, trusted; each call still guarded against exceptions);
- every peer, built-in or ``--impl``, runs in a process of its own, one call at a time, on a copy
  of the case's input, under ``timeout`` seconds per call and ``memory_limit`` bytes. A peer that
  raises, exits, crashes, hangs or runs out of memory gets a record with that ``status``; its
  process is replaced and every other implementation and case goes on.

Before any case, each peer passes a *contract probe* (:func:`probe_batches`): a small batch must
give the same rows as the rows one at a time, else it does not reduce each row independently
along the last axis and is refused (status ``refused``, with the fix in the reason).

A case is written to the JSON file, atomically, once every implementation has its record (at most
every SAVE_INTERVAL_S seconds, and at the end); an interrupted run writes and keeps every
finished case and ``resume=True`` runs the rest. The file is locked
(a second audit on it refuses), and a file that is not an audit JSON is never overwritten.

JSON: ``{"meta": {"tool", "version", "config", "runs": [...]}, "records": [...]}``; ``config``
holds the settings that decide the records, ``runs`` the provenance and the result-neutral
settings (workers, timeout, memory limit) of every run that added records (``record["run"]`` is
its index). Record fields: see :func:`run`.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from softmax_bench import inputs, metrics, scaleout
from softmax_bench.formats import format_of, ulp_error
from softmax_bench.functions import ALL_ALGORITHMS, FUNCTIONS, GRADIENTS, output_shape
from softmax_bench.isolation import Worker, describe, guarded_call, wait
from softmax_bench.kernels.warm import compile_notice
from softmax_bench.results_io import (hold_lock, json_list_text, json_object_text, json_text,
                                     load_json, provenance, write_json_atomic, write_text_atomic)

__all__ = [
    "AuditConfig", "AuditError", "STATUSES", "MEASURED", "run", "run_case", "load", "label",
    "write_json_atomic", "verdict", "probe_batches", "DEFAULT_SIZES", "DEFAULT_DTYPES", "DEFAULT_TIMEOUT_S",
]

DEFAULT_SIZES = (1, 2, 10, 100, 1000, 10_000)
#: The default audit's formats; float8 (kernels and peers) is audited with --dtypes.
DEFAULT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Elements per case: rows = min(config.rows, ELEMENT_BUDGET // n), at least 1: 16 rows of 10^4
#: (the default --rows) and five 32,000-wide vocabulary rows. Every function's reference has a
#: compiled phase 1 into every format (2e6 to 1e8 elements/s; it was 20,000 when float64 outputs
#: and the backward pass ran in mpmath at ~60,000 elements/s).
ELEMENT_BUDGET = 160_000
#: Seconds one peer call may take. Peers take milliseconds on the audit's cases (160,000 elements);
#: a minute leaves room for a slow pure-Python implementation and still ends a hung one.
DEFAULT_TIMEOUT_S = 60.0
#: Finished cases are written at most this often (and at the end of a run, interrupted or not): the
#: whole file is rewritten each time (7.5 MB for the default audit, 0.4 s), so once per case would
#: cost the owner a minute of CPU on a 320-case run.
SAVE_INTERVAL_S = 5.0
#: Seconds a peer's process may take to start and import its implementation (torch, jax: a few s).
LOAD_TIMEOUT_S = 300.0
#: The compile unit of the reference's phase 1, beside the kernels' ids (:class:`CompileUnit`).
REFERENCE = "reference"
#: Contract probe: a batch row may differ from the same row computed alone by this many ULPs.
#: An implementation may take another vector path for a batch (a few ULPs); one that normalises
#: over the wrong axis is off by a factor of about the number of rows (~1e6 ULPs and more).
PROBE_ULP_BUDGET = 64

#: status -> meaning. Every record has one; only the MEASURED ones carry error metrics.
STATUSES = {
    "ok": "ran and returned an array of the input's shape and dtype; measured",
    "modified_input": "ran but changed its input array in place; measured (its own copy was "
                      "changed, no other implementation saw it)",
    "wrong_dtype": "returned another floating dtype than its input's; measured after rounding to "
                   "the input's format (see returned_dtype)",
    "bad_output": "returned something that is not a floating array of the input's shape",
    "error": "raised an exception (SystemExit and KeyboardInterrupt included)",
    "out_of_memory": "raised MemoryError (its process is capped at --memory-limit)",
    "crashed": "its process died: a fatal signal (e.g. SIGSEGV) or os._exit",
    "timeout": "did not return within --timeout seconds; its process was killed",
    "refused": "failed the contract probe (does not reduce each row independently along the "
               "last axis); not run",
    "no_reference": "the case's inputs or reference could not be made; nothing measured",
}
MEASURED = ("ok", "modified_input", "wrong_dtype")

#: Settings that change no record (a resumed run may change them).
RESULT_NEUTRAL = ("workers", "scheduler", "timeout", "memory_limit", "max_memory")
#: The reference's memory per element of a case, bytes: 0.6 KiB measured on a row of 256,000
#: float32 values, 0.93 KiB reported on others (mpmath numbers); 1 KiB is the budget.
REFERENCE_BYTES_PER_ELEMENT = 1024


class AuditError(ValueError):
    """A usage error the audit refuses to start with (bad file, lock held, settings differ,
    an implementation that cannot be loaded); the message says what to do."""


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory() -> int | None:
    """A quarter of the machine's memory per case (two case workers on 2 cores: half of it)."""
    total = _physical_memory()
    return total // 4 if total else None


def default_memory_limit() -> int | None:
    """Half the machine's memory, per peer process: one runaway allocation fails with
    MemoryError instead of waking the OOM killer."""
    total = _physical_memory()
    return total // 2 if total else None


@dataclass
class AuditConfig:
    kernels: list = field(default_factory=lambda: list(ALL_ALGORITHMS))  # algorithm names
    functions: list = field(default_factory=lambda: list(FUNCTIONS))
    dtypes: list = field(default_factory=lambda: list(DEFAULT_DTYPES))
    families: list = field(default_factory=lambda: list(inputs.DEFAULT_FAMILIES))  # NAME or NAME:N
    sizes: list = field(default_factory=lambda: list(DEFAULT_SIZES))
    rows: int = 16
    seed: int = 0
    peers: list = field(default_factory=lambda: ["numpy"])
    ulp_budget: float = 2.0
    workers: int = 0  # case workers; 0: one per core (per worker thread of a Dask cluster)
    scheduler: str | None = None  # a Dask scheduler's address: the cases run there (scaleout.py)
    timeout: float = DEFAULT_TIMEOUT_S  # seconds per peer call
    memory_limit: int | None = field(default_factory=default_memory_limit)  # bytes per peer process
    #: the user's rows (softmax_bench.inputs.read_inputs): one case each, in the file's dtype
    inputs: list = field(default_factory=list)
    #: bytes a case may need for its reference (REFERENCE_BYTES_PER_ELEMENT each); larger: refused
    max_memory: int | None = field(default_factory=default_max_memory)

    def rows_for(self, n: int) -> int:
        return max(1, min(self.rows, ELEMENT_BUDGET // n))

    def cases(self) -> list[tuple[str, str, int]]:
        """(family, dtype, n): a family at its own sizes (``vocab``, ``vocab:256000``) or at
        --sizes, in every dtype; then each --inputs family once, in its file's dtype."""
        built_in = []
        for text in self.families:
            name, sizes = inputs.parse_family(text)
            built_in += [(name, d, n) for d in self.dtypes for n in (sizes or self.sizes)]
        return list(dict.fromkeys(built_in)) + [(i["family"], i["dtype"], i["n"]) for i in self.inputs]

    def user_input(self, family: str) -> dict | None:
        return next((i for i in self.inputs if i["family"] == family), None)

    def rows_in(self, case) -> int:
        family, _, n = case
        mine = self.user_input(family)
        return min(self.rows_for(n), mine["rows"]) if mine else self.rows_for(n)

    def check_memory(self) -> None:
        """AuditError before anything runs when a case's reference would need more than
        ``max_memory``."""
        if not self.max_memory:
            return
        for case in self.cases():
            need = self.rows_in(case) * case[2] * REFERENCE_BYTES_PER_ELEMENT
            if need > self.max_memory:
                raise AuditError(
                    f"the case {case[0]} {case[1]} n={case[2]} needs about {need / 2**30:.1f} GiB for "
                    f"its reference ({self.rows_in(case)} row(s) of {case[2]} at "
                    f"{REFERENCE_BYTES_PER_ELEMENT // 1024} KiB per element), more than --max-memory "
                    f"{self.max_memory / 2**30:.1f} GiB: audit smaller rows or raise --max-memory"
                )

    def make_inputs(self, case) -> np.ndarray:
        family, dtype, n = case
        mine = self.user_input(family)
        if mine:
            return inputs.load_rows(mine, self.rows_in(case), self.seed)
        return inputs.make(family, dtype, self.rows_for(n), n, seed=self.seed)

    def result_settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in RESULT_NEUTRAL}

    def run_settings(self) -> dict:
        return {k: getattr(self, k) for k in RESULT_NEUTRAL}

    def kernel_specs(self, dtype: str) -> list:
        from softmax_bench.kernels import list_kernels

        return [s for s in list_kernels() if s.algorithm in self.kernels and s.dtype == dtype
                and s.function in self.functions]

    def peer_functions(self, peer: str) -> list[str]:
        """The audited functions ``peer`` provides (:func:`softmax_bench.peers.peer_functions`)."""
        from softmax_bench.peers import peer_functions

        return [f for f in self.functions if f in peer_functions(peer)]

    def implementations(self, dtype: str) -> list[tuple[str, str]]:
        """Every (function, implementation) a case of ``dtype`` must have a record of."""
        return ([(s.function, s.id) for s in self.kernel_specs(dtype)]
                + [(f, p) for p in self.peers for f in self.peer_functions(p)])

    def check(self) -> None:
        """AuditError for settings that cannot mean what was asked."""
        from softmax_bench.peers import peer_functions

        unknown = [f for f in self.functions if f not in FUNCTIONS]
        if unknown:
            raise AuditError(f"unknown function(s) {', '.join(unknown)}; choose from {', '.join(FUNCTIONS)}")
        for p in self.peers:
            try:
                offered = peer_functions(p)
            except ValueError as err:
                raise AuditError(str(err)) from None
            if not any(f in self.functions for f in offered):
                raise AuditError(f"{p!r} computes {', '.join(offered)}, which is not among --functions "
                                 f"{','.join(self.functions)}")


# --- one case: inputs, reference, kernels (runs in a case worker) ----------------------------

def _base_record(function, impl, kind, algorithm, compute, family, dtype, n) -> dict:
    return {
        "function": function, "implementation": impl, "kind": kind, "algorithm": algorithm,
        "dtype": dtype, "compute": compute, "family": family, "n": n,
    }


def status_record(base: dict, status: str, reason: str, rows: int) -> dict:
    """The record of an implementation that produced nothing to measure on a case (no reference,
    a refused or dead peer): its status and reason alone."""
    return {**base, "status": status, "reason": reason, "modified_input": None, "returned_dtype": None,
            "rows": rows}


def judge(base: dict, outcome: dict, x: np.ndarray, exact: np.ndarray, ulp_budget: float,
          spec=None, extra: tuple = (), values=None) -> dict:
    """An implementation's record for a case from what :func:`guarded_call` (or the isolation
    layer: crashed, timeout) said: status, reason and, when it returned an array, the metrics
    (:func:`softmax_bench.metrics.summarise`, ``values`` the exact values) and, for a kernel
    ``spec``, the bound fields."""
    record = dict(base)
    record.update(
        status=outcome["status"], reason=outcome.get("reason"),
        modified_input=outcome.get("modified_input"), returned_dtype=outcome.get("returned_dtype"),
        rows=int(np.prod(x.shape[:-1], dtype=np.int64)),
    )
    y = outcome.get("y")
    if outcome["status"] != "returned" or y is None:
        return record
    problems = []
    if y.dtype != x.dtype:
        problems.append(("wrong_dtype", f"returned {y.dtype.name} for {x.dtype.name} input; "
                                        f"measured after rounding to {x.dtype.name}"))
        with np.errstate(all="ignore"):
            y = y.astype(x.dtype)
    if outcome.get("modified_input"):
        problems.insert(0, ("modified_input", "changed its input array in place"))
    record["status"] = problems[0][0] if problems else "ok"
    record["reason"] = "; ".join(p[1] for p in problems) or None
    err = ulp_error(y, exact)  # (once, for both)
    record.update(metrics.summarise(y, exact, ulp_budget, record["function"], values, err))
    if spec is not None:
        from softmax_bench import bounds

        record.update(bounds.record_fields(spec, x, y, exact, *extra, err=err))
    else:  # peers: no derived bound
        record.update(bound_ulp=None, tightness=None, within_bound=None)
    return record


def operands(function: str, x: np.ndarray, g: np.ndarray | None) -> tuple:
    """The operands after ``x`` that ``function`` takes: ``(g,)`` for a backward pass."""
    return (g,) if function in GRADIENTS else ()


def run_case(config: AuditConfig, family: str, dtype: str, n: int) -> dict:
    """Inputs, reference and kernel records of one case: ``{"x", "g", "exact", "values",
    "no_reference", "records"}`` (``values``: the exact values, ``reference.exact``; ``g``: the backward pass's cotangent, :func:`softmax_bench.inputs.cotangent`;
    ``no_reference``: function -> why its reference could not be made, its implementations get
    ``no_reference`` records), or ``{"failed": reason}`` when the inputs cannot be made."""
    from softmax_bench import reference
    from softmax_bench.bounds.common import shared_sums

    try:
        x = config.make_inputs((family, dtype, n))
        g = inputs.cotangent(x, config.seed) if GRADIENTS & set(config.functions) else None
    except Exception as exc:  # noqa: BLE001 - becomes a no_reference record per implementation
        return {"failed": describe(exc)}
    exact, values, missing = {}, {}, {}
    for f in config.functions:
        try:
            exact[f] = getattr(reference, f)(x, *operands(f, x, g))
            values[f] = reference.exact(f, x, *operands(f, x, g))
        except Exception as exc:  # noqa: BLE001 - this function's records say so
            missing[f] = describe(exc)
    records = []
    with shared_sums(x):  # the kernels' bounds share their row sums (x read-only meanwhile)
        for spec in config.kernel_specs(dtype):
            f = spec.function
            base = _base_record(f, spec.id, "kernel", spec.algorithm, spec.compute, family, dtype, n)
            if f in missing:
                records.append(status_record(base, "no_reference", missing[f],
                                             int(np.prod(x.shape[:-1], dtype=np.int64))))
                continue
            extra = operands(f, x, g)
            outcome = guarded_call(spec.fn, x, output_shape(f, x.shape), extra)
            records.append(judge(base, outcome, x, exact[f], config.ulp_budget, spec, extra,
                                 values[f]))
    return {"x": x, "g": g, "exact": exact, "values": values, "no_reference": missing,
            "records": records}


class CompileUnit(NamedTuple):
    """A case worker's task before the cases: compile one kernel (its id) or the reference's
    phase 1 (:data:`REFERENCE`) into numba's cache (``_Run.to_compile``); a type of its own, as
    a case's family may have any name (an --inputs file's stem)."""

    unit: str


def _case_setup(threads: int):
    """A case worker runs its kernels and phase 1 on ``threads`` numba threads (the cores left
    per worker: 1 by default): with a worker per core, more only oversubscribe the cores, and
    libgomp's idle threads spin while the other workers wait for a core (the default audit,
    warm cache, 2 cores: 47.0 s with 2 threads per worker, 36.1-36.5 with 1). The results do not
    depend on it: each row's operations are in a fixed order, and no row of the audit is split
    across threads (passes.splits: fewer rows than threads; its longest rows come 5 a case)."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _case_task(_state, task):
    config, case = task
    if isinstance(case, CompileUnit):
        from softmax_bench import reference
        from softmax_bench.kernels.warm import warm

        try:
            reference.warm() if case.unit == REFERENCE else warm([case.unit])
        except Exception:  # noqa: BLE001 - the cases that need it will record the error
            pass
        return None
    return run_case(config, *case)


# --- peers (each in its own process) ---------------------------------------------------------

def _peer_setup(name):
    from softmax_bench.peers import get_peer

    return get_peer(name).fns


def _peer_task(fns, task):
    kind, payload = task
    if kind == "call":
        function, x, extra = payload
        return guarded_call(fns[function], x, output_shape(function, x.shape), extra)
    # "probe": per (function, batch), the batch call and each of its rows alone
    answers = []
    for f, b in payload:
        extra = operands(f, b, inputs.cotangent(b))
        answers.append((guarded_call(fns[f], b, output_shape(f, b.shape), extra),
                        [guarded_call(fns[f], row, output_shape(f, row.shape), tuple(e[i] for e in extra))
                         for i, row in enumerate(b)]))
    return answers


def probe_batches(dtypes) -> list[np.ndarray]:
    """One small batch per dtype for the contract probe: 3 rows of 7 at different offsets and
    scales, so normalising over the whole array or the first axis changes every value."""
    rng = np.random.default_rng(12345)
    base = rng.standard_normal((3, 7)) * np.array([[1.0], [2.0], [0.5]]) + np.array([[0.0], [3.0], [-2.0]])
    return [base.astype(format_of(d).dtype) for d in dtypes]


def _probe_verdict(name: str, probes, answers) -> str | None:
    """The refusal reason, or None when the probe passed or could not tell (a call that failed:
    the cases will record that failure)."""
    from softmax_bench.peers import BUILTIN_PEERS, parse_spec, split_function

    for (function, batch), (whole, alone) in zip(probes, answers):
        outs = [whole, *alone]
        if any(o["status"] != "returned" or o["y"] is None for o in outs):
            continue
        rows = np.stack([a["y"] for a in alone])
        if rows.shape != whole["y"].shape:
            continue
        with np.errstate(all="ignore"):
            diff = float(np.max(ulp_error(whole["y"].astype(batch.dtype), rows.astype(batch.dtype))))
        if diff > PROBE_ULP_BUDGET:
            hint = ""
            if name not in BUILTIN_PEERS:
                module, func, kwargs = parse_spec(split_function(name)[1])
                args = ", ".join([f"{k}={v!r}" for k, v in kwargs.items() if k != "axis"] + ["axis=-1"])
                prefix = "" if function == "softmax" else f"{function}="
                hint = f"; if it takes an axis argument, give it: --impl '{prefix}{module}:{func}({args})'"
            return (f"its {function} does not reduce each row independently along the last axis: "
                    f"a batch of {batch.shape[0]} {batch.dtype.name} rows differs from the same rows "
                    f"computed one at a time by up to {diff:.3g} ULP{hint}")
    return None


class _Peer:
    """A peer's process and where it is: loading -> probing -> serving, or refused."""

    def __init__(self, name: str, config: AuditConfig):
        self.name = name
        self.worker = Worker((_peer_setup, (name,)), _peer_task, config.memory_limit, label=name)
        self.worker.deadline = time.monotonic() + LOAD_TIMEOUT_S
        self.state = "loading"  # -> probing -> serving; or refused / dead (no more calls)
        self.failure = self.reason = None  # the status and reason of every case once out
        self.queue: deque = deque()  # (case, function) calls to make
        self.functions = config.peer_functions(name)
        self.probe = [(f, b) for f in self.functions for b in probe_batches(config.dtypes)]

    @property
    def out(self) -> bool:
        """No more calls: refused by the probe, or its process could not be restarted."""
        return self.state in ("refused", "dead")

    def restart(self):
        self.worker.restart()
        self.worker.deadline = time.monotonic() + LOAD_TIMEOUT_S


# --- the run ---------------------------------------------------------------------------------

def load(path: Path) -> dict:
    """Read an audit JSON (non-finite numbers come back as floats); AuditError names the file
    when it cannot be read or is not an audit JSON."""
    try:
        data = load_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise AuditError(f"cannot read {path} as an audit JSON: {err}") from None
    if not (isinstance(data, dict) and isinstance(data.get("meta"), dict)
            and data["meta"].get("tool") == "softmax-bench audit" and isinstance(data.get("records"), list)):
        raise AuditError(f"{path} is not a softmax-bench audit JSON")
    return data


def _case_key(record: dict) -> tuple:
    return record["family"], record["dtype"], record["n"]


def _impl_key(record: dict) -> tuple:
    """(function, implementation): a record's identity within its case (files written before the
    function axis hold softmax records only)."""
    return record.get("function", "softmax"), record["implementation"]


def _meta(config: AuditConfig, runs: list) -> dict:
    import softmax_bench

    return {"tool": "softmax-bench audit", "version": softmax_bench.__version__,
            "config": config.result_settings(), "runs": runs}


def _this_run(config: AuditConfig) -> dict:
    return {**provenance(), "settings": config.run_settings()}


_FLAG = {"peers": "--peers/--impl", "ulp_budget": "ulp_budget (AuditConfig)",
         "inputs": "--inputs (files and their contents)"}


def _resume_from(path: Path, config: AuditConfig) -> tuple[list, list]:
    """(runs, records of complete cases) of an earlier audit in ``path``; AuditError names the
    first setting that differs."""
    previous = load(path)
    old = previous["meta"].get("config", {})
    for key, now in config.result_settings().items():
        if key in old and old[key] != now:
            flag = _FLAG.get(key, f"--{key.replace('_', '-')}")
            raise AuditError(
                f"cannot resume {path}: it was made with {flag} {old[key]} and this run has {now}; "
                "run with the same settings to resume, or without --resume (and another --json) "
                "to start afresh"
            )
    runs = previous["meta"].get("runs") or []
    by_case: dict = {}
    for r in previous["records"]:
        by_case.setdefault(_case_key(r), []).append(r)
    kept = []
    for case in config.cases():
        recs = by_case.get(case, [])
        names = Counter(_impl_key(r) for r in recs)
        if recs and names == Counter(config.implementations(case[1])):
            kept.extend(recs)  # complete: every implementation exactly once
    return runs, kept


def _check_destination(path: Path, resume: bool) -> None:
    if path.exists() and not resume:
        try:
            load(path)
        except AuditError:
            raise AuditError(
                f"{path} exists and is not an audit JSON: refusing to overwrite it "
                "(choose another --json)"
            ) from None
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AuditError(f"cannot create the folder of {path}: {err}") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AuditError(f"cannot write {path}: permission denied")


def _lock(path: Path):
    return hold_lock(path, AuditError, "softmax-bench audit")


def run(config: AuditConfig, json_path: Path | None, resume: bool = False, progress: bool = True) -> dict:
    """Run every case; returns ``{"meta", "records"}`` and keeps ``json_path`` up to date.

    Record fields: function, implementation, kind, algorithm, dtype, compute, family, n, run (index into
    ``meta["runs"]``), status (:data:`STATUSES`), reason (one line, None when ok),
    modified_input, returned_dtype, rows; for MEASURED statuses also
    :func:`softmax_bench.metrics.summarise`'s fields (max_ulp, median_ulp, mean_ulp, max_rel,
    ``<row class>_rows``, spurious_zero, nan_output_rows, max_sum_defect_u, ...) and the
    error-bound fields of :func:`softmax_bench.bounds.record_fields` for kernels (bound_ulp,
    max_ulp_in_domain, tightness, within_bound, ...); peers get bound_ulp/tightness/within_bound
    None.

    Raises AuditError before any case runs when the file or settings are wrong or an
    implementation cannot be loaded; KeyboardInterrupt stops at once, every worker killed,
    every finished case already on disk.
    """
    runs, kept = [], []
    lock = None
    config.check()
    config.check_memory()
    if json_path is not None:
        json_path = Path(json_path)
        _check_destination(json_path, resume)
        lock = _lock(json_path)
    try:
        if resume and json_path is not None and json_path.exists():
            runs, kept = _resume_from(json_path, config)
        runs = runs + [_this_run(config)]
        result = {"meta": _meta(config, runs), "records": kept}
        done = {_case_key(r) for r in kept}
        todo = [c for c in config.cases() if c not in done]
        if todo:
            _Run(config, result, len(runs) - 1, json_path, todo, len(done), progress).execute()
        return result
    finally:
        if lock is not None:
            lock.release()


class _Run:
    """The owner's event loop: case workers make references and kernel records, peer processes
    answer calls, and a case is written as soon as every implementation has its record."""

    def __init__(self, config, result, run_index, json_path, todo, done, progress):
        self.config, self.result, self.run_index, self.json_path = config, result, run_index, json_path
        self.order = {c: i for i, c in enumerate(config.cases())}
        self.pending = deque(todo)
        self.open: dict = {}  # case -> {"x", "exact", "records": {impl: record}}
        self.remaining = len(todo)  # cases not yet written (pending, in a worker, or open)
        self.bar = _progress(len(todo), done, progress)
        self.cases: list[Worker] = []
        self.peers: list[_Peer] = []
        self.unsaved, self.saved_at = False, time.monotonic()
        self.record_texts: dict = {}  # id(record) -> its JSON text (_save)
        dtypes = dict.fromkeys(case[1] for case in todo)  # compile only what these cases run
        self.kernel_ids = list(dict.fromkeys(s.id for d in dtypes for s in config.kernel_specs(d)))
        # what to compile before the cases (into numba's cache, each unit by one worker, taken by
        # whichever is idle: no two workers compile the same code, and they end together), the
        # reference's phase 1 first (the largest unit: 18 s on the Zen 3 VM, a kernel 1-9 s)
        self.to_compile = deque([REFERENCE] + self.kernel_ids)
        self.compiling: set = set()
        self.needs = {d: {REFERENCE, *(s.id for s in config.kernel_specs(d))} for d in dtypes}

    def execute(self):
        config = self.config
        pool = scaleout.executor(0, config.scheduler) if config.scheduler else None
        cores = pool.workers if pool else os.cpu_count() or 1
        workers = min(config.workers or cores, len(self.pending))
        notice = compile_notice(len(self.kernel_ids), workers)
        if notice and not self.bar.disable:
            self.bar.write(notice, file=sys.stderr)
        try:
            for i in range(workers):
                label = f"case worker {i}"
                self.cases.append(scaleout.FutureWorker(pool, _case_task, label) if pool else
                                  Worker((_case_setup, (cores // workers,)), _case_task, label=label))
            for name in config.peers:
                self.peers.append(_Peer(name, config))
            while self.remaining:
                self._dispatch()
                everyone = self.cases + [p.worker for p in self.peers if not p.out]
                deadlines = [w.deadline for w in everyone if w.deadline is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = wait([w.conn for w in everyone], timeout)
                for w in self.cases:
                    if w.conn in ready:
                        self._case_message(w)
                for p in self.peers:
                    if p.out:
                        continue
                    if p.worker.conn in ready:
                        self._peer_message(p)
                    elif p.worker.deadline is not None and time.monotonic() >= p.worker.deadline:
                        self._peer_timeout(p)
        finally:
            for w in self.cases + [p.worker for p in self.peers]:
                w.kill()
            if pool:
                for w in self.cases:
                    w.close()
                pool.shutdown(wait=False, cancel_futures=True)
            self._save()
            self.bar.close()

    # dispatching
    def _dispatch(self):
        for w in self.cases:
            if not w.idle:
                continue
            if self.to_compile:
                task = CompileUnit(self.to_compile.popleft())
                self.compiling.add(task.unit)
                w.submit((None, task), task, None)
            elif (case := self._next_case()) is not None:
                self.pending.remove(case)
                w.submit((self.config, case), case, None)
        for p in self.peers:
            if p.state == "probing" and p.worker.idle:
                calls = sum(1 + len(b) for _, b in p.probe)
                p.worker.submit(("probe", p.probe), "probe", self.config.timeout * calls)
            elif p.state == "serving" and p.worker.idle and p.queue:
                case, function = p.queue.popleft()
                state = self.open[case]
                extra = operands(function, state["x"], state["g"])
                p.worker.submit(("call", (function, state["x"], extra)), (case, function),
                                self.config.timeout)

    def _next_case(self):
        """The first pending case whose kernels and reference no worker is compiling still (it
        would compile them again)."""
        return next((c for c in self.pending if not self.needs[c[1]] & self.compiling), None)

    # case workers
    def _case_message(self, w):
        case = w.task
        kind, payload = w.receive()
        if kind == "ready":
            return
        if kind == "setup_failed" or case is None:
            raise RuntimeError(f"a case worker could not start: {payload}")
        if isinstance(case, CompileUnit):
            self.compiling.discard(case.unit)
            if kind == "died":  # its cases will compile what they need, or record the failure
                w.restart()
            return
        if kind == "died":
            w.restart()
            payload = {"failed": f"the case worker {payload}"}
        self.open[case] = {"x": payload.get("x"), "g": payload.get("g"), "exact": payload.get("exact"),
                           "values": payload.get("values"),
                           "records": {}}
        if "failed" in payload:
            for function, impl in self.config.implementations(case[1]):
                self._record_status(case, function, impl, "no_reference", payload["failed"])
        else:
            for r in payload["records"]:
                self._add(case, r)
            missing = payload.get("no_reference", {})
            for p in self.peers:
                for function in p.functions:
                    if function in missing:
                        self._record_status(case, function, p.name, "no_reference", missing[function])
                    elif p.out:
                        self._record_status(case, function, p.name, p.failure, p.reason)
                    else:
                        p.queue.append((case, function))
        self._maybe_complete(case)

    # peers
    def _peer_message(self, p):
        task, started = p.worker.task, p.worker.ready
        kind, payload = p.worker.receive()
        if kind == "ready":
            p.worker.deadline = None
            p.state = "probing" if p.state == "loading" else p.state
        elif not started:  # it could not start
            self._peer_not_started(p, payload)
        elif kind == "died":
            self._peer_failed(p, task, "crashed", f"its process {payload}")
        elif task == "probe":
            reason = _probe_verdict(p.name, p.probe, payload)
            if reason:
                self.bar.write(f"softmax-bench audit: refusing {p.name}: {reason}")
                self._peer_out(p, "refused", reason)
            else:
                p.state = "serving"
        else:
            self._peer_record(p, task, payload)

    def _peer_timeout(self, p):
        if not p.worker.ready:
            self._peer_not_started(p, f"no answer in {LOAD_TIMEOUT_S:.0f} s")
            return
        limit = self.config.timeout
        self._peer_failed(p, p.worker.task, "timeout", f"no answer within {limit:g} s; its process was killed")

    def _peer_not_started(self, p, reason):
        if p.state == "loading":  # the first start: nothing of it can run
            raise AuditError(f"cannot load implementation {p.name!r}: {reason}")
        self._peer_out(p, "crashed", f"its process could not be restarted: {reason}")

    def _peer_out(self, p, status, reason):
        """No more calls to this peer: every case it has not answered gets ``status``."""
        p.state, p.failure, p.reason = ("refused" if status == "refused" else "dead"), status, reason
        p.worker.kill()
        while p.queue:
            case, function = p.queue.popleft()
            self._record_status(case, function, p.name, status, reason)
            self._maybe_complete(case)

    def _peer_failed(self, p, task, status, reason):
        """The peer's process died or hung on ``task``: record it and start a new process."""
        p.restart()
        if task == "probe":
            p.state = "serving"  # the probe could not tell; every case will record the failure
            return
        case, function = task
        self._record_status(case, function, p.name, status, reason)
        self._maybe_complete(case)

    def _peer_record(self, p, task, outcome):
        case, function = task
        state = self.open[case]
        family, dtype, n = case
        base = _base_record(function, p.name, "peer", p.name, "native", family, dtype, n)
        self._add(case, judge(base, outcome, state["x"], state["exact"][function], self.config.ulp_budget,
                              extra=operands(function, state["x"], state["g"]),
                              values=state["values"][function]))
        self._maybe_complete(case)

    # records
    def _record_status(self, case, function, impl, status, reason):
        family, dtype, n = case
        kind = "peer" if impl in self.config.peers else "kernel"
        spec = next((s for s in self.config.kernel_specs(dtype) if s.id == impl), None)
        algorithm, compute = (spec.algorithm, spec.compute) if spec else (impl, "native")
        base = _base_record(function, impl, kind, algorithm, compute, family, dtype, n)
        self._add(case, status_record(base, status, reason, self.config.rows_in(case)))

    def _add(self, case, record):
        record["run"] = self.run_index
        self.open[case]["records"][_impl_key(record)] = record

    def _maybe_complete(self, case):
        state = self.open.get(case)
        if state is None or len(state["records"]) < len(self.config.implementations(case[1])):
            return
        del self.open[case]
        self.remaining -= 1
        self.result["records"].extend(state["records"].values())
        self.unsaved = True
        if self.remaining == 0 or time.monotonic() - self.saved_at >= SAVE_INTERVAL_S:
            self._save()
        self.bar.update(1)

    def _save(self):
        """Write every finished case (atomically); at most every SAVE_INTERVAL_S during the run,
        and at its end, interrupted or not; the records in case order (sorted here, not per case:
        320 sorts of up to 10,080 records took the owner 0.7 s of a core), each record's JSON
        text made once (dumping the whole growing file at every save took the owner 7.7 s of a
        core in a 52 s warm default audit)."""
        if self.unsaved:
            self.result["records"].sort(key=lambda r: (self.order[_case_key(r)],
                                                       FUNCTIONS.index(r["function"]), r["implementation"]))
        if self.json_path is not None and self.unsaved:
            texts = self.record_texts  # each record's text made once (the same bytes as one dump)
            for r in self.result["records"]:
                if id(r) not in texts:  # (a record is final, and kept, once in the result)
                    texts[id(r)] = json_text(r, 2)
            records = [texts[id(r)] for r in self.result["records"]]
            write_text_atomic(self.json_path, json_object_text(
                {"meta": json_text(self.result["meta"], 1), "records": json_list_text(records, 1)}) + "\n")
        self.unsaved, self.saved_at = False, time.monotonic()


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total + initial, initial=initial, disable=not enabled, unit="case", desc="audit")


# --- the verdict -----------------------------------------------------------------------------

def label(record: dict) -> str:
    """How reports and verdicts name a record's implementation: a kernel by its id (which names
    its function and dtype), a peer as ``function/peer (dtype)``."""
    impl = record["implementation"]
    if record.get("kind") == "kernel" or "@" in impl:
        return impl
    return f"{record.get('function', 'softmax')}/{impl} ({record['dtype']})"


def _where(records, limit=3) -> str:
    places = [f"{r['family']} {r['dtype']} n={r['n']}" for r in records[:limit]]
    more = f" and {len(records) - limit} more" if len(records) > limit else ""
    return ", ".join(places) + more


def verdict(records: list[dict], max_ulp: dict | None = None, fail_on_nonfinite: bool = False) -> list[str]:
    """Why the audit fails: one line per implementation and reason (empty: it passes).

    - any status other than ``ok`` (an implementation that failed to run, was refused, changed
      its input or returned another dtype);
    - a kernel outside its derived error bound (``within_bound`` False);
    - ``max_ulp`` (dtype -> ULPs): an error above the limit, or any row that is NaN or inf where
      the reference is a number, or a number where the reference is NaN (infinitely wrong);
    - ``fail_on_nonfinite``: NaN, inf or all-zero rows where the reference is finite, and
      numbers where the reference is NaN.
    """
    lines = []
    by_impl: dict = {}
    for r in records:
        by_impl.setdefault((label(r), r["dtype"]), []).append(r)
    for (name, dtype), recs in by_impl.items():
        bad = [r for r in recs if r.get("status", "ok") != "ok"]
        for status in dict.fromkeys(r["status"] for r in bad):
            some = [r for r in bad if r["status"] == status]
            lines.append(f"{name}: {status} in {len(some)} of {len(recs)} cases ({_where(some)}): "
                         f"{some[0].get('reason')}")
        measured = [r for r in recs if r.get("status", "ok") in MEASURED]
        out = [r for r in measured if r.get("within_bound") is False]
        if out:
            lines.append(f"{name}: outside its derived error bound in {len(out)} cases ({_where(out)})")
        nonfinite_keys = ("nan_rows", "inf_rows", "missed_nan_rows")
        if max_ulp and dtype in max_ulp:
            limit = max_ulp[dtype]
            over = [r for r in measured if r["max_ulp"] > limit or any(r.get(k, 0) for k in nonfinite_keys)]
            if over:
                worst = max(r["max_ulp"] for r in over)
                lines.append(f"{name}: above --max-ulp {dtype}={limit:g} in {len(over)} cases "
                             f"({_where(over)}); largest finite error {worst:.3g} ULP")
        if fail_on_nonfinite:
            keys = nonfinite_keys + ("all_zero_rows",)
            nonfinite = [r for r in measured if any(r.get(k, 0) for k in keys)]
            if nonfinite:
                counts = {k[:-5]: sum(r.get(k, 0) for r in nonfinite) for k in keys}
                what = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
                lines.append(f"{name}: rows not finite where the reference is, or the reverse: "
                             f"{what} rows ({_where(nonfinite)})")
    return lines


def status_counts(records: list[dict]) -> dict:
    """:func:`label` -> {status: cases} for every implementation with a status other than ok."""
    out: dict = {}
    for r in records:
        status = r.get("status", "ok")
        if status != "ok":
            out.setdefault(label(r), Counter())[status] += 1
    return out

