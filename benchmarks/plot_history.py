"""Plot the asv history: time and accuracy per kernel over the recorded commits.

Not a benchmark (asv imports this module during discovery, so nothing heavy happens at import).
Run from the repository root, after ``asv run`` (needs asv and matplotlib)::

    python benchmarks/plot_history.py [--machine NAME] [--out results/asv_history.png]

Commits are ordered by commit date. Panels: time of one row of 10^4 and of the 4096x1024 batch
(``f(x)``, allocating, median), the float32 peers alongside; max ULP error on the N(0, 10^2) family and the
number of failed rows (NaN / inf / spurious zero) on the far_positive family (naive overflows).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def load(results_dir: Path, machine: str | None, env: str | None = None):
    """[(date, short hash, {benchmark name: (params, values)})] sorted by commit date, for one
    environment: ``env``, or the one with results for the most commits."""
    from asv.results import iter_results_for_machine

    if machine is None:
        machines = sorted(p.name for p in results_dir.iterdir() if (p / "machine.json").is_file())
        if len(machines) != 1:
            raise SystemExit(f"pass --machine (found {machines})")
        machine = machines[0]
    by_env: dict[str, dict] = {}
    for res in iter_results_for_machine(str(results_dir), machine):
        rows = by_env.setdefault(res.env_name, {})
        entry = rows.setdefault(res.commit_hash, (res.date, res.commit_hash[:7], {}))
        # every key the result holds: a benchmark whose code changed since (a new version in
        # benchmarks.json) keeps its history, which get_result_keys would drop
        for key in res.get_all_result_keys():
            params = res.get_result_params(key)
            values = res.get_result_value(key, params)
            entry[2][key] = (params, values)
    if not by_env:
        return [], machine, None
    if env is None:
        env = max(by_env, key=lambda e: len(by_env[e]))
    return sorted(by_env[env].values(), key=lambda r: r[0]), machine, env


def _series(history, key, select, total=False):
    """{label: [value per commit]} for benchmark ``key``; ``select(param combo) -> label|None``."""
    import itertools

    out: dict[str, list[float]] = {}
    for i, (_, _, data) in enumerate(history):
        if key not in data:
            continue
        params, values = data[key]
        for combo, v in zip(itertools.product(*params), values):
            label = select(tuple(p.strip("'") for p in combo))
            if label is None:
                continue
            label = label.removeprefix("softmax/")  # kernel ids gained their function later
            series = out.setdefault(label, [math.nan] * len(history))
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            series[i] = (0.0 if math.isnan(series[i]) else series[i]) + v if total else v
    return out


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=_ROOT / "results" / "asv")
    p.add_argument("--machine", default=None)
    p.add_argument("--env", default=None, help="asv environment name (default: most commits)")
    p.add_argument("--out", type=Path, default=_ROOT / "results" / "asv_history.png")
    args = p.parse_args(argv)
    history, machine, env = load(args.results, args.machine, args.env)
    if not history:
        raise SystemExit("no results")
    labels = [h[1] for h in history]
    x = list(range(len(history)))

    def pick(n=None, shape=None):
        def f(combo):
            if n is not None and combo[1] != n:
                return None
            return combo[0]
        return f

    def peer_pick(shape):
        def f(combo):
            name, dtype, sh = combo
            return f"{name} {dtype}" if sh == shape and dtype == "float32" else None
        return f

    def fam_pick(family):
        return lambda combo: combo[0] if combo[1] == family else None

    panels = [
        ("time, one row of 10^4 (f(x))", "ms", 1e3, True,
         [("bench_speed.KernelRow.time_softmax", pick("10000"), "-o", False),
          ("bench_speed.Peers.time_softmax", peer_pick("10000"), ":x", False)]),
        ("time, 4096x1024 batch (f(x))", "ms", 1e3, True,
         [("bench_speed.KernelBatch.time_softmax", pick("4096x1024"), "-o", False),
          ("bench_speed.Peers.time_softmax", peer_pick("4096x1024"), ":x", False)]),
        ("max ULP error, family normal10 (16 x 64)", "ULP", 1.0, True,
         [("bench_accuracy.Ulp.track_max_ulp", fam_pick("normal10"), "-o", False)]),
        ("failed rows (NaN/inf/spurious 0) of 16, family far_positive", "rows", 1.0, False,
         [("bench_accuracy.Ulp.track_bad_rows", fam_pick("far_positive"), "-o", False)]),
    ]
    # one legend for all panels, outside them (the same kernels recur; a legend per panel covered
    # the data), and a two-line title (the environment's name alone is wider than the figure)
    fig, axes = plt.subplots(2, 2, figsize=(17, 10), layout="constrained")
    legend: dict = {}
    for ax, (title, unit, scale, logy, lines) in zip(axes.flat, panels):
        for key, select, style, total in lines:
            for label, ys in sorted(_series(history, key, select, total).items()):
                ys = [y * scale for y in ys]
                if logy and unit == "ULP":
                    ys = [max(y, 0.5) if not math.isnan(y) else y for y in ys]  # 0 ULP drawn at 0.5
                colour = legend[label].get_color() if label in legend else None
                (line,) = ax.plot(x, ys, style, label=label, alpha=0.85, color=colour)
                legend.setdefault(label, line)
        ax.set_title(title)
        ax.set_ylabel(unit + (" (0 drawn at 0.5)" if logy and unit == "ULP" else ""))
        if logy:
            ax.set_yscale("log")
        ax.set_xticks(x, labels)
        ax.set_xlabel("commit (oldest first)")
        ax.grid(True, alpha=0.3)
    fig.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=8)
    fig.suptitle(f"softmax-bench asv history: machine {machine}, {len(history)} commits "
                 f"(kernels solid, float32 peers dotted)\nenvironment {env}", fontsize=11)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
