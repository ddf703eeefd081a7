"""MADGRAD (Defazio & Jelassi 2021, arXiv 2101.11075, Algorithm 1): dual averaging with a cube-root
AdaGrad denominator and momentum as an average of the iterates.

With k = 0, 1, ... the index of the update and c = 1 - momentum::

    lambda_k = gamma_k sqrt(k + 1)
    s_{k+1}  = s_k + lambda_k g_k
    nu_{k+1} = nu_k + lambda_k g_k^2
    z_{k+1}  = x_0 - s_{k+1} / (nu_{k+1}^(1/3) + eps)
    x_{k+1}  = (1 - c) x_k + c z_{k+1}

``ref_madgrad`` adds the L2 term ``weight_decay * x_k`` to g_k first."""

import numpy as np

from references import Chain, Ref, value_at
from references.regularizers import AddDecayedWeights


class Madgrad(Ref):
    """Algorithm 1 as a transform: returns x_{k+1} - x_k."""

    def __init__(self, learning_rate=1e-2, momentum=0.9, eps=1e-6):
        self.lr, self.momentum, self.eps = learning_rate, momentum, eps

    def init(self, params):
        self.t = 0
        self.x0 = [p.copy() for p in params]
        self.s = [np.zeros_like(p) for p in params]
        self.nu = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        k = self.t  # the paper's k, from 0
        lam = value_at(self.lr, k) * np.sqrt(k + 1)
        c = 1.0 - self.momentum
        out = []
        for i, (g, x) in enumerate(zip(grads, params)):
            self.s[i] = self.s[i] + lam * g
            self.nu[i] = self.nu[i] + lam * g * g
            z = self.x0[i] - self.s[i] / (np.cbrt(self.nu[i]) + self.eps)
            out.append((1 - c) * x + c * z - x)
        self.t += 1
        return out


def ref_scale_by_madgrad(learning_rate=1e-2, momentum=0.9, eps=1e-6):
    return Madgrad(learning_rate, momentum, eps)


def ref_madgrad(learning_rate=1e-2, momentum=0.9, weight_decay=0.0, eps=1e-6):
    return Chain(AddDecayedWeights(weight_decay), Madgrad(learning_rate, momentum, eps))
