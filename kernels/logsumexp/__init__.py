"""logsumexp kernels, one file per algorithm: ``naive``, ``shifted``, ``shifted_log1p`` (one rows
function, :func:`..lse.lse_rows`, over the algorithm's options; each file documents its
operations)."""
