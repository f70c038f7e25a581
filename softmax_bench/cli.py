"""The ``softmax-bench`` command line.

Subcommands import their modules lazily, so ``softmax-bench --help`` starts fast and a missing
optional dependency only matters to the subcommand that needs it.
"""
from __future__ import annotations

import argparse
import sys
import time

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
