"""Float64 NumPy references for ``gradtx.tree``: block norms, and the moment updates of adaptive
optimizers (Kingma & Ba, 2015, sections 2, 3 and 7.1: the moving averages, the bias correction and
AdaMax's infinity norm), one leaf at a time."""

import numpy as np


def numpy_block_norm(x, rms):
    a = np.abs(np.asarray(x, np.complex128)).ravel()
    top = a.max(initial=0.0)
    norm = top * np.sqrt(np.sum((a / top) ** 2)) if top > 0 else 0.0
    return norm / np.sqrt(max(a.size, 1)) if rms else norm


def as64(x):
    """A leaf as float64, or complex128 when it is complex."""
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def numpy_moment(g, m, decay, order):
    """``decay * m + (1 - decay) * g**order``: the plain power (complex for complex ``g``)."""
    return decay * as64(m) + (1 - decay) * as64(g) ** order


def numpy_moment_per_elem_norm(g, m, decay, order):
    """``decay * m + (1 - decay) * |g|**order``, with ``|g|`` the modulus."""
    return decay * as64(m) + (1 - decay) * np.abs(as64(g)) ** order


def numpy_infinity_moment(g, m, decay, eps):
    """AdaMax's ``max(|g| + eps, decay * u)``."""
    return np.maximum(np.abs(as64(g)) + eps, decay * as64(m))


def numpy_bias_correction(m, decay, count):
    """``m / (1 - decay**count)``."""
    return as64(m) / (1 - np.float64(decay) ** count)
