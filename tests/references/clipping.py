"""Clipping by value and by global norm, block RMS clipping (Shazeer & Stern 2018), adaptive
(unit-wise) gradient clipping (Brock et al. 2021) and per-example clipping (Abadi et al. 2016;
McMahan et al. 2018)."""

import numpy as np

import references as R
from references import Ref


class Clip(Ref):
    def __init__(self, max_delta):
        self.max_delta = max_delta
        self.clipped = False

    def update(self, grads, params):
        self.t += 1
        self.clipped |= any(np.any(np.abs(g) > self.max_delta) for g in grads)
        return [np.minimum(np.maximum(g, -self.max_delta), self.max_delta) for g in grads]


class ClipByGlobalNorm(Ref):
    def __init__(self, max_norm):
        self.max_norm = max_norm
        self.clipped_steps = []  # one bool per step: was the norm above max_norm?

    @property
    def clipped(self):
        return any(self.clipped_steps)

    def update(self, grads, params):
        self.t += 1
        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
        self.clipped_steps.append(bool(norm > self.max_norm))
        if norm > self.max_norm:
            return [g * (self.max_norm / norm) for g in grads]
        return [g.copy() for g in grads]


class BlockRMS(R.Ref):
    """u * min(1, c / rms(u)) per leaf."""

    def __init__(self, threshold):
        self.c = threshold
        self.clipped = self.kept = 0

    def update(self, grads, params):
        out = []
        for g in grads:
            rms = np.sqrt(np.mean(g**2)) if g.size else 0.0
            self.clipped += rms > self.c
            self.kept += rms <= self.c
            out.append(g * (self.c / rms if rms > self.c else 1.0))
        return out


def unit_axes(shape, axis):
    """The NFNets reference code's units: a scalar or vector is one; matrices and 3-d kernels
    reduce axis 0 (columns); 4-d kernels (h, w, in, out) reduce all but the last."""
    if len(shape) <= 1:
        return tuple(range(len(shape)))
    if axis is not None:
        return (axis,) if isinstance(axis, int) else tuple(axis)
    if len(np.squeeze(np.zeros(shape)).shape) <= 1:
        return tuple(range(len(shape)))
    return {2: (0,), 3: (0,), 4: (0, 1, 2)}.get(len(shape), tuple(range(len(shape) - 1)))


class AGC(R.Ref):
    """Brock et al. (2021): G_i <- G_i min(1, lambda max(|W_i|, eps) / |G_i|) for each unit i
    (the weights into one output, by the units of the NFNets reference code: ``unit_axes``)."""

    def __init__(self, clipping, eps=1e-3, axis=None):
        self.clipping, self.eps, self.axis = clipping, eps, axis
        self.clipped = self.kept = 0

    def update(self, grads, params):
        out = []
        for g, w in zip(grads, params):
            axes = unit_axes(g.shape, self.axis)
            g_norm = np.sqrt(np.sum(g**2, axis=axes, keepdims=True))
            limit = self.clipping * np.maximum(np.sqrt(np.sum(w**2, axis=axes, keepdims=True)), self.eps)
            self.clipped += int(np.sum(g_norm > limit))
            self.kept += int(np.sum(g_norm <= limit))
            out.append(g * np.where(g_norm > limit, limit / np.where(g_norm > 0, g_norm, 1.0), 1.0))
        return out


# The per-example gradients of tests/transforms/test_clipping.py have a leading batch axis of this size.
BATCH = 5


def ref_global_clip(leaves, c):
    flat = [x.reshape(BATCH, -1) for x in leaves]
    norms = np.sqrt(sum(np.sum(x**2, axis=1) for x in flat))
    factor = np.where(norms > c, c / np.where(norms > 0, norms, 1), 1.0)
    sums = [np.sum(x * factor.reshape((BATCH,) + (1,) * (x.ndim - 1)), axis=0) for x in leaves]
    return sums, int(np.sum(norms > c))


def ref_layer_clip(leaves, c, uniform):
    sizes = [x[0].size for x in leaves]
    sums, counts = [], []
    for x, d in zip(leaves, sizes):
        c_l = c / np.sqrt(len(leaves)) if uniform else c * np.sqrt(d / sum(sizes))
        norms = np.sqrt(np.sum(x.reshape(BATCH, -1) ** 2, axis=1))
        factor = np.where(norms > c_l, c_l / np.where(norms > 0, norms, 1), 1.0)
        sums.append(np.sum(x * factor.reshape((BATCH,) + (1,) * (x.ndim - 1)), axis=0))
        counts.append(int(np.sum(norms > c_l)))
    return sums, counts
