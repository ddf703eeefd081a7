"""Block norms of a leaf, as ``gradtx.tree.block_norms`` computes them."""

import numpy as np


def numpy_block_norm(x, rms):
    a = np.abs(np.asarray(x, np.complex128)).ravel()
    top = a.max(initial=0.0)
    norm = top * np.sqrt(np.sum((a / top) ** 2)) if top > 0 else 0.0
    return norm / np.sqrt(max(a.size, 1)) if rms else norm
