"""asv benchmark suite of softmax-bench (see docs/asv.md).

bench_speed:    time_* / peakmem_* of every registered kernel and of the peers (numpy composed,
                scipy.special.softmax, torch.softmax when importable), in the same run.
bench_accuracy: track_* accuracy figures (max ULP error per kernel and input family against the
                correctly rounded reference; measured overflow threshold per kernel).

The suite is written against the public API only (``softmax_bench.kernels.list_kernels`` /
``get_kernel``, ``softmax_bench.inputs``, ``softmax_bench.metrics``, ``softmax_bench.reference``),
so it also runs against every past commit that has the kernel registry.
"""
