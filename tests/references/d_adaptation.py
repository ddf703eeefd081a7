"""D-Adaptation for Adam (Defazio & Mishchenko 2023, the Adam variant of the appendix) and
Prodigy (Mishchenko & Defazio 2023, Algorithm "Prodigy (Adam version)"), in float64 NumPy.

Both keep one distance estimate ``d`` for the whole tree: inner products and l1 norms are taken
over all leaves together. ``learning_rate`` is the paper's :math:`\\gamma_k`, a number or a function
of the step ``k`` (from 0). Weight decay is decoupled, :math:`-\\lambda \\gamma_k d_k x_k`, as in
the authors' code. ``use_bias_correction`` is the authors' code's option (and Optax's behaviour):
every :math:`\\gamma_k d_k` is multiplied by :math:`\\sqrt{1 - b_2^{k+1}} / (1 - b_1^{k+1})`.
"""

import numpy as np

import references as R


def _l1(trees):
    return sum(float(np.sum(np.abs(x))) for x in trees)


def _correction(on, b1, b2, t):
    return np.sqrt(1 - b2**t) / (1 - b1**t) if on else 1.0


def _dot(a, b):
    return sum(float(np.sum(x * y)) for x, y in zip(a, b))


class DAdaptAdamW(R.Ref):
    """k = 0, 1, ...; with A_k = diag(sqrt(v_k) + eps) and gamma_k the learning rate:

    r_{k+1} = sqrt(b2) r_k + (1 - sqrt(b2)) d_k gamma_k <g_k, s_k>_{A_k^-1}
    m_{k+1} = b1 m_k + (1 - b1) d_k gamma_k g_k
    v_{k+1} = b2 v_k + (1 - b2) g_k^2
    s_{k+1} = sqrt(b2) s_k + (1 - sqrt(b2)) d_k gamma_k g_k
    x_{k+1} = x_k - A_{k+1}^-1 m_{k+1} - wd d_k gamma_k x_k
    d_{k+1} = max(d_k, r_{k+1} / ((1 - sqrt(b2)) |s_{k+1}|_1))
    """

    def __init__(
        self,
        learning_rate=1.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        estim_lr0=1e-6,
        weight_decay=0.0,
        use_bias_correction=False,
    ):
        self.lr, (self.b1, self.b2), self.eps, self.d0, self.wd = learning_rate, betas, eps, estim_lr0, weight_decay
        self.bc = use_bias_correction

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.zeros_like(p) for p in params]
        self.d, self.r = self.d0, 0.0
        self.d_history = [self.d]

    def update(self, grads, params):
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.wd
        root = np.sqrt(b2)
        dlr = self.d * R.value_at(self.lr, self.t) * _correction(self.bc, b1, b2, self.t + 1)
        a_old = [np.sqrt(v) + eps for v in self.v]
        self.r = root * self.r + (1 - root) * dlr * _dot(grads, [s / a for s, a in zip(self.s, a_old)])
        self.m = [b1 * m + (1 - b1) * dlr * g for m, g in zip(self.m, grads)]
        self.v = [b2 * v + (1 - b2) * g * g for v, g in zip(self.v, grads)]
        self.s = [root * s + (1 - root) * dlr * g for s, g in zip(self.s, grads)]
        updates = [-m / (np.sqrt(v) + eps) - wd * dlr * p for m, v, p in zip(self.m, self.v, params)]
        l1 = _l1(self.s)
        if l1 > 0:
            self.d = max(self.d, self.r / ((1 - root) * l1))
        self.d_history.append(self.d)
        self.t += 1
        return updates


class Prodigy(R.Ref):
    """k = 0, 1, ...; gamma_k the learning rate, beta3 = sqrt(b2) unless given:

    m_{k+1} = b1 m_k + (1 - b1) d_k g_k
    v_{k+1} = b2 v_k + (1 - b2) d_k^2 g_k^2
    r_{k+1} = beta3 r_k + (1 - beta3) gamma_k d_k^2 <g_k, x_0 - x_k>
    s_{k+1} = beta3 s_k + (1 - beta3) gamma_k d_k^2 g_k      (without gamma_k: safeguard_warmup)
    d_{k+1} = max(d_k, coef r_{k+1} / |s_{k+1}|_1)
    x_{k+1} = x_k - gamma_k d_k (m_{k+1} / (sqrt(v_{k+1}) + d_k eps) + wd x_k)
    """

    def __init__(
        self,
        learning_rate=1.0,
        betas=(0.9, 0.999),
        beta3=None,
        eps=1e-8,
        estim_lr0=1e-6,
        estim_lr_coef=1.0,
        weight_decay=0.0,
        safeguard_warmup=False,
        use_bias_correction=False,
    ):
        self.lr, (self.b1, self.b2), self.eps, self.d0 = learning_rate, betas, eps, estim_lr0
        self.b3 = np.sqrt(self.b2) if beta3 is None else beta3
        self.coef, self.wd, self.safeguard = estim_lr_coef, weight_decay, safeguard_warmup
        self.bc = use_bias_correction

    def init(self, params):
        self.t = 0
        self.x0 = [p.copy() for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.zeros_like(p) for p in params]
        self.d, self.r = self.d0, 0.0
        self.d_history = [self.d]

    def update(self, grads, params):
        b1, b2, b3, d = self.b1, self.b2, self.b3, self.d
        lr = R.value_at(self.lr, self.t) * _correction(self.bc, b1, b2, self.t + 1)
        self.m = [b1 * m + (1 - b1) * d * g for m, g in zip(self.m, grads)]
        self.v = [b2 * v + (1 - b2) * d**2 * g**2 for v, g in zip(self.v, grads)]
        self.r = b3 * self.r + (1 - b3) * lr * d**2 * _dot(grads, [x0 - x for x0, x in zip(self.x0, params)])
        weight = d**2 if self.safeguard else lr * d**2
        self.s = [b3 * s + (1 - b3) * weight * g for s, g in zip(self.s, grads)]
        l1 = _l1(self.s)
        if l1 > 0:
            self.d = max(d, self.coef * self.r / l1)
        self.d_history.append(self.d)
        self.t += 1
        return [-lr * d * (m / (np.sqrt(v) + d * self.eps) + self.wd * p) for m, v, p in zip(self.m, self.v, params)]


def run(ref, params, grads, steps=None):
    """Run ``ref`` from the float64 leaves ``params`` with the gradients ``grads``: a list (one
    list of leaves per step) or a function of the parameters, called ``steps`` times. Returns the
    parameters and the estimate ``d`` after every step."""
    ref.init(params)
    path, ds = [], []
    for step in range(len(grads) if steps is None else steps):
        g = grads(params) if callable(grads) else grads[step]
        params = [p + u for p, u in zip(params, ref.update(g, params))]
        path.append(params)
        ds.append(ref.d)
    return path, ds
