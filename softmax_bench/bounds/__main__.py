"""python -m softmax_bench.bounds: refresh results/worst_cases."""
import argparse
import time

from softmax_bench.bounds import save_worst_cases

parser = argparse.ArgumentParser(
    prog="python -m softmax_bench.bounds",
    description="Search every kernel for the rows with the largest error relative to its "
                "derived bound and save them in results/worst_cases/.",
)
parser.add_argument("--kernels", nargs="*", default=None, help="kernel ids (default: every kernel)")
args = parser.parse_args()
t = time.perf_counter()
for row in save_worst_cases(ids=args.kernels):
    print("%-40s worst err/bound %.3f  (err %.3g ULP, bound %.3g ULP, n=%d)" % row)
print(f"{time.perf_counter() - t:.1f} s")
