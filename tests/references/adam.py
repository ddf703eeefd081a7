"""Adam and AdaMax (Kingma & Ba 2015), NAdam (Dozat 2016), AMSGrad (Reddi et al. 2018) and the
named optimizers built on them, with decoupled weight decay (Loshchilov & Hutter 2019).

Each ``ref_*`` takes the same keyword arguments as its gradtx namesake (accumulator dtypes are
accepted and ignored)."""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


class Adam(Ref):
    """Kingma & Ba, Algorithm 1; with ``nesterov`` Dozat's NAdam."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False):
        self.b1, self.b2, self.eps, self.eps_root, self.nesterov = b1, b2, eps, eps_root, nesterov

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            if self.nesterov:
                m_hat = b1 * self.m[i] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = self.m[i] / (1 - b1**t)
            v_hat = self.v[i] / (1 - b2**t)
            out.append(m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps))
        return out


class AMSGrad(Ref):
    """Reddi et al.: Adam with the running maximum of the bias-corrected v (of the raw v when
    ``bias_correction_nu`` is False, as in the paper's Algorithm 2; m uncorrected likewise)."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, bias_correction_mu=True, bias_correction_nu=True):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.correct_m, self.correct_v = bias_correction_mu, bias_correction_nu

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.v_max = [np.zeros_like(p) for p in params]
        self.max_was_active = False  # did the max ever keep an older, larger value?

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat = self.m[i] / (1 - b1**t) if self.correct_m else self.m[i]
            v_hat = self.v[i] / (1 - b2**t) if self.correct_v else self.v[i]
            if np.any(self.v_max[i] > v_hat * (1 + 1e-3)):
                self.max_was_active = True
            self.v_max[i] = np.maximum(self.v_max[i], v_hat)
            out.append(m_hat / (np.sqrt(self.v_max[i] + self.eps_root) + self.eps))
        return out


class AdaMax(Ref):
    """Kingma & Ba, Algorithm 2 (infinity norm)."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8):
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.n = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.n[i] = np.maximum(self.b2 * self.n[i], np.abs(g) + self.eps)
            out.append(self.m[i] / (1 - self.b1**self.t) / self.n[i])
        return out


def ref_adam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, nesterov=False):
    return Chain(Adam(b1, b2, eps, eps_root, nesterov), ScaleByLearningRate(learning_rate))


def ref_adamw(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    weight_decay=1e-4,
    mask=None,
    nesterov=False,
):
    return Chain(
        Adam(b1, b2, eps, eps_root, nesterov),
        AddDecayedWeights(weight_decay, mask),
        ScaleByLearningRate(learning_rate),
    )


def ref_nadam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, nesterov=True):
    return ref_adam(learning_rate, b1, b2, eps, eps_root, nesterov=nesterov)


def ref_nadamw(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    weight_decay=1e-4,
    mask=None,
    nesterov=True,
):
    return ref_adamw(learning_rate, b1, b2, eps, eps_root, weight_decay=weight_decay, mask=mask, nesterov=nesterov)


def ref_amsgrad(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    bias_correction_mu=True,
    bias_correction_nu=True,
):
    return Chain(
        AMSGrad(b1, b2, eps, eps_root, bias_correction_mu, bias_correction_nu), ScaleByLearningRate(learning_rate)
    )


def ref_adamax(learning_rate=2e-3, b1=0.9, b2=0.999, eps=1e-8):
    return Chain(AdaMax(b1, b2, eps), ScaleByLearningRate(learning_rate))


def ref_adamaxw(learning_rate=2e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask=None):
    return Chain(AdaMax(b1, b2, eps), AddDecayedWeights(weight_decay, mask), ScaleByLearningRate(learning_rate))
