"""softmax kernels, one file per algorithm: ``naive``, ``shifted``, ``shifted_log1p`` (three
passes: :mod:`.rows`), ``division_free``, ``division_free_log1p`` (through the log-sum-exp:
``..lse``), ``online``, ``two_pass`` (two passes: :mod:`.streaming`); each file names its options
and documents its order of operations."""
