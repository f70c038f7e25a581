"""softmax kernels, one file per algorithm: ``naive``, ``shifted``, ``shifted_log1p`` (the
three-pass algorithms share :mod:`.rows`, each file names its options and documents its order
of operations)."""
