"""Layer-wise scaling: the trust ratio (You et al. 2017, 2019), the parameter block's norm or RMS,
and normalization by the update's global norm."""

import numpy as np

import references as R


def norm(x):
    return float(np.sqrt(np.sum(np.square(x))))


def trust_ratio(p, u, coefficient=1.0, min_norm=0.0, eps=0.0):
    p_norm, u_norm = max(norm(p), min_norm), max(norm(u), min_norm)
    return coefficient * p_norm / (u_norm + eps) if p_norm > 0 and u_norm > 0 else 1.0


class TrustRatio(R.Ref):
    def __init__(self, min_norm=0.0, trust_coefficient=1.0, eps=0.0):
        self.kw = dict(coefficient=trust_coefficient, min_norm=min_norm, eps=eps)

    def update(self, grads, params):
        return [trust_ratio(p, g, **self.kw) * g for g, p in zip(grads, params)]


class ParamBlock(R.Ref):
    def __init__(self, size, min_scale=1e-3):
        self.size, self.min_scale = size, min_scale

    def update(self, grads, params):
        return [g * max(self.size(p), self.min_scale) for g, p in zip(grads, params)]


def rms(x):
    return norm(x) / np.sqrt(max(np.size(x), 1))


class NormalizeByUpdateNorm(R.Ref):
    def __init__(self, scale_factor=1.0, eps=1e-6):
        self.s, self.eps = scale_factor, eps

    def update(self, grads, params):
        total = np.sqrt(sum(np.sum(g**2) for g in grads))
        return [self.s * g / (total + self.eps) for g in grads]
