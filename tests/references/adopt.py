"""ADOPT (Taniguchi et al. 2024), float64 NumPy, from the paper: Algorithm 1, and with the
clipping of its Algorithm 2 / Section 5 (clip value t^(1/4) by default).

Step 0 only sets v_0 = g_0^2 (m_0 = 0) and leaves the parameters as they are; at every
t >= 1 the gradient is normalised by the *previous* second moment, clipped to [-c_t, c_t],
averaged into m, and v is updated last. ``nesterov`` returns b1 m_t + (1 - b1) g_hat_t
(Optax's option)."""

import numpy as np

from references import Chain, Ref
from references.scaling import ScaleByLearningRate


class ADOPT(Ref):
    def __init__(self, b1=0.9, b2=0.9999, eps=1e-6, nesterov=False, use_clipping=True, clip_value_fn=None):
        self.b1, self.b2, self.eps, self.nesterov = b1, b2, eps, nesterov
        self.clip = (clip_value_fn or (lambda t: t**0.25)) if use_clipping else None

    def init(self, params):
        self.t = 0  # the paper's index of the gradient g_t; the first one is g_0
        self.m = [np.zeros_like(p) for p in params]
        self.v = None
        self.clipped = 0  # how many entries the clip changed, for regime checks

    def update(self, grads, params):
        if self.v is None:  # t = 0
            self.v = [g**2 for g in grads]
            self.t = 1
            return [np.zeros_like(g) for g in grads]
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            g_hat = g / np.maximum(np.sqrt(self.v[i]), self.eps)
            if self.clip is not None:
                c = float(self.clip(t))
                self.clipped += int(np.sum(np.abs(g_hat) > c))
                g_hat = np.clip(g_hat, -c, c)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g_hat
            out.append(b1 * self.m[i] + (1 - b1) * g_hat if self.nesterov else self.m[i].copy())
            self.v[i] = b2 * self.v[i] + (1 - b2) * g**2
        self.t += 1
        return out


def ref_adopt(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.9999,
    eps=1e-6,
    mu_dtype=None,
    nesterov=False,
    use_clipping=True,
    clip_value_fn=None,
):
    return Chain(ADOPT(b1, b2, eps, nesterov, use_clipping, clip_value_fn), ScaleByLearningRate(learning_rate))
