"""AdEMAMix (Pagliardini, Ablin & Grangier 2024, Algorithm 1, with the alpha and beta3
schedulers of its Section 3) and Simplified AdEMAMix (Morwani, Vyas, Zhang & Kakade 2025), in
float64 NumPy, from the papers' equations.

``AdEMAMix(..., warmup=T)`` runs the paper's warm-ups itself: at update t (from 1) it uses
``alpha_warmup(t, alpha, T)`` and ``b3_warmup(t, b3, b_start, T)``. Otherwise a schedule given as
``b3``, ``alpha`` (or Simplified AdEMAMix's ``b1``) is called with t - 1, as every gradtx schedule.
"""

import numpy as np

from references import Chain, Ref, value_at
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


def alpha_warmup(t, alpha, warmup):
    """f_alpha(t) = min(t alpha / T, alpha)."""
    return min(t * alpha / warmup, alpha)


def b3_warmup(t, b3, b_start, warmup):
    """f_beta3(t): 1 / ln(beta) moves linearly from 1 / ln(b_start) (t = 0) to 1 / ln(b3) (t = T),
    so the half-life of the slow EMA grows linearly; capped at b3."""
    inv = (1 - t / warmup) / np.log(b_start) + (t / warmup) / np.log(b3)
    return min(np.exp(1 / inv), b3)


class AdEMAMix(Ref):
    def __init__(self, b1=0.9, b2=0.999, b3=0.9999, alpha=6.0, eps=1e-8, eps_root=0.0, warmup=None, b_start=None):
        self.b1, self.b2, self.b3, self.alpha, self.eps, self.eps_root = b1, b2, b3, alpha, eps, eps_root
        self.warmup, self.b_start = warmup, b1 if b_start is None else b_start

    def init(self, params):
        self.t = 0
        self.m1 = [np.zeros_like(p) for p in params]
        self.m2 = [np.zeros_like(p) for p in params]
        self.nu = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        if self.warmup is None:
            b3, alpha = value_at(self.b3, t - 1), value_at(self.alpha, t - 1)
        else:
            b3 = b3_warmup(t, self.b3, self.b_start, self.warmup)
            alpha = alpha_warmup(t, self.alpha, self.warmup)
        out = []
        for i, g in enumerate(grads):
            self.m1[i] = b1 * self.m1[i] + (1 - b1) * g
            self.m2[i] = b3 * self.m2[i] + (1 - b3) * g
            self.nu[i] = b2 * self.nu[i] + (1 - b2) * g**2
            m1_hat = self.m1[i] / (1 - b1**t)
            nu_hat = self.nu[i] / (1 - b2**t)
            out.append((m1_hat + alpha * self.m2[i]) / (np.sqrt(nu_hat + self.eps_root) + self.eps))
        return out


class SimplifiedAdEMAMix(Ref):
    def __init__(self, b1=0.99, b2=0.95, alpha=0.0, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.alpha, self.eps, self.eps_root = b1, b2, alpha, eps, eps_root

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.n = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b2 = self.t, self.b2
        b1, alpha = value_at(self.b1, t - 1), value_at(self.alpha, t - 1)
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + g  # a discounted sum: no (1 - b1), no bias correction
            self.n[i] = b2 * self.n[i] + (1 - b2) * g**2
            n_hat = self.n[i] / (1 - b2**t)
            out.append((self.m[i] + alpha * g) / (np.sqrt(n_hat + self.eps_root) + self.eps))
        return out


def ref_ademamix(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    b3=0.9999,
    alpha=5.0,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    weight_decay=0.0,
    mask=None,
    warmup=None,
    b_start=None,
):
    """theta_t = theta_{t-1} - eta ((m1_hat + alpha m2) / (sqrt(nu_hat) + eps) + lambda theta_{t-1})."""
    return Chain(
        AdEMAMix(b1, b2, b3, alpha, eps, eps_root, warmup, b_start),
        AddDecayedWeights(weight_decay, mask),
        ScaleByLearningRate(learning_rate),
    )


def ref_simplified_ademamix(
    learning_rate=1e-4, b1=0.99, b2=0.95, alpha=0.0, eps=1e-8, eps_root=0.0, weight_decay=0.0, mask=None
):
    return Chain(
        SimplifiedAdEMAMix(b1, b2, alpha, eps, eps_root),
        AddDecayedWeights(weight_decay, mask),
        ScaleByLearningRate(learning_rate),
    )
