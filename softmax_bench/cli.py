"""The ``softmax-bench`` command line.

Subcommands import their modules lazily, so ``softmax-bench --help`` starts fast and a missing
optional dependency only matters to the subcommand that needs it.
"""
from __future__ import annotations

import argparse
import os
from collections import Counter
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

from softmax_bench.formats import FORMATS

DTYPE_NAMES = tuple(FORMATS)  # float16, float32, float64, bfloat16, float8_e4m3fn, float8_e5m2


def _csv(choices):
    """argparse type: a comma-separated list whose items must be in ``choices``."""

    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"invalid value {','.join(bad) or text!r}: choose from {', '.join(choices)}"
            )
        return items

    return parse


def cmd_reference(args) -> int:
    """The reference's speed against a plain mpmath softmax, and its two phases checked against
    each other (softmax_bench/reference_speed.py), or with ``--fuzz`` against each other on
    adversarial rows (softmax_bench/reference_fuzz.py); the table is printed and written as
    JSON and Markdown beside ``--out``."""
    from softmax_bench import reference as R
    from softmax_bench import reference_fuzz, reference_speed
    from softmax_bench.results_io import write_json_atomic

    def report(data, table):
        print(table)
        if args.out:
            write_json_atomic(args.out, data)
            args.out.with_suffix(".md").write_text(table)
            print(f"wrote {args.out} and {args.out.with_suffix('.md')}")

    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.fuzz:
        data = reference_fuzz.run(args.dtypes, args.fuzz, seed=args.seed, progress=progress)
        report(data, reference_fuzz.format_table(data))
        return 1 if any(r["mismatches"] for r in data["records"]) else 0
    data = reference_speed.run(args.dtypes, repeat=args.repeat, seed=args.seed, progress=progress)
    report(data, reference_speed.format_table(data))
    example = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    print(f"softmax({example.tolist()}) in float32, correctly rounded: {R.softmax(example).tolist()}")
    return 1 if any(r.get("check", "").startswith("DIFFERENT") for r in data["records"]) else 0


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: give integers like 2,10,1000") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: every size must be >= 1")
    return values


def _families(text: str) -> list[str]:
    """argparse type for --families: NAME or NAME:N, comma-separated."""
    from softmax_bench.inputs import parse_family

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("invalid --families: give at least one family")
    for item in items:
        try:
            parse_family(item)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace("unknown input family", "invalid value")) from None
    return items


def _positive(kind):
    """argparse type: a number of ``kind`` (int or float) greater than 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a number > 0")
        return value

    return parse


def _ulp_limits(text: str) -> dict[str, float]:
    """argparse type for --max-ulp: ``float32=4,float16=2``."""
    limits = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if name not in DTYPE_NAMES or not limit >= 0:
            raise argparse.ArgumentTypeError(
                f"invalid limit {item!r}: write DTYPE=ULPS with DTYPE in {', '.join(DTYPE_NAMES)}, "
                "e.g. float32=4,float16=2"
            )
        limits[name] = limit
    if not limits:
        raise argparse.ArgumentTypeError("invalid --max-ulp: e.g. float32=4,float16=2")
    return limits


def _stop_on_sigterm():
    """SIGTERM stops the audit like Ctrl-C: workers killed, finished cases kept on disk."""
    got = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    return got


def cmd_audit(args) -> int:
    from softmax_bench import audit, inputs, peers

    if args.peers is None:
        args.peers = [name for name, status in peers.available_peers().items() if status == "available"]
    try:
        for name in args.impl:
            peers.parse_spec(peers.split_function(name)[1])
    except ValueError as err:
        print(f"softmax-bench audit: --impl: {err}", file=sys.stderr)
        return 2
    user_inputs = []
    try:
        for path in args.inputs:
            user_inputs += inputs.read_inputs(path)
    except ValueError as err:
        print(f"softmax-bench audit: {err}", file=sys.stderr)
        return 2
    families = args.families if args.families is not None else ([] if user_inputs else list(inputs.DEFAULT_FAMILIES))
    names = Counter(i["family"] for i in user_inputs)
    clash = sorted((set(names) & set(inputs.FAMILIES)) | {f for f, count in names.items() if count > 1})
    if clash:
        print(f"softmax-bench audit: --inputs: family name {', '.join(clash)} is taken (built-in, or "
              "two files of one name): rename the file", file=sys.stderr)
        return 2
    config = audit.AuditConfig(
        kernels=args.kernels,
        functions=args.functions,
        dtypes=args.dtypes,
        families=families,
        inputs=user_inputs,
        sizes=args.sizes,
        rows=args.rows,
        seed=args.seed,
        peers=list(dict.fromkeys(args.peers + args.impl)),
        workers=args.workers,
        scheduler=args.scheduler,
        timeout=args.timeout,
        memory_limit=None if args.memory_limit is None else int(args.memory_limit * 2**30),
        max_memory=None if args.max_memory is None else int(args.max_memory * 2**30),
    )
    if args.quick:
        config.sizes = [n for n in config.sizes if n <= 1000]
        config.rows = min(config.rows, 4)
    if not config.sizes:
        print("softmax-bench audit: no sizes left to audit (--quick keeps sizes <= 1000)", file=sys.stderr)
        return 2
    terminated = _stop_on_sigterm()
    start = time.perf_counter()
    try:
        result = audit.run(config, args.json, resume=args.resume, progress=not args.no_progress)
    except (peers.PeerUnavailable, ValueError) as err:
        print(f"softmax-bench audit: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second one ends it at once
            signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
        _report_interrupt(args, config, audit)
        return 128 + (terminated[0] if terminated else signal.SIGINT)
    records = result["records"]
    print(f"{len(records)} records from {len(config.cases())} cases written to {args.json} "
          f"({time.perf_counter() - start:.1f} s)")
    failures = audit.verdict(records, args.max_ulp, args.fail_on_nonfinite)
    if failures:
        print(f"softmax-bench audit: FAILED ({len(failures)}):", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _report_interrupt(args, config, audit) -> None:
    try:
        cases = {audit._case_key(r) for r in audit.load(args.json)["records"]}
    except (ValueError, OSError):
        cases = set()
    argv = list(args.argv)
    if "--resume" not in argv:
        argv.append("--resume")
    print(f"\nsoftmax-bench audit: interrupted; {len(cases)} of {len(config.cases())} cases are "
          f"saved in {args.json}. Continue with:\n  {shlex.join(['softmax-bench', *argv])}",
          file=sys.stderr)


def cmd_report(args) -> int:
    from softmax_bench import report

    paths = args.json or [Path("results/audit.json")]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        print(f"softmax-bench report: no such audit JSON: {', '.join(missing)}", file=sys.stderr)
        return 2
    seen = {}
    for p in paths:
        if Path(p).resolve() in seen:
            print(f"softmax-bench report: {p} is given twice (its records would count twice)", file=sys.stderr)
            return 2
        seen[Path(p).resolve()] = p
    try:
        if args.readme:
            report.check_readme(args.readme)
        md = report.write_report(paths, args.out)
        print(f"report written to {md}")
        if args.readme:
            report.update_readme(args.readme, paths)
            print(f"headline table updated in {args.readme}")
    except (ValueError, OSError) as err:  # audit.AuditError is a ValueError
        print(f"softmax-bench report: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_ranges(args) -> int:
    from softmax_bench import ranges

    start = time.perf_counter()
    result = ranges.run(out_dir=args.out, json_path=args.json, maps=not args.no_maps,
                        kernels=args.kernels, functions=args.functions)
    print(ranges.format_table(result["thresholds"]))
    for m in result["maps"]:
        counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items() if v)
        print(f"  {m['kernel']:40} {args.out / m['png']}  ({counts})")
    print("\nseed properties (softmax_bench.properties.check_all):")
    for p in result["properties"]:
        print(f"  {p['kernel']:26} holds {p['holds']}, violated {p['violated']}, predicted failure "
              f"{p['predicted_failure']} (failed as predicted {p['failed_as_predicted']}), "
              f"unbounded {p['unbounded']}")
    bad = [r for r in result["thresholds"] if not (r["overflow_ok"] and r["underflow_ok"])]
    bad += [p for p in result["properties"] if p["violated"]]
    beyond = [m for m in result["maps"] if m["counts"].get("beyond bound")]
    print(f"\nthresholds and maps written to {result['json']} ({time.perf_counter() - start:.1f} s)")
    if bad:
        print(f"{len(bad)} thresholds disagree with theory", file=sys.stderr)
    if beyond:
        print(f"{len(beyond)} failure maps have cells beyond the error bound", file=sys.stderr)
    return 1 if bad or beyond else 0


def cmd_exhaustive(args) -> int:
    from softmax_bench import exhaustive

    window = None
    if args.triples:
        try:
            start, count = args.triples.split("+")
            window = (int(start, 0), int(count, 0))
        except ValueError:
            print(f"softmax-bench exhaustive: --triples {args.triples!r}: FIRST+COUNT, e.g. 0x3c00+256",
                  file=sys.stderr)
            return 2
    path = args.json
    if path is None:
        domain = f"triples-{window[0]:#06x}+{window[1]}" if window else "pairs"
        path = Path("results/exhaustive") / f"{args.dtype}-{args.function}-{domain}.json"
    try:
        names = args.implementations
        if not names and args.resume and path.exists():  # the file's own list (jax may be new here)
            from softmax_bench.results_io import load_json

            names = load_json(path).get("meta", {}).get("config", {}).get("implementations")
        names = tuple(names or exhaustive.implementation_names(args.dtype, args.function))
        sweep = exhaustive.Sweep(args.dtype, args.function, "triples" if window else "pairs", window, names)
        sweep.check()
    except (ValueError, OSError) as err:
        print(f"softmax-bench exhaustive: {err}", file=sys.stderr)
        return 2
    terminated = _stop_on_sigterm()
    try:
        state = exhaustive.run(sweep, path, workers=args.workers, scheduler=args.scheduler,
                               resume=args.resume, progress=not args.no_progress)
    except ValueError as err:
        print(f"softmax-bench exhaustive: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if path.exists():  # the table of what is done, marked partial
            from softmax_bench.results_io import load_json

            path.with_suffix(".md").write_text(exhaustive.markdown(load_json(path)))
        print(f"softmax-bench exhaustive: interrupted; finished chunks kept in {path} (--resume goes on)",
              file=sys.stderr)
        return 128 + (terminated[0] if terminated else signal.SIGINT)
    table = exhaustive.markdown(state)
    path.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {path} and {path.with_suffix('.md')}")
    return 0


def cmd_machine(args) -> int:
    from softmax_bench.results_io import cpu_flags, machine_name

    print(machine_name())
    if args.verbose:
        print(f"ISA: {' '.join(cpu_flags()) or 'unknown'}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from softmax_bench import inputs, peers
    from softmax_bench.kernels import list_kernels

    print("kernels:")
    for spec in list_kernels():
        print(f"  {spec.id}")
    print("input families:")
    for fam in inputs.FAMILIES.values():
        sizes = f" (sizes {', '.join(map(str, fam.sizes))})" if fam.sizes else ""
        print(f"  {fam.name:17} {fam.description}{sizes}")
    print("peers:")
    for name, status in peers.available_peers().items():
        print(f"  {name:8} {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-bench",
        description="Verified numerics and benchmarks for softmax.",
    )
    from softmax_bench.audit import DEFAULT_DTYPES

    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="the reference's speed against plain mpmath, its two phases "
                                           "checked against each other")
    ref.add_argument("--dtypes", type=_csv(DTYPE_NAMES), default=list(DEFAULT_DTYPES),
                     help=f"output formats among {','.join(DTYPE_NAMES)} (default: {','.join(DEFAULT_DTYPES)})")
    ref.add_argument("--repeat", type=_positive(int), default=5, help="timings per measurement (default: 5)")
    ref.add_argument("--seed", type=int, default=0, help="default: 0")
    ref.add_argument("--fuzz", type=_positive(int), default=None, metavar="ROWS",
                     help="instead of timing: phase 1 against phase 2 on about ROWS adversarial rows "
                          "per function and format (softmax_bench/reference_fuzz.py); exit 1 on a mismatch")
    ref.add_argument("--out", type=Path, default=None,
                     help="also write JSON there and the Markdown table beside it (.md)")
    ref.set_defaults(func=cmd_reference)

    from softmax_bench import inputs
    from softmax_bench.functions import ALL_ALGORITHMS as ALGORITHM_NAMES
    from softmax_bench.functions import FUNCTIONS
    from softmax_bench.peers import BUILTIN_PEERS

    from softmax_bench.audit import DEFAULT_TIMEOUT_S, STATUSES, default_max_memory, default_memory_limit

    memory = default_memory_limit()
    aud = sub.add_parser(
        "audit", help="audit kernels and peers against the reference (writes JSON)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Audit kernels and peers against the correctly rounded reference. Every peer "
                    "and --impl function runs in a process of its own, on a copy of the input, "
                    "with a timeout and a memory limit; its failures become records.",
        epilog="record statuses:\n" + "\n".join(f"  {k:15} {v}" for k, v in STATUSES.items())
        + "\n\nexit status:\n"
          "  0    every call ran (status ok) and no gate tripped\n"
          "  1    an implementation failed to run (any status but ok), or a gate tripped: a\n"
          "       kernel outside its derived error bound, --max-ulp, --fail-on-nonfinite\n"
          "  2    usage error (bad flag, unreadable or foreign --json, lock held, --resume with\n"
          "       other settings, an implementation that cannot be imported)\n"
          "  130  interrupted by Ctrl-C (143: SIGTERM); finished cases are kept, --resume goes on",
    )
    aud.add_argument("--kernels", type=_csv(ALGORITHM_NAMES), default=list(ALGORITHM_NAMES),
                     help=f"kernel algorithms, every compute mode (default: {','.join(ALGORITHM_NAMES)})")
    aud.add_argument("--functions", type=_csv(FUNCTIONS), default=list(FUNCTIONS),
                     help=f"functions of the family to audit (default: {','.join(FUNCTIONS)})")
    aud.add_argument("--dtypes", type=_csv(DTYPE_NAMES), default=list(DEFAULT_DTYPES),
                     help=f"formats among {','.join(DTYPE_NAMES)} (default: {','.join(DEFAULT_DTYPES)}; "
                          "float8 kernels compute in float32)")
    aud.add_argument("--families", type=_families, default=None, metavar="NAME[:N],...",
                     help=f"built-in input families, among {','.join(inputs.FAMILIES)}; a sized "
                          "family (vocab, attention_causal) runs at its own sizes, NAME:N at N only "
                          f"(default: {','.join(inputs.DEFAULT_FAMILIES)}; none when --inputs is given)")
    aud.add_argument("--inputs", action="append", default=[], metavar="FILE.npy|FILE.npz",
                     help="audit your own rows (repeatable): each array is a family named after the "
                          "file, in its own dtype, the last axis holding the rows; --rows of them "
                          "are sampled (with --seed) when there are more")
    aud.add_argument("--sizes", type=_ints, default=[1, 2, 10, 100, 1000, 10_000],
                     help="row lengths n (default: 1,2,10,100,1000,10000)")
    aud.add_argument("--rows", type=_positive(int), default=16,
                     help="rows per case, capped at 160000 elements (default: 16)")
    aud.add_argument("--seed", type=int, default=0, help="default: 0")
    aud.add_argument("--peers", type=_csv(tuple(BUILTIN_PEERS)), default=None,
                     help=f"built-in peers among {','.join(BUILTIN_PEERS)} (default: every one "
                          "whose package is installed)")
    aud.add_argument("--impl", action="append", default=[],
                     metavar="[FUNCTION=]MODULE:FUNCTION[(KEY=VALUE,...)]",
                     help="audit your own f(x) along the last axis (repeatable): a softmax, or the "
                          "FUNCTION it computes (log_softmax=..., logsumexp=...: one value per row); "
                          "keyword arguments as literals, e.g. 'scipy.special:softmax(axis=-1)', "
                          "'logsumexp=scipy.special:logsumexp(axis=-1)'")
    aud.add_argument("--json", type=Path, default=Path("results/audit.json"),
                     help="results file (default: results/audit.json)")
    aud.add_argument("--resume", action="store_true",
                     help="keep the complete cases of --json, run the rest")
    aud.add_argument("--quick", action="store_true", help="sizes <= 1000 and 4 rows per case")
    aud.add_argument("--workers", type=int, default=0,
                     help="processes making references and running kernels (default: one per core)")
    aud.add_argument("--scheduler", metavar="ADDRESS", default=None,
                     help="run the cases (inputs, reference, kernels) on the Dask cluster at ADDRESS "
                          "(tcp://host:8786); peers and --impl still run in local processes")
    aud.add_argument("--timeout", type=_positive(float), default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                     help=f"per peer call; a call past it is killed: status timeout (default: {DEFAULT_TIMEOUT_S:g})")
    aud.add_argument("--memory-limit", type=_positive(float), metavar="GB",
                     default=None if memory is None else memory / 2**30,
                     help="address space of each peer's process, GiB: beyond it, MemoryError, status "
                          f"out_of_memory (default: half the machine's memory"
                          f"{'' if memory is None else f', {memory / 2**30:.1f}'})")
    case_memory = default_max_memory()
    aud.add_argument("--max-memory", type=_positive(float), metavar="GB",
                     default=None if case_memory is None else case_memory / 2**30,
                     help="memory a case's reference may take, GiB (1 KiB per element); a larger "
                          "case is refused before anything runs (default: a quarter of the machine's"
                          f" memory{'' if case_memory is None else f', {case_memory / 2**30:.1f}'})")
    aud.add_argument("--max-ulp", type=_ulp_limits, default=None, metavar="DTYPE=ULPS,...",
                     help="gate: fail (exit 1) when an implementation's error in DTYPE exceeds ULPS, "
                          "or a row is NaN/inf where the reference is a number (or the reverse)")
    aud.add_argument("--fail-on-nonfinite", action="store_true",
                     help="gate: fail on NaN, inf or all-zero rows where the reference is finite, "
                          "and on numbers where it is NaN")
    aud.add_argument("--no-progress", action="store_true")
    aud.set_defaults(func=cmd_audit)

    rep = sub.add_parser("report", help="Markdown report and plots from audit JSON")
    rep.add_argument("--json", type=Path, action="append",
                     help="audit JSON (repeatable; default: results/audit.json)")
    rep.add_argument("--out", type=Path, default=Path("results"),
                     help="folder of report.md and its plots (default: results)")
    rep.add_argument("--readme", type=Path,
                     help="also refresh the headline table between the audit-table markers of this README")
    rep.set_defaults(func=cmd_report)

    rng = sub.add_parser("ranges", help="overflow/underflow thresholds by bisection, and failure maps")
    rng.add_argument("--kernels", type=_csv(ALGORITHM_NAMES), default=list(ALGORITHM_NAMES),
                     help=f"kernel algorithms (default: {','.join(ALGORITHM_NAMES)})")
    from softmax_bench.ranges import FUNCTIONS as RANGE_FUNCTIONS

    rng.add_argument("--functions", type=_csv(RANGE_FUNCTIONS), default=list(RANGE_FUNCTIONS),
                     help=f"functions (default: {','.join(RANGE_FUNCTIONS)})")
    rng.add_argument("--json", type=Path, default=None, help="default: OUT/ranges.json")
    rng.add_argument("--out", type=Path, default=Path("results/ranges"),
                     help="folder of the PNG maps (default: results/ranges)")
    rng.add_argument("--no-maps", action="store_true", help="thresholds only (no mpmath reference)")
    rng.set_defaults(func=cmd_ranges)

    sub.add_parser("bench", add_help=False,
                   help="timings of the kernels against numpy, scipy, torch and a memory copy, in "
                        "one run (softmax-bench bench --help)")

    from softmax_bench.exhaustive import FUNCTIONS as SWEPT

    exh = sub.add_parser("exhaustive", help="every row of two 16-bit (or 8-bit) values through every "
                                            "kernel and peer (softmax_bench/exhaustive.py)")
    exh.add_argument("--dtype", choices=[d for d in DTYPE_NAMES if FORMATS[d].dtype.itemsize <= 2],
                     default="float16", help="default: float16")
    exh.add_argument("--function", choices=SWEPT, default="softmax", help="default: softmax")
    exh.add_argument("--triples", metavar="FIRST+COUNT",
                     help="rows of three instead: each entry among COUNT consecutive bit patterns "
                          "from FIRST (e.g. 0x3c00+256: float16 values in [1, 1.25))")
    exh.add_argument("--implementations", type=lambda t: [s for s in t.split(",") if s], default=None,
                     help="kernel ids and built-in peers (default: every kernel of the format and "
                          "function, and numpy, torch, jax where installed)")
    exh.add_argument("--workers", type=int, default=0, help="local processes (default: one per core)")
    exh.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the chunks on a Dask cluster (tcp://host:8786) instead of local processes")
    exh.add_argument("--json", type=Path, default=None,
                     help="results file (default: results/exhaustive/DTYPE-FUNCTION-DOMAIN.json), "
                          "with its Markdown table beside it")
    exh.add_argument("--resume", action="store_true",
                     help="keep the finished chunks of --json, run the rest (with its implementations "
                          "unless --implementations is given)")
    exh.add_argument("--no-progress", action="store_true")
    exh.set_defaults(func=cmd_exhaustive)

    mac = sub.add_parser("machine", help="this machine's name for asv and the results (CPU model, "
                                         "cores, vector ISA): asv machine --machine $(softmax-bench machine)")
    mac.add_argument("--verbose", action="store_true", help="also the ISA flags found (on stderr)")
    mac.set_defaults(func=cmd_machine)

    lst = sub.add_parser("list", help="kernels, input families and peers available")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own options (softmax_bench/bench.py)
        from softmax_bench import bench

        return bench.main(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
