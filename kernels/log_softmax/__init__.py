"""log_softmax kernels, one file per algorithm: ``naive``, ``shifted``, ``shifted_log1p`` (one rows
function, :mod:`.rows`, over the algorithm's options; each file documents its operations)."""
