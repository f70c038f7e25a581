"""softmax_vjp kernels: the softmax backward pass ``x, g -> J(x)^T g = y * (g - <g, y>)``, as
frameworks run it: the forward softmax ``y`` of one of the softmax algorithms, stored in the storage
format, then :mod:`.backward` (one file per forward algorithm: ``shifted``)."""
