"""LARS (You, Gitman & Ginsburg 2017), LAMB (You et al. 2019), Fromage (Bernstein et al. 2020) and
NovoGrad (Ginsburg et al. 2019)."""

import jax
import numpy as np

import references as R
from references.block_scaling import trust_ratio


def flat_mask(mask):
    """A mask (True, a tree of bools or a function of the params) as one bool per leaf."""
    params = R.param_tree(np.float64)
    if mask is True or mask is None:
        return [True] * len(jax.tree.leaves(params))
    if mask is False:
        return [False] * len(jax.tree.leaves(params))
    return jax.tree.leaves(mask(params) if callable(mask) else mask)


class LARS(R.Ref):
    """You, Gitman & Ginsburg (2017), Algorithm 1, with the trust ratio of the decayed gradient."""

    def __init__(
        self,
        learning_rate=1.0,
        weight_decay=0.0,
        weight_decay_mask=True,
        trust_coefficient=0.001,
        eps=0.0,
        trust_ratio_mask=True,
        momentum=0.9,
        nesterov=False,
    ):
        self.lr, self.wd, self.tc, self.eps, self.m, self.nesterov = (
            learning_rate,
            weight_decay,
            trust_coefficient,
            eps,
            momentum,
            nesterov,
        )
        self.wd_mask, self.tr_mask = flat_mask(weight_decay_mask), flat_mask(trust_ratio_mask)

    def init(self, params):
        self.t, self.v = 0, [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        lr, wd = R.value_at(self.lr, self.t), R.value_at(self.wd, self.t)
        self.t += 1
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            d = g + wd * p if self.wd_mask[i] else g
            local = trust_ratio(p, d, self.tc, eps=self.eps) if self.tr_mask[i] else 1.0
            step = lr * local * d
            self.v[i] = self.m * self.v[i] + step
            out.append(-(step + self.m * self.v[i]) if self.nesterov else -self.v[i])
        return out


class LAMB(R.Ref):
    """You et al. (2019), Algorithm 2 with phi the identity."""

    def __init__(self, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask=None):
        self.lr, self.b1, self.b2, self.eps, self.eps_root, self.wd = learning_rate, b1, b2, eps, eps_root, weight_decay
        self.mask = flat_mask(mask)

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        lr, wd = R.value_at(self.lr, self.t), R.value_at(self.wd, self.t)
        self.t += 1
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
            m_hat, v_hat = self.m[i] / (1 - self.b1**self.t), self.v[i] / (1 - self.b2**self.t)
            r = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            d = r + wd * p if self.mask[i] else r
            out.append(-lr * trust_ratio(p, d) * d)
        return out


class Fromage(R.Ref):
    """Bernstein et al. (2020), Algorithm 1: W <- (W - eta |W|/|g| g) / sqrt(1 + eta^2)."""

    def __init__(self, learning_rate=1e-2, min_norm=1e-6):
        self.lr, self.min_norm = learning_rate, min_norm

    def update(self, grads, params):
        eta = R.value_at(self.lr, self.t)
        self.t += 1
        out = []
        for g, p in zip(grads, params):
            new = (p - eta * trust_ratio(p, g, min_norm=self.min_norm) * g) / np.sqrt(1 + eta**2)
            out.append(new - p)
        return out


class NovoGrad(R.Ref):
    """Ginsburg et al. 2019, Algorithm 1: one second moment per leaf, decay inside the momentum."""

    def __init__(self, b1=0.9, b2=0.25, eps=1e-8, eps_root=0.0, weight_decay=0.0, mask=None):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.decay = R.AddDecayedWeights(weight_decay, mask)

    def init(self, params):
        self.t, self.m, self.v = 0, [0 * p for p in params], [0.0 for _ in params]
        self.decay.init(params)

    def update(self, grads, params):
        self.t += 1
        normalized = []
        for i, g in enumerate(grads):
            sq = float(np.sum(g * g))
            self.v[i] = sq if self.t == 1 else self.b2 * self.v[i] + (1 - self.b2) * sq
            normalized.append(g / (np.sqrt(self.v[i] + self.eps_root) + self.eps))
        normalized = self.decay.update(normalized, params)
        self.m = [self.b1 * m + d for m, d in zip(self.m, normalized)]
        return [m.copy() for m in self.m]
