"""The ``softmax-bench`` command line.

Subcommands import their modules lazily, so ``softmax-bench --help`` starts fast and a missing
optional dependency only matters to the subcommand that needs it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DTYPE_NAMES = ("float16", "float32", "float64")


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
    """Show the reference at work and check it by precision escalation: every row is recomputed
    with 64 more guard bits, and the outputs must be the same bits."""
    from softmax_bench import reference as R
    from softmax_bench.reference import correctly_rounded

    rng = np.random.default_rng(args.seed)
    print(f"{'dtype':8} {'rows x n':>10} {'elements/s':>11} {'escalation check':>17}")
    failures = 0
    for name in args.dtypes:
        x = (rng.standard_normal((args.rows, args.n)) * 10).astype(name)
        start = time.perf_counter()
        y = R.softmax(x)
        rate = x.size / (time.perf_counter() - start)
        saved = correctly_rounded.GUARD_BITS
        correctly_rounded.GUARD_BITS = saved + 64
        try:
            same = np.array_equal(R.softmax(x), y, equal_nan=True)
        finally:
            correctly_rounded.GUARD_BITS = saved
        failures += not same
        print(f"{name:8} {f'{args.rows} x {args.n}':>10} {rate:11.0f} {'identical' if same else 'DIFFERENT':>17}")
    example = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    print(f"\nsoftmax({example.tolist()}) in float32, correctly rounded: {R.softmax(example).tolist()}")
    return 1 if failures else 0


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: give integers like 2,10,1000") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: every size must be >= 1")
    return values


def cmd_audit(args) -> int:
    from softmax_bench import audit, peers

    if args.peers is None:
        args.peers = [name for name, status in peers.available_peers().items() if status == "available"]
    config = audit.AuditConfig(
        kernels=args.kernels,
        dtypes=args.dtypes,
        families=args.families,
        sizes=args.sizes,
        rows=args.rows,
        seed=args.seed,
        peers=list(dict.fromkeys(args.peers + args.impl)),
        workers=args.workers,
    )
    if args.quick:
        config.sizes = [n for n in config.sizes if n <= 1000]
        config.rows = min(config.rows, 4)
    try:
        result = audit.run(config, args.json, resume=args.resume, progress=not args.no_progress)
    except (peers.PeerUnavailable, ValueError) as err:
        print(f"softmax-bench audit: {err}", file=sys.stderr)
        return 2
    records = result["records"]
    bad = [r for r in records if r.get("within_bound") is False]
    print(f"{len(records)} records from {len(config.cases())} cases written to {args.json}")
    if bad:
        print(f"{len(bad)} records exceed their error bound", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from softmax_bench import report

    paths = args.json or [Path("results/audit.json")]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        print(f"softmax-bench report: no such audit JSON: {', '.join(missing)}", file=sys.stderr)
        return 2
    md = report.write_report(paths, args.out)
    print(f"report written to {md}")
    if args.readme:
        report.update_readme(args.readme, paths)
        print(f"headline table updated in {args.readme}")
    return 0


def cmd_ranges(args) -> int:
    from softmax_bench import ranges

    start = time.perf_counter()
    result = ranges.run(out_dir=args.out, json_path=args.json, maps=not args.no_maps,
                        kernels=args.kernels)
    print(ranges.format_table(result["thresholds"]))
    for m in result["maps"]:
        counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items() if v)
        print(f"  {m['kernel']:26} {args.out / m['png']}  ({counts})")
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


def cmd_list(args) -> int:
    from softmax_bench import inputs, peers
    from softmax_bench.kernels import list_kernels

    print("kernels:")
    for spec in list_kernels():
        print(f"  {spec.id}")
    print("input families:")
    for fam in inputs.FAMILIES.values():
        print(f"  {fam.name:14} {fam.description}")
    print("peers:")
    for name, status in peers.available_peers().items():
        print(f"  {name:8} {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-bench",
        description="Verified numerics and benchmarks for softmax.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="run the mpmath reference and check it by precision escalation")
    ref.add_argument("--dtypes", type=_csv(DTYPE_NAMES), default=list(DTYPE_NAMES))
    ref.add_argument("--rows", type=int, default=20)
    ref.add_argument("--n", type=int, default=1000)
    ref.add_argument("--seed", type=int, default=0)
    ref.set_defaults(func=cmd_reference)

    from softmax_bench import inputs
    from softmax_bench.peers import BUILTIN_PEERS

    aud = sub.add_parser("audit", help="audit kernels and peers against the reference (writes JSON)")
    aud.add_argument("--kernels", type=_csv(("naive", "shifted")), default=["naive", "shifted"])
    aud.add_argument("--dtypes", type=_csv(DTYPE_NAMES), default=list(DTYPE_NAMES))
    aud.add_argument("--families", type=_csv(tuple(inputs.FAMILIES)), default=list(inputs.FAMILIES))
    aud.add_argument("--sizes", type=_ints, default=[1, 2, 10, 100, 1000, 10_000])
    aud.add_argument("--rows", type=int, default=16, help="rows per case (capped at 20000 elements)")
    aud.add_argument("--seed", type=int, default=0)
    aud.add_argument("--peers", type=_csv(tuple(BUILTIN_PEERS)), default=None,
                     help="built-in peers to audit (default: every one whose package is installed)")
    aud.add_argument("--impl", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="audit your own f(x) -> softmax along the last axis (repeatable)")
    aud.add_argument("--json", type=Path, default=Path("results/audit.json"))
    aud.add_argument("--resume", action="store_true", help="keep finished cases of --json, run the rest")
    aud.add_argument("--quick", action="store_true", help="sizes <= 1000 and 4 rows per case")
    aud.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    aud.add_argument("--no-progress", action="store_true")
    aud.set_defaults(func=cmd_audit)

    rep = sub.add_parser("report", help="Markdown report and plots from audit JSON")
    rep.add_argument("--json", type=Path, action="append", help="audit JSON (repeatable; default results/audit.json)")
    rep.add_argument("--out", type=Path, default=Path("results"))
    rep.add_argument("--readme", type=Path, help="also refresh the headline table in this README")
    rep.set_defaults(func=cmd_report)

    rng = sub.add_parser("ranges", help="overflow/underflow thresholds by bisection, and failure maps")
    rng.add_argument("--kernels", type=_csv(("naive", "shifted")), default=["naive", "shifted"])
    rng.add_argument("--json", type=Path, default=None, help="default: OUT/ranges.json")
    rng.add_argument("--out", type=Path, default=Path("results/ranges"), help="folder of the PNG maps")
    rng.add_argument("--no-maps", action="store_true", help="thresholds only (no mpmath reference)")
    rng.set_defaults(func=cmd_ranges)

    lst = sub.add_parser("list", help="kernels, input families and peers available")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
