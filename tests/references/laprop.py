"""LaProp (Ziyin, Wang & Ueda 2020, arXiv 2002.04839), float64 NumPy, from the paper's Algorithm 1:
the gradient is normalised by the bias-corrected root of its second moment, then averaged into
the momentum, whose bias correction 1 - b1^t is applied to the step:

    n_t = b2 n + (1 - b2) g^2,  m_t = b1 m + (1 - b1) g / (sqrt(n_t / (1 - b2^t)) + eps),
    theta -= lr (m_t / (1 - b1^t) + wd theta)    (decoupled weight decay, as AdamW's).
"""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


class LaProp(Ref):
    def __init__(self, b1=0.9, b2=0.999, eps=1e-15):
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.n = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.n[i] = b2 * self.n[i] + (1 - b2) * g * g
            self.m[i] = b1 * self.m[i] + (1 - b1) * g / (np.sqrt(self.n[i] / (1 - b2**t)) + self.eps)
            out.append(self.m[i] / (1 - b1**t))
        return out


def ref_scale_by_laprop(b1=0.9, b2=0.999, eps=1e-15, mu_dtype=None, nu_dtype=None):
    return LaProp(b1, b2, eps)


def ref_laprop(learning_rate=4e-4, b1=0.9, b2=0.999, eps=1e-15, mu_dtype=None, weight_decay=0.0, mask=None):
    return Chain(LaProp(b1, b2, eps), AddDecayedWeights(weight_decay, mask), ScaleByLearningRate(learning_rate))
