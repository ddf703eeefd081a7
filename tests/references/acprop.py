"""ACProp (Zhuang et al. 2021, arXiv 2110.05454): a centred second moment, used one step late
(asynchronously) in the denominator.

With t = 1, 2, ... the index of the update and m_t = b1 m_{t-1} + (1 - b1) g_t, two forms.

``numerator="momentum"`` (the paper's Algorithm ACProp; the bias correction of m_t and the first
step as in the authors' code)::

    u_t = (m_t / (1 - b1^t)) / (sqrt(s_{t-1} / (1 - b2^(t-1))) + eps)   (t > 1)
    u_1 = m_1 / (1 - b1)                          (no s_0 yet: the bias-corrected momentum, g_1)
    s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)^2 + eps_root                (centred on the new m_t)

``numerator="gradient"`` (Optax's numerics)::

    u_t = g_t / (sqrt(s_{t-1} / (1 - b2^(t-1))) + eps)                  (t > 1)
    u_1 = g_1 / (1 + eps)
    s_t = b2 s_{t-1} + (1 - b2) (g_t - m_{t-1})^2 + eps_root            (centred on m_{t-1})

``ref_acprop`` chains decoupled weight decay and the learning rate."""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


class ACProp(Ref):
    def __init__(self, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, numerator="momentum"):
        assert numerator in ("momentum", "gradient")
        self.b1, self.b2, self.eps, self.eps_root, self.numerator = b1, b2, eps, eps_root, numerator

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.s = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2, eps = self.t, self.b1, self.b2, self.eps
        paper = self.numerator == "momentum"
        out = []
        for i, g in enumerate(grads):
            m_prev, s_prev = self.m[i], self.s[i]
            m = b1 * m_prev + (1 - b1) * g
            top = m / (1 - b1**t) if paper else g
            if t == 1:
                out.append(top if paper else top / (1.0 + eps))
            else:
                out.append(top / (np.sqrt(s_prev / (1 - b2 ** (t - 1))) + eps))
            residual = g - m if paper else g - m_prev
            self.s[i] = b2 * s_prev + (1 - b2) * residual**2 + self.eps_root
            self.m[i] = m
        return out


def ref_scale_by_acprop(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, numerator="momentum"):
    return ACProp(b1, b2, eps, eps_root, numerator)


def ref_acprop(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-16,
    eps_root=1e-16,
    weight_decay=0.0,
    mask=None,
    numerator="momentum",
):
    return Chain(
        ACProp(b1, b2, eps, eps_root, numerator),
        AddDecayedWeights(weight_decay, mask),
        ScaleByLearningRate(learning_rate),
    )
