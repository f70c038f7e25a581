"""Timings of the kernels against their peers and a memory copy, all in one process.

For every case of the grid (:data:`CASES`: storage format and shape; the function along the last
axis) and one function (``--function``: softmax, log_softmax or logsumexp), the same input array
(standard normal, rounded to the format) is given to:

- the registered kernels of the function (softmax: ``shifted`` and ``naive`` by default,
  ``--algorithms`` for others, e.g. ``online two_pass``; for 16-bit formats both compute modes),
  called as ``f(x)`` (allocating their result, like the peers), and every algorithm but naive
  also as ``f(x, out=out)`` into a preallocated array (like the copy: a fresh output of tens of
  MB costs page faults and zeroing on first touch, which the copy does not pay);
- numpy composed (shifted by the row maximum, in the input's dtype);
- ``scipy.special.<function>(x, axis=-1)`` and ``torch.<function>(torch.from_numpy(x), -1)``
  (with ``torch.set_num_threads(2)``) when importable, torch also with ``out=`` into a
  preallocated tensor (``torch out=``: our ``out=`` calls are compared with it, our allocating
  calls with torch's; torch has no float8 softmax on the CPU: recorded as unsupported);
- ``jax.nn.<function>(x, axis=-1)`` when jax imports: jit-compiled, ``x`` placed on the device
  once, each call waited for (``block_until_ready``; jax dispatches asynchronously), allocating
  (jax has no ``out=``), on XLA's own thread pool; x64 on, so float64 stays float64. Its pool
  sleeps when idle (no CPU time in the 2-50 ms after its calls, where numba's and torch's spin
  ~10 ms), so it leaves no spinning threads behind;
- ``np.copyto(out, x)`` into a preallocated array: one read and one write of every element, the
  memory floor of any out-of-place softmax.

Method: every implementation is first called until its timings settle (three calls in a row
within 20% of each other, at most 50 calls or 1 s: numba compiles or loads its cache, torch's
first calls on a new shape allocate and run 4x slower); then rounds of one timing of each
implementation in turn (interleaved, so that a change in machine load hits all of them alike;
each round in a new random order, so that none always comes first or after the same one: the
first call after another implementation's calls pays for what they left: a heap that the
allocator trimmed and must grow again with page faults, a thread pool still spinning on the
cores. So each timing starts after one untimed call, and times the steady state a program
calling one implementation sees. Rounds that only started one implementation further along, the
first call timed, kept every implementation after the same one: in the float16 10^5 case the
allocating shifted kernel came right after the peers, whose float16 temporaries had just been
freed, in every round it did not start, and read 251 us, where the naive kernel's allocating
call, the same allocations later in the round, read 63 us. A random order alone, the first call
still timed, read bfloat16 4096 x 1024 0.90 -> 1.04 of torch: torch's libgomp threads spin for a
while after its calls, though this VM's noise was not ruled out. Measured since: torch's and
numba's pools (both libgomp) keep a core busy ~10 ms after a call, and our float32 65536 x 64
softmax timed right after torch calls read 1,952 us (IQR 1,565-2,711) against 1,497 (1,474-1,537)
back to back; a 20 ms pause before each implementation's calls, tried, made it worse on this VM,
timings up to 8 ms for a 0.7 ms call: idle vCPUs wake slowly) until the case has had
``--min-repeat`` rounds and spent ``--budget`` seconds, or ``--max-repeat`` rounds. A timing is
of back-to-back calls, as many as make it last :data:`TIMING_MIN_S` (one call for most cases;
~40 for a 1,000-element row), divided by their number, as ``timeit`` does: one call of 1 us
timed alone is mostly the timer and the caches the other implementations of the round left cold
(it read 5-7 us here), not the call. Reported per implementation: median, quartiles, min and
max of the wall times, ns per element (median / elements), and ratios ``implementation / peer``
for every kernel: the median and quartiles of the round-by-round ratios (:func:`_ratios`,
:func:`paired_quartiles`; runs before 2026-11-28 gave the ratio of the two medians; on the
2-core Zen 4 VM of the README, float32 16384 x 128 read 0.86, 1.08, 1.14 and 1.23 of torch in
four runs minutes apart, with one or three untimed calls before a timing, and one run's
round-by-round quartiles 1.11-1.33: a ratio is known to about that much, there).
Results go to a printed table, to JSON, Markdown and a PNG plot
(``results/bench/FUNCTION.{json,md,png}``, each written atomically), with the machine (CPU model,
ISA flags), the load average and the share of CPU time other processes and the hypervisor took
during the run (from ``/proc/stat``, less this process's own); above 5% the run is marked loaded.
Before each round a fixed loop is timed on every CPU (:func:`cpu_probe`): a round where it ran
more than 1.2x slower than its fastest in the run is *slowed*, and above 10% of slowed rounds the
run is marked too. On the README's Zen 4 VM the vCPUs slow down by 1.3-1.7x for seconds at a
time, one or both, with no steal time in ``/proc/stat``; float32 65536 x 64 on two threads then
read 2.4-2.9 ms for ours and 2.2-2.5 for torch, against 1.4-1.5 and 1.8-1.9 with both vCPUs
fast (one process, 90 s, interleaved). Every case with at least :data:`QUIET_MIN` quiet rounds
(none slowed) gets its ratios over those rounds too (``ratios_quiet``); ``--quiet-rounds N``
keeps timing a case until N of its rounds are quiet against the fastest probe so far (or
``--max-repeat`` rounds), where ``--budget`` would leave a slow case with a handful (the Zen 3 VM
of the README, 2026-11-29, 81% of the rounds slowed, 40 s a case: 6 quiet rounds for float64
64 x 128,000, 995 for float32 10^5; with ``--quiet-rounds 20``, 20 of 181). A faster probe later
in the run can reclassify a case's rounds as slowed, leaving it a round or two short.

Run: ``softmax-bench bench [--quick] [--function F] [--shapes RxN ...] [--cases SUBSTRING ...]
[--no-torch] [--no-jax] [--quiet-rounds N] [--out PATH]`` (``--shapes``: your own shapes, in
every format, instead of the grid's).
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from softmax_bench.results_io import atomic_write, provenance, write_json_atomic

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


#: The standard grid: the shapes users time (one 1,000-element row: call overhead; a 10^5 row; a
#: 10^7 row: memory; a 4096 x 1024 batch; many 10-element rows; a batch of 128,000-wide vocabulary
#: rows) in every storage format, each with the compute modes of its kernels.
_SHAPES = [(1000,), (100_000,), (10_000_000,), (4096, 1024), (65536, 10), (64, 128_000)]
_COMPUTES = [
    ("float32", ("float32",)),
    ("float64", ("float64",)),
    ("float16", ("float32", "float16")),
    ("bfloat16", ("float32", "bfloat16")),
    ("float8_e4m3fn", ("float32",)),
    ("float8_e5m2", ("float32",)),
]


def _cases_of(shapes, computes=_COMPUTES) -> tuple[Case, ...]:
    """Every shape in every storage format of ``computes``, format by format."""
    return tuple(Case(dt, shape, comp) for dt, comp in computes for shape in shapes)


CASES: tuple[Case, ...] = _cases_of(_SHAPES)
_QUICK_SHAPES = [(1000,), (100_000,), (4096, 10), (256, 1024)]
QUICK_CASES: tuple[Case, ...] = _cases_of(_QUICK_SHAPES, _COMPUTES[:4])

#: The functions ``bench`` times, with their default algorithms.
DEFAULT_ALGORITHMS = {"softmax": ("shifted", "naive"), "log_softmax": ("shifted",),
                      "logsumexp": ("shifted",)}


def _numpy_composed(function: str, x):
    """The function as numpy users write it: shifted by the row maximum, in x's dtype."""
    m = x.max(axis=-1, keepdims=True)
    if function == "softmax":
        e = np.exp(x - m)
        return e / e.sum(axis=-1, keepdims=True)
    d = x - m
    lse = np.log(np.exp(d).sum(axis=-1, keepdims=True))
    return d - lse if function == "log_softmax" else (m + lse)[..., 0]


def _peers(function: str, x: np.ndarray, use_torch: bool, use_jax: bool) -> dict[str, Callable[[], object]]:
    """name -> zero-argument callable for the peers that are installed and accept ``x`` (jax,
    installed but failing to set up, raises its error when called: recorded as unsupported)."""
    peers: dict[str, Callable[[], object]] = {"numpy": lambda: _numpy_composed(function, x)}
    try:
        import scipy.special

        scipy_fn = getattr(scipy.special, function)
        peers["scipy"] = lambda: scipy_fn(x, axis=-1)
    except ImportError:
        pass
    if use_torch:
        try:
            import torch

            torch.set_num_threads(2)
            if x.dtype.name == "bfloat16":  # ml_dtypes arrays cross as their bits
                tx = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
            elif x.dtype.name.startswith("float8"):
                tx = torch.from_numpy(x.view(np.uint8)).view(getattr(torch, x.dtype.name))
            else:
                tx = torch.from_numpy(x)
            torch_fn = getattr(torch, function)
            tout = torch.empty(tx.shape[:-1] if function == "logsumexp" else tx.shape, dtype=tx.dtype)
            peers["torch"] = lambda: torch_fn(tx, -1)
            peers["torch out="] = lambda: torch_fn(tx, -1, out=tout)
        except (ImportError, AttributeError):
            pass
    if use_jax:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 stays float64
            jx = jax.device_put(x)  # placed once: a call times the function, not a transfer
            jax_fn = jax.jit(functools.partial(getattr(jax.nn, function), axis=-1))
            peers["jax"] = lambda: jax_fn(jx).block_until_ready()
        except ImportError:
            pass
        except Exception as err:  # (a jaxlib that fails to load, a dtype it cannot place)
            peers["jax"] = functools.partial(_raise, err)
    out = np.empty_like(x)
    peers["copy"] = lambda: np.copyto(out, x)
    return peers


def _raise(err: Exception):
    raise err


#: The peers' names in the tables (each kernel's ratio to each).
PEERS = ("numpy", "scipy", "torch", "torch out=", "jax", "copy")


def _stats(times: list[float], size: int) -> dict:
    t = np.array(times)
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "min_s": float(t.min()),
        "max_s": float(t.max()),
        "repeats": int(t.size),  # timings (each the mean of calls_per_timing calls)
        "ns_per_element": float(med / size * 1e9),
    }


def paired_quartiles(times: list[float], peer_times: list[float]) -> list[float]:
    """The quartiles of the round-by-round ratios ``times[i] / peer_times[i]`` (both timed in
    round ``i``, moments apart): how far a ratio moves within the run. A change of the machine's
    speed that lasts longer than a round moves both timings of a round, not their ratio; the
    timings' own quartiles spread with it."""
    return [float(q) for q in np.percentile(np.asarray(times) / np.asarray(peer_times), [25, 75])]


#: The shortest timing (seconds): faster calls are repeated within one timing (module docstring).
TIMING_MIN_S = 50e-6


def _settle(f, calls: int = 50, seconds: float = 1.0) -> float:
    """Call ``f`` once, then until three calls in a row take within 20% of each other (or
    ``calls`` calls, or ``seconds``): timings start from its steady state. Returns the median of
    the last three calls (seconds)."""
    with np.errstate(all="ignore"):
        f()  # compiles, or loads the cache: not part of the settling
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < calls and time.perf_counter() - start < seconds:
        with np.errstate(all="ignore"):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        if len(times) >= 3 and max(times[-3:]) <= 1.2 * min(times[-3:]):
            break
    return float(np.median(times[-3:])) if times else seconds


#: At most this many CPUs are probed before each round (:func:`cpu_probe`).
PROBE_CPUS = 16
#: A round is *slowed* when the probe ran this many times slower than the fastest probe of the run.
#: (Zen 4 VM: a vCPU's fast and slow states read 22-25 and 31-41 us for the probe loop, ours
#: float32 512 x 128 on one thread 38-39 and 48-58 us.)
SLOWED = 1.2
#: Above this share of slowed rounds, a run is marked as not that of a quiet machine.
SLOWED_SHARE = 0.1
#: Fewest rounds with no CPU slowed that get ratios of their own (``ratios_quiet``).
QUIET_MIN = 5


def cpu_probe() -> float:
    """Seconds of a fixed Python loop (best of three) on the slowest of the CPUs this process may
    run on (the first :data:`PROBE_CPUS`), the calling thread pinned to each in turn (Linux;
    elsewhere, or where pinning is refused, on whichever CPU it runs). On the README's Zen 4 VM a
    vCPU runs 1.3-1.7x slower for seconds at a time (its host core shared with another guest, or
    a lower clock: which, the guest cannot tell), and ``/proc/stat`` shows no steal time: a loop
    timed on every CPU does show it. Relative to the run's fastest probe, so a run spent wholly
    in the slow state is not flagged."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    slowest = 0.0
    for cpu in sorted(allowed)[:PROBE_CPUS] if allowed else [None]:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            sum(range(2000))
            best = min(best, time.perf_counter() - t0)
        slowest = max(slowest, best)
    if allowed:
        try:
            os.sched_setaffinity(0, allowed)
        except OSError:
            pass
    return slowest


def quiet_rounds(probes: list[float], fastest: float) -> list[int]:
    """The rounds (indices) whose probe (:func:`cpu_probe`) ran within :data:`SLOWED` times the
    run's ``fastest`` probe: no CPU slowed."""
    return [i for i, p in enumerate(probes) if p <= SLOWED * fastest]


def slowed_share(probes: list[float], fastest: float) -> float:
    """The share of rounds that are not :func:`quiet_rounds`."""
    return 1.0 - len(quiet_rounds(probes, fastest)) / len(probes) if probes else 0.0


def quiet_so_far(probes: list[float], fastest: float = math.inf) -> int:
    """How many of ``probes`` are quiet (:func:`quiet_rounds`) against the fastest probe yet:
    ``fastest`` (the run's before these) or one of them."""
    return len(quiet_rounds(probes, min([fastest, *probes])))


def time_rounds(impls: dict[str, Callable[[], object]], number: dict[str, int], *, budget: float,
                min_repeat: int, max_repeat: int, probes: list[float] | None = None,
                quiet_min: int = 0, fastest: float = math.inf) -> dict[str, list[float]]:
    """The timings (seconds per call) of each implementation, in rounds of one timing of each, in
    a new random order each round (seeded), each timing of ``number[name]`` back-to-back calls
    after one untimed call (module docstring), until ``min_repeat`` rounds, ``budget`` seconds
    and, with ``quiet_min``, that many quiet rounds (:func:`quiet_so_far`, ``fastest`` the run's
    fastest probe before this case), or ``max_repeat`` rounds. With ``probes``, a
    :func:`cpu_probe` before each round is appended to it (needed for ``quiet_min``)."""
    if quiet_min and probes is None:
        raise ValueError("quiet_min needs probes")
    times: dict[str, list[float]] = {name: [] for name in impls}
    order = list(impls.items())
    shuffle = np.random.default_rng(0).permutation  # (seeded: a run is repeatable)
    start = time.perf_counter()
    rounds = 0
    while rounds < max_repeat and (rounds < min_repeat or time.perf_counter() - start < budget
                                   or (quiet_min and quiet_so_far(probes, fastest) < quiet_min)):
        if probes is not None:
            probes.append(cpu_probe())
        for i in shuffle(len(order)):
            name, f = order[i]
            calls = range(number[name])
            with np.errstate(all="ignore"):
                f()  # not timed: it pays for what the implementation before left
                t0 = time.perf_counter()
                for _ in calls:
                    f()
                times[name].append((time.perf_counter() - t0) / len(calls))
        rounds += 1
    return times


def time_case(case: Case, *, budget: float, min_repeat: int, max_repeat: int, use_torch: bool,
              use_jax: bool, algorithms=None, function: str = "softmax", quiet_min: int = 0,
              fastest: float = math.inf) -> dict:
    """Time every implementation on one case (``algorithms``: default
    :data:`DEFAULT_ALGORITHMS`; ``quiet_min``, ``fastest``: :func:`time_rounds`); returns the
    JSON record of the case."""
    algorithms = tuple(algorithms or DEFAULT_ALGORITHMS[function])
    from softmax_bench.formats import format_of
    from softmax_bench.kernels import get_kernel

    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.shape).astype(format_of(case.dtype).dtype)
    impls: dict[str, Callable[[], object]] = {}
    out = np.empty(x.shape[:-1] if function == "logsumexp" else x.shape, x.dtype)
    for algorithm in algorithms:
        for compute in case.computes:
            spec = get_kernel(algorithm, case.dtype, compute, function=function)
            impls[spec.id] = (lambda f: lambda: f(x))(spec.fn)
            if algorithm != "naive":  # into a preallocated array, like the copy
                impls[spec.id + " out="] = (lambda f: lambda: f(x, out=out))(spec.fn)
    kernel_names = list(impls)
    impls.update(_peers(function, x, use_torch, use_jax))
    unsupported = {}
    number = {}  # calls per timing
    for name, f in list(impls.items()):  # warm-up: compile / load caches, first-touch memory
        try:
            number[name] = max(1, math.ceil(TIMING_MIN_S / max(_settle(f), 1e-9)))
        except Exception as err:  # a peer that does not take this dtype
            unsupported[name] = f"{type(err).__name__}: {err}"
            del impls[name]
    probes: list[float] = []
    times = time_rounds(impls, number, budget=budget, min_repeat=min_repeat, max_repeat=max_repeat,
                        probes=probes, quiet_min=quiet_min, fastest=fastest)
    results = {name: {**_stats(ts, case.size), "calls_per_timing": number[name]}
               for name, ts in times.items()}
    ratios, ratio_quartiles = _ratios(times, [k for k in kernel_names if k in results])
    return {
        "case": case.name,
        "function": function,
        "dtype": case.dtype,
        "shape": list(case.shape),
        "elements": case.size,
        "results": results,
        "ratios": ratios,
        "ratio_quartiles": ratio_quartiles,
        "unsupported": unsupported,
        "probe_s": probes,  # one cpu_probe per round; the slowed rounds are counted by run()
        "_times": times,  # (per round; used by run(), not written)
    }


#: What a run's ratios are (recorded in its meta; runs before it have ratios of medians).
RATIOS = "median of the round-by-round ratios"


def _ratios(times: dict[str, list[float]], kernels: list[str], rounds=None) -> tuple[dict, dict]:
    """The median and the quartiles of the round-by-round ratios of every kernel to every peer
    (:data:`RATIOS`, :func:`paired_quartiles`), over all rounds or the ``rounds`` given
    (indices). Not the ratio of the two medians: on a machine whose speed changes for seconds at
    a time the timings of each side spread in two clusters, and their medians can fall in
    different ones (float64 4096 x 1024 on the Zen 4 VM: 1.12 of torch's median while the
    round-by-round ratios' quartiles read 0.87-0.97)."""
    if rounds is not None:
        times = {name: [ts[i] for i in rounds] for name, ts in times.items()}
    peers = [p for p in PEERS if p in times]
    ratios = {k: {p: float(np.median(np.asarray(times[k]) / np.asarray(times[p]))) for p in peers}
              for k in kernels}
    return ratios, {k: {p: paired_quartiles(times[k], times[p]) for p in peers} for k in kernels}


def code_targets(use_torch: bool = True) -> dict:
    """What the timed code was built for, which can be less than the CPU's ISA (an AVX2 run on an
    AVX-512 machine): numba's target CPU and its widest vector extension (the host's unless
    ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise) and, when torch is timed, its
    kernel level (``ATEN_CPU_CAPABILITY`` caps it); None for what is not timed or cannot be read."""
    from softmax_bench.kernels.float16 import target_has  # (what the kernels choose their code by)

    targets = {"numba": None, "torch": None}
    widest = next((f for f in ("avx512f", "avx2", "avx") if target_has(f)), "")
    try:
        from numba.core.registry import cpu_target

        targets["numba"] = f"{cpu_target.target_context.codegen()._get_host_cpu_name()} {widest}".strip()
    except (AttributeError, ImportError):
        pass
    if use_torch:
        try:
            import torch

            targets["torch"] = torch.backends.cpu.get_cpu_capability()
        except Exception:  # absent, or an install that fails to load: the bench goes on without it
            pass
    return targets


def meta(use_torch: bool = True) -> dict:
    import numba

    info = {**provenance(), "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "targets": code_targets(use_torch)}
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(busy, steal, this process) CPU seconds so far, all cores: busy from ``/proc/stat``
    (user, nice, system, irq, softirq), steal (time the hypervisor gave to other machines) and
    this process's own user + system time with all its threads; None where there is no
    ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    own = os.times()
    return (user + nice + system + irq + softirq) / tick, steal / tick, own.user + own.system


def interference(start, end, wall: float) -> dict | None:
    """The share of the machine's CPU time that other processes (busy time not this process's)
    and the hypervisor (steal) took while the cases ran: what the load average, a minute late and
    counting the benchmark's own threads, cannot tell."""
    if start is None or end is None or wall <= 0:
        return None
    capacity = wall * (os.cpu_count() or 1)
    others = (end[0] - start[0]) - (end[2] - start[2])
    return {"others": max(0.0, others) / capacity, "steal": (end[1] - start[1]) / capacity}


def run(cases, *, budget=2.0, min_repeat=7, max_repeat=201, use_torch=True, progress=print,
        algorithms=None, function="softmax", use_jax=True, quiet_min=0) -> dict:
    """Time ``cases`` for ``function`` (``algorithms``: default :data:`DEFAULT_ALGORITHMS`;
    ``quiet_min``: rounds with no CPU slowed wanted per case, :func:`time_rounds`); returns
    {"meta": ..., "cases": [...]}."""
    algorithms = tuple(algorithms or DEFAULT_ALGORITHMS[function])
    info = {**meta(use_torch), "function": function, "algorithms": list(algorithms), "ratios": RATIOS}
    if quiet_min:
        info["quiet_rounds_wanted"] = quiet_min
    cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
    records = []
    fastest = math.inf  # the run's fastest probe so far
    for case in cases:
        t0 = time.perf_counter()
        records.append(
            time_case(case, budget=budget, min_repeat=min_repeat, max_repeat=max_repeat, use_torch=use_torch,
                      algorithms=algorithms, function=function, use_jax=use_jax, quiet_min=quiet_min,
                      fastest=fastest)
        )
        fastest = min([fastest, *records[-1]["probe_s"]])
        if progress:
            progress(f"  {case.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    try:
        info["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    info["interference"] = interference(cpu_start, _cpu_seconds(), time.perf_counter() - wall_start)
    probes = [p for rec in records for p in rec["probe_s"]]
    if probes:  # slowed against the fastest probe of the whole run (the loop's, now final)
        info["probe_fastest_s"] = fastest
        info["slowed_rounds"] = slowed_share(probes, fastest)
    for rec in records:
        times = rec.pop("_times")
        if not probes:
            continue
        rec["slowed_rounds"] = slowed_share(rec["probe_s"], fastest)
        quiet = quiet_rounds(rec["probe_s"], fastest)
        rec["quiet_rounds"] = len(quiet)
        if len(quiet) >= QUIET_MIN:
            rec["ratios_quiet"], rec["ratio_quartiles_quiet"] = _ratios(times, list(rec["ratios"]), quiet)
    return {"meta": info, "cases": records}


def _targets_line(targets: dict | None) -> list[str]:
    """The code targets (:func:`code_targets`) as a sentence, when recorded."""
    if not targets:
        return []
    return [f"Code built for: numba `{targets.get('numba') or '?'}`, torch `{targets.get('torch') or 'absent'}`"
            " (below the CPU's ISA when capped by NUMBA_CPU_NAME / NUMBA_CPU_FEATURES / ATEN_CPU_CAPABILITY)."]


def _ratio_cell(ratio, quartiles) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}" + (f" ({quartiles[0]:.2f}-{quartiles[1]:.2f})" if quartiles else "")


def _timed_peers(data: dict) -> list[str]:
    """The peers (:data:`PEERS`, in that order) timed on some case of the run."""
    return [p for p in PEERS if any(p in rec["results"] for rec in data["cases"])]


def _peer_header(first: str, peers: list[str]) -> list[str]:
    """A table's header and rule: ``first`` (its leading columns), then one column per peer."""
    return [f"| {first} | " + " | ".join(f"/ {p}" for p in peers) + " |",
            "|---" * (first.count("|") + 1) + "|" + "---|" * len(peers)]


def _peer_cells(ratios: dict, quartiles: dict, peers: list[str]) -> str:
    """One table row's ratio cells, a peer each (:func:`_ratio_cell`)."""
    return " | ".join(_ratio_cell(ratios.get(p), quartiles.get(p)) for p in peers)


def markdown(data: dict) -> str:
    """The run as Markdown: the machine, then one table row per implementation and case (median
    and quartiles of the wall time, ns per element, the ratio to each peer with the quartiles of
    the round-by-round ratios; :data:`RATIOS`, or the ratio of medians in older runs)."""
    info = data["meta"]
    machine, versions = info.get("machine", {}), info.get("versions", {})
    function = info.get("function", "softmax")
    peers = _timed_peers(data)
    lines = [f"# `softmax-bench bench`: {function}", "",
             f"{machine.get('name', '?')} ({machine.get('processor', '?')}, {info.get('cores', '?')} cores, "
             f"{' '.join(machine.get('isa', []))}); numba {versions.get('numba')} on "
             f"{info.get('numba_threads')} threads, numpy {versions.get('numpy')}, torch "
             f"{versions.get('torch') or 'absent'} (2 threads)"
             + (f", jax {versions['jax']}" if "jax" in peers else "")
             + f"; {str(info.get('date', ''))[:10]}, "
             f"commit {str(info.get('git_commit', ''))[:10]}.",
             *_targets_line(info.get("targets")),
             ("Ratios are the medians of the round-by-round ratios (each round times every implementation "
              "once), implementation / peer, in this one run (< 1: faster); in brackets their quartiles: "
              if info.get("ratios") == RATIOS else
              "Ratios are of medians, implementation / peer, in this one run (< 1: faster); in brackets "
              "the quartiles of the round-by-round ratios (each round times every implementation once): ")
             + "how far the ratio moved within the run. Inputs: "
             "standard normal, rounded to the storage format; `out=`: into a preallocated array. A timing "
             f"is the mean call time of back-to-back calls lasting about {TIMING_MIN_S * 1e6:.0f} us or more "
             "(the count fixed from the settled single-call time); median and IQR are over the timings.", ""]
    share = info.get("interference")
    if share is not None:
        lines += [f"While it ran, other processes took {share['others']:.1%} and the hypervisor "
                  f"{share['steal']:.1%} of the machine's CPU time.", ""]
    if "slowed_rounds" in info:
        slowed = [f"{rec['case']} {rec['slowed_rounds']:.0%}" for rec in data["cases"]
                  if rec.get("slowed_rounds", 0) > SLOWED_SHARE]
        lines += [f"Before each round a fixed loop was timed on every CPU: in {info['slowed_rounds']:.0%} of "
                  f"the rounds it ran more than {SLOWED}x slower on some CPU than its fastest in the run "
                  f"({info['probe_fastest_s'] * 1e6:.1f} us)" + (f"; cases above {SLOWED_SHARE:.0%}: "
                  + ", ".join(slowed) if slowed else "") + ".", ""]
    loaded = loaded_warning(info)
    if loaded:
        lines += [f"**{loaded}**", ""]
    lines += _peer_header("case | implementation | median us | IQR us | ns/element", peers)
    for rec in data["cases"]:
        for name, r in rec["results"].items():
            ratios = rec["ratios"].get(name, {})
            spread = rec.get("ratio_quartiles", {}).get(name, {})  # (absent in older runs' JSON)
            cells = _peer_cells(ratios, spread, peers)
            lines.append(f"| {rec['case']} | {name} | {r['median_s'] * 1e6:.4g} | "
                         f"{r['q1_s'] * 1e6:.4g}-{r['q3_s'] * 1e6:.4g} | {r['ns_per_element']:.3f} | {cells} |")
        for name, why in rec["unsupported"].items():
            lines.append(f"| {rec['case']} | {name} | unsupported: {why[:80].replace('|', '/')} | | | " + " | " * len(peers))
    quiet = [rec for rec in data["cases"] if rec.get("ratios_quiet") and rec.get("slowed_rounds")]
    if quiet:
        lines += ["", f"Ratios over the rounds with no CPU slowed (probe within {SLOWED}x of the run's fastest; "
                  "chosen before the round was timed, not by its timings):", "",
                  *_peer_header("case | implementation | rounds", peers)]
        for rec in quiet:
            for name, ratios in rec["ratios_quiet"].items():
                cells = _peer_cells(ratios, rec["ratio_quartiles_quiet"][name], peers)
                lines.append(f"| {rec['case']} | {name} | {rec['quiet_rounds']} of {len(rec['probe_s'])} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> bool:
    """A bar chart of each kernel's time over torch's (``out=`` calls over torch's ``out=``
    calls; over the copy's where torch is absent), per case, log scale, the round-by-round
    quartiles as a line over each bar, written atomically to ``path``; False when matplotlib is
    not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    peer = "torch" if any("torch" in r["results"] for r in data["cases"]) else "copy"

    def peer_of(name):  # like with like: out= against torch's out= where timed
        if peer == "torch" and name.endswith(" out="):
            return "torch out="
        return peer

    names = sorted({k for r in data["cases"] for k in r["ratios"] if peer_of(k) in r["ratios"][k]})
    cases = [r for r in data["cases"] if any(peer_of(k) in v for k, v in r["ratios"].items())]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(cases) + 3), 5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        have = [(j, r) for j, r in enumerate(cases) if peer_of(name) in r["ratios"].get(name, {})]
        xs = [j + i * width for j, _ in have]
        ys = [r["ratios"][name][peer_of(name)] for _, r in have]
        ax.bar(xs, ys, width, label=name.split("/", 1)[1])
        spans = [(x, r.get("ratio_quartiles", {}).get(name, {}).get(peer_of(name))) for x, (_, r) in zip(xs, have)]
        spans = [(x, q) for x, q in spans if q]  # (older runs' JSON has none)
        if spans:  # the round-by-round quartiles (older runs: need not hold their ratio of medians)
            ax.vlines([x for x, _ in spans], [q[0] for _, q in spans], [q[1] for _, q in spans],
                      color="black", linewidth=0.8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
    ax.set_xticklabels([r["case"] for r in cases], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"time / {peer}'s (out=: / {peer} out=; median; < 1 is faster)"
                  if peer == "torch" else f"time / {peer} (median; < 1 is faster)")
    info = data["meta"]
    ax.set_title(f"{info.get('function', 'softmax')}: kernels against {peer}\n"
                 f"{info.get('machine', {}).get('name', '')}, {str(info.get('date', ''))[:10]}",
                 fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return True


#: The share of CPU time others (processes, the hypervisor) may take before a run is "loaded".
LOADED_SHARE = 0.05


def loaded_warning(info: dict) -> str | None:
    """A warning when more than :data:`SLOWED_SHARE` of the rounds were slowed (:func:`cpu_probe`),
    or other processes or the hypervisor took more than :data:`LOADED_SHARE` of the machine's CPU
    time during the run (:func:`interference`; PERF_NOTES: 2-thread kernels collapse under load),
    or, where that was not measured, when the 1-minute load average at the start or the end was
    above half the cores."""
    if info.get("slowed_rounds", 0) > SLOWED_SHARE:
        return (f"warning: in {info['slowed_rounds']:.0%} of the rounds some CPU ran more than {SLOWED}x "
                "slower than its fastest in the run (another guest on the host, or a lower clock): "
                "timings and ratios are not those of a quiet machine")
    share = info.get("interference")
    if share is not None:
        if share["others"] + share["steal"] <= LOADED_SHARE:
            return None
        return (f"warning: other processes took {share['others']:.1%} and the hypervisor (steal) "
                f"{share['steal']:.1%} of the CPU time during the run: timings and ratios are not "
                "those of a quiet machine")
    cores = os.cpu_count() or 1
    loads = [info[k][0] for k in ("loadavg_start", "loadavg_end") if k in info]
    if loads and max(loads) > 0.5 * cores:
        return (f"warning: the machine was loaded (1-minute load average up to {max(loads):.2f} on "
                f"{cores} cores): timings and ratios are not those of a quiet machine")
    return None


def _shape(text: str) -> tuple[int, ...]:
    """``"65536x64"`` -> (65536, 64): positive sizes joined by ``x``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"--shapes: {text!r} is not a shape such as 65536x64 or 256000")
    return shape


def _default_out(function: str) -> Path:
    root = _REPO if (_REPO / "pyproject.toml").is_file() else Path.cwd()
    return root / "results" / "bench" / f"{function}.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="softmax-bench bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes only (a smoke run)")
    p.add_argument("--cases", nargs="*", default=None, help="keep cases whose name contains any of these")
    p.add_argument("--shapes", nargs="+", default=None, metavar="RxN",
                   help="time these shapes (e.g. 65536x64 256000) in every format instead of the grid's")
    p.add_argument("--function", default="softmax", choices=sorted(DEFAULT_ALGORITHMS))
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default results/bench/FUNCTION.json; .md and .png beside it)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case (default 2)")
    p.add_argument("--min-repeat", type=int, default=7)
    p.add_argument("--max-repeat", type=int, default=201)
    p.add_argument("--quiet-rounds", type=int, default=0, metavar="N",
                   help="keep timing a case until N of its rounds had no CPU slowed (against the "
                        "fastest probe so far), or --max-repeat rounds: for the ratios over quiet "
                        "rounds on a machine whose CPUs slow down (default 0: --budget and "
                        "--min-repeat only)")
    p.add_argument("--no-torch", action="store_true", help="do not time torch even if installed")
    p.add_argument("--no-jax", action="store_true", help="do not time jax even if installed")
    from softmax_bench.functions import ALGORITHMS

    p.add_argument("--algorithms", nargs="+", default=None, metavar="ALGORITHM",
                   help="algorithms to time (default: softmax shifted naive, else shifted; "
                        f"softmax has {', '.join(ALGORITHMS['softmax'])})")
    args = p.parse_args(argv)
    if args.quiet_rounds < 0:
        p.error("--quiet-rounds must be 0 or more")
    unknown = [a for a in args.algorithms or () if a not in ALGORITHMS[args.function]]
    if unknown:
        p.error(f"{args.function} has no algorithm {', '.join(unknown)} (it has: {', '.join(ALGORITHMS[args.function])})")
    cases = QUICK_CASES if args.quick else CASES
    if args.shapes:
        try:
            shapes = [_shape(text) for text in args.shapes]
        except ValueError as e:
            p.error(str(e))
        cases = _cases_of(shapes)
    if args.cases:
        kept = [c for c in cases if any(s in c.name for s in args.cases)]
        if not kept:  # (an empty run would overwrite the results with an empty table)
            p.error(f"no case matches {' '.join(map(repr, args.cases))} (the cases: "
                    f"{', '.join(repr(c.name) for c in cases)})")
        cases = kept
    data = run(cases, budget=args.budget, min_repeat=args.min_repeat, max_repeat=args.max_repeat,
               use_torch=not args.no_torch, algorithms=args.algorithms, function=args.function,
               use_jax=not args.no_jax, quiet_min=args.quiet_rounds)
    table = markdown(data)  # printed as it is written (with the loaded-machine warning, if any)
    print(table)
    out = args.out or _default_out(args.function)
    write_json_atomic(out, data)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(table))
    plotted = plot(data, out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.md').name}" + (f", {out.with_suffix('.png').name}" if plotted else
                                                           " (no plot: matplotlib is not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
