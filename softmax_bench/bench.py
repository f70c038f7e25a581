"""Timings of the softmax kernels against their peers and a memory copy, all in one process.

For every case (storage dtype and shape; softmax along the last axis) the same input array is
given to:

- the registered softmax kernels (default ``shifted`` and ``naive``, ``--algorithms`` for others,
  e.g. ``online two_pass``; for 16-bit formats both compute modes), called as ``f(x)``
  (allocating their result, like the peers), and every algorithm but naive also as
  ``f(x, out=out)`` into a preallocated array (like the copy: a fresh output of tens of MB costs
  page faults and zeroing on first touch, which the copy does not pay);
- numpy composed: ``e = np.exp(x - x.max(-1, keepdims=True)); e / e.sum(-1, keepdims=True)``;
- ``scipy.special.softmax(x, axis=-1)`` and ``torch.softmax(torch.from_numpy(x), -1)`` (with
  ``torch.set_num_threads(2)``) when importable;
- ``np.copyto(out, x)`` into a preallocated array: one read and one write of every element, the
  memory floor of any out-of-place softmax.

Method: every implementation is called once first (numba compiles or loads its cache, peers warm
up); then rounds of one call of each implementation in turn (interleaved, so that a change in
machine load hits all of them alike) until the case has had ``--min-repeat`` rounds and spent
``--budget`` seconds, or ``--max-repeat`` rounds. Reported per implementation: median, quartiles,
min and max of the wall times, ns per element (median / elements), and ratios of medians
``implementation / peer`` for every kernel. Results go to a printed table and to JSON (written
atomically: a temporary file in the same directory, then ``os.replace``).

Run: ``softmax-bench bench [--quick] [--out PATH] [--cases SUBSTRING ...]`` (or
``python -m softmax_bench.bench``). A load average above half the cores is warned about.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from softmax_bench.results_io import provenance, write_json_atomic

__all__ = ["main", "run", "CASES", "Case"]

_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    dtype: str
    shape: tuple[int, ...]
    computes: tuple[str, ...]  # compute precisions of the kernels timed on this case

    @property
    def name(self) -> str:
        return f"{self.dtype} {'x'.join(str(s) for s in self.shape)}"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


_SHAPES = [(1000,), (100_000,), (10_000_000,), (4096, 1024), (65536, 10)]
CASES: tuple[Case, ...] = tuple(
    Case(dt, shape, computes)
    for dt, computes in [
        ("float32", ("float32",)),
        ("float64", ("float64",)),
        ("float16", ("float32", "float16")),
        ("bfloat16", ("float32", "bfloat16")),
    ]
    for shape in _SHAPES
)
_QUICK_SHAPES = {(1000,), (100_000,), (256, 1024), (4096, 10)}
QUICK_CASES: tuple[Case, ...] = tuple(
    Case(dt, shape, computes)
    for dt, computes in [("float32", ("float32",)), ("float64", ("float64",)), ("float16", ("float32", "float16")),
                         ("bfloat16", ("float32", "bfloat16"))]
    for shape in sorted(_QUICK_SHAPES, key=lambda s: (len(s), s))
)


def _numpy_composed(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _peers(x: np.ndarray, use_torch: bool) -> dict[str, Callable[[], object]]:
    """name -> zero-argument callable for the peers that are installed and accept ``x``."""
    peers: dict[str, Callable[[], object]] = {"numpy": lambda: _numpy_composed(x)}
    try:
        import scipy.special

        peers["scipy"] = lambda: scipy.special.softmax(x, axis=-1)
    except ImportError:
        pass
    if use_torch:
        try:
            import torch

            torch.set_num_threads(2)
            if x.dtype.name == "bfloat16":  # ml_dtypes arrays cross as their bits
                tx = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
            else:
                tx = torch.from_numpy(x)
            peers["torch"] = lambda: torch.softmax(tx, -1)
        except ImportError:
            pass
    out = np.empty_like(x)
    peers["copy"] = lambda: np.copyto(out, x)
    return peers


def _stats(times: list[float], size: int) -> dict:
    t = np.array(times)
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "min_s": float(t.min()),
        "max_s": float(t.max()),
        "repeats": int(t.size),
        "ns_per_element": float(med / size * 1e9),
    }


def time_case(case: Case, *, budget: float, min_repeat: int, max_repeat: int, use_torch: bool,
              algorithms=("shifted", "naive")) -> dict:
    """Time every implementation on one case; returns the JSON record of the case."""
    from softmax_bench.kernels import get_kernel

    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.shape).astype(case.dtype)
    impls: dict[str, Callable[[], object]] = {}
    out = np.empty_like(x)
    for algorithm in algorithms:
        for compute in case.computes:
            spec = get_kernel(algorithm, case.dtype, compute)
            impls[spec.id] = (lambda f: lambda: f(x))(spec.fn)
            if algorithm != "naive":  # into a preallocated array, like the copy
                impls[spec.id + " out="] = (lambda f: lambda: f(x, out=out))(spec.fn)
    kernel_names = list(impls)
    impls.update(_peers(x, use_torch))
    unsupported = {}
    for name, f in list(impls.items()):  # warm-up: compile / load caches, first-touch memory
        try:
            with np.errstate(all="ignore"):
                f()
        except Exception as err:  # a peer that does not take this dtype
            unsupported[name] = f"{type(err).__name__}: {err}"
            del impls[name]
    times: dict[str, list[float]] = {name: [] for name in impls}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_repeat and (rounds < min_repeat or time.perf_counter() - start < budget):
        for name, f in impls.items():
            with np.errstate(all="ignore"):
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
        rounds += 1
    results = {name: _stats(ts, case.size) for name, ts in times.items()}
    peers = [p for p in ("numpy", "scipy", "torch", "copy") if p in results]
    ratios = {
        k: {p: results[k]["median_s"] / results[p]["median_s"] for p in peers}
        for k in kernel_names
        if k in results
    }
    return {
        "case": case.name,
        "dtype": case.dtype,
        "shape": list(case.shape),
        "elements": case.size,
        "results": results,
        "ratios": ratios,
        "unsupported": unsupported,
    }


def meta() -> dict:
    import numba

    info = {**provenance(), "numba_threads": numba.get_num_threads()}
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _fmt_table(records: list[dict]) -> str:
    peers = ("numpy", "scipy", "torch", "copy")
    lines = []
    head = f"{'case':22s} {'implementation':28s} {'median ms':>10s} {'IQR ms':>15s} {'ns/el':>8s}  " + " ".join(
        f"{'/' + p:>7s}" for p in peers
    )
    lines.append(head)
    lines.append("-" * len(head))
    for rec in records:
        for name, r in rec["results"].items():
            rat = rec["ratios"].get(name, {})
            cols = " ".join(f"{rat[p]:7.2f}" if p in rat else f"{'':7s}" for p in peers)
            iqr = f"{r['q1_s'] * 1e3:.3f}-{r['q3_s'] * 1e3:.3f}"
            lines.append(
                f"{rec['case']:22s} {name:28s} {r['median_s'] * 1e3:10.3f} {iqr:>15s} "
                f"{r['ns_per_element']:8.3f}  {cols}"
            )
        for name, why in rec["unsupported"].items():
            lines.append(f"{rec['case']:22s} {name:28s} unsupported ({why[:60]})")
        lines.append("")
    return "\n".join(lines)


def run(cases, *, budget=2.0, min_repeat=7, max_repeat=201, use_torch=True, progress=print,
        algorithms=("shifted", "naive")) -> dict:
    """Time ``cases``; returns {"meta": ..., "cases": [...]}."""
    info = meta()
    records = []
    for case in cases:
        t0 = time.perf_counter()
        records.append(
            time_case(case, budget=budget, min_repeat=min_repeat, max_repeat=max_repeat, use_torch=use_torch,
                      algorithms=algorithms)
        )
        if progress:
            progress(f"  {case.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    try:
        info["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    return {"meta": info, "cases": records}


def loaded_warning(info: dict) -> str | None:
    """A warning when the 1-minute load average, at the start or the end, was above half the
    cores: another process shared the CPUs and the ratios are suspect (PERF_NOTES: 2-thread
    kernels collapse under load)."""
    cores = os.cpu_count() or 1
    loads = [info[k][0] for k in ("loadavg_start", "loadavg_end") if k in info]
    if loads and max(loads) > 0.5 * cores:
        return (f"warning: the machine was loaded (1-minute load average up to {max(loads):.2f} on "
                f"{cores} cores): timings and ratios are not those of a quiet machine")
    return None


def _default_out() -> Path:
    root = _REPO if (_REPO / "pyproject.toml").is_file() else Path.cwd()
    return root / "results" / "bench" / "bench.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="softmax-bench bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes only (a smoke run)")
    p.add_argument("--cases", nargs="*", default=None, help="keep cases whose name contains any of these")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default results/bench/bench.json)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case (default 2)")
    p.add_argument("--min-repeat", type=int, default=7)
    p.add_argument("--max-repeat", type=int, default=201)
    p.add_argument("--no-torch", action="store_true", help="do not time torch even if installed")
    from softmax_bench.functions import ALGORITHMS

    p.add_argument("--algorithms", nargs="+", default=["shifted", "naive"], choices=ALGORITHMS["softmax"],
                   help="softmax algorithms to time (default: shifted naive)")
    args = p.parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = [c for c in cases if any(s in c.name for s in args.cases)]
    data = run(cases, budget=args.budget, min_repeat=args.min_repeat, max_repeat=args.max_repeat,
               use_torch=not args.no_torch, algorithms=tuple(args.algorithms))
    print(_fmt_table(data["cases"]))
    loaded = loaded_warning(data["meta"])
    if loaded:
        print(loaded, file=sys.stderr)
    out = args.out or _default_out()
    write_json_atomic(out, data)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
