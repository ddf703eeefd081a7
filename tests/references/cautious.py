"""Cautious optimizers (Liang, Chen, Liu & Liu 2024), float64 NumPy: C-AdamW and C-Lion as the
paper describes them, and the rule alone around any other reference.

The rule, for one tensor: with u the optimizer's direction (the part that points along the
gradient g, before the learning rate), phi = 1[u * g > 0] elementwise, and u is replaced by
u * phi / max(mean(phi), eps), eps = 1e-3 as in the authors' code. The decoupled weight decay
is added after the mask, unmasked; the learning rate multiplies both. Every reference counts
the regimes it met, for the tests to check that they happened: ``dropped`` (entries masked),
``all_dropped`` (a non-empty leaf with no entry kept: mean(phi) = 0) and ``floored``
(0 < mean(phi) < eps).
"""

import numpy as np

from references import Ref, value_at


class Regimes:
    """The rule and the counts of what it did."""

    def __init__(self, mask_eps):
        self.mask_eps = mask_eps
        self.dropped = self.all_dropped = self.floored = 0

    def apply(self, u, g):
        phi = (u * g > 0).astype(np.float64)
        kept = phi.mean() if phi.size else 1.0
        self.dropped += int(phi.size - phi.sum())
        if phi.size and kept == 0:
            self.all_dropped += 1
        if 0 < kept < self.mask_eps:
            self.floored += 1
        return u * phi / max(kept, self.mask_eps)


class CAdamW(Ref, Regimes):
    """C-AdamW: Adam's moments and direction u_t = m_hat / (sqrt(v_hat + eps_root) + eps), the
    mask, then theta_t = theta_{t-1} - lr (masked u_t + wd theta_{t-1})."""

    def __init__(self, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4, mask_eps=1e-3):
        Regimes.__init__(self, mask_eps)
        self.lr, self.b1, self.b2, self.eps, self.eps_root, self.wd = learning_rate, b1, b2, eps, eps_root, weight_decay

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        lr, wd = value_at(self.lr, t - 1), value_at(self.wd, t - 1)
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat, v_hat = self.m[i] / (1 - b1**t), self.v[i] / (1 - b2**t)
            u = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            out.append(-lr * (self.apply(u, g) + wd * p))
        return out


class CLion(Ref, Regimes):
    """C-Lion: u_t = sign(b1 m_{t-1} + (1 - b1) g_t), the mask, m_t = b2 m_{t-1} + (1 - b2) g_t,
    theta_t = theta_{t-1} - lr (masked u_t + wd theta_{t-1})."""

    def __init__(self, learning_rate=1e-4, b1=0.9, b2=0.99, weight_decay=1e-3, mask_eps=1e-3):
        Regimes.__init__(self, mask_eps)
        self.lr, self.b1, self.b2, self.wd = learning_rate, b1, b2, weight_decay

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        lr, wd = value_at(self.lr, self.t - 1), value_at(self.wd, self.t - 1)
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            u = np.sign(self.b1 * self.m[i] + (1 - self.b1) * g)
            self.m[i] = self.b2 * self.m[i] + (1 - self.b2) * g
            out.append(-lr * (self.apply(u, g) + wd * p))
        return out


class Cautious(Ref, Regimes):
    """The rule around another reference ``inner``: its update u is a step to add to the
    parameters (``descent``: the direction is -u) or a direction."""

    def __init__(self, inner, mask_eps=1e-3, descent=True):
        Regimes.__init__(self, mask_eps)
        self.inner, self.descent = inner, descent

    def init(self, params):
        self.t = 0
        self.inner.init(params)

    def update(self, grads, params):
        self.t += 1
        sign = -1.0 if self.descent else 1.0
        return [sign * self.apply(sign * u, g) for u, g in zip(self.inner.update(grads, params), grads)]


def ref_c_adamw(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4, mask_eps=1e-3):
    return CAdamW(learning_rate, b1, b2, eps, eps_root, weight_decay, mask_eps)


def ref_c_lion(learning_rate=1e-4, b1=0.9, b2=0.99, weight_decay=1e-3, mask_eps=1e-3):
    return CLion(learning_rate, b1, b2, weight_decay, mask_eps)
