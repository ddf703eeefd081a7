"""MoMo and MoMo-Adam (Schaipp, Ohana, Eickenberg, Defazio & Gower 2023, arXiv 2305.07583,
Algorithms 1 and 2): Polyak-type step sizes from a momentum model of the loss.

With k = 1, 2, ... the index of the update, f_k the loss at x_k and g_k its gradient::

    fbar_k  = (1 - b) f_k + b fbar_{k-1}
    d_k     = (1 - b) g_k + b d_{k-1}
    gamma_k = (1 - b) <g_k, x_k> + b gamma_{k-1}
    h_k     = fbar_k + <d_k, x_k> - gamma_k
    tau_k   = min(alpha_k / rho_k, ((1 + alpha_k lam)(fbar_k - gamma_k - rho_k f*) + <d_k, x_k>)_+ / |d_k|^2)
    x_{k+1} = (x_k - tau_k d_k) / (1 + alpha_k lam)

MoMo (Algorithm 1) starts the averages at the first values (fbar_0 = f_1, d_0 = g_1,
gamma_0 = <g_1, x_1>) and has rho_k = 1; with ``bias_correction`` they start at 0 and
rho_k = 1 - b^k. MoMo-Adam (Algorithm 2) starts at 0, has rho_k = 1 - b1^k and measures d_k in
the norm of D_k = eps + sqrt(v_k / (1 - b2^k)), v_k Adam's second moment: |d|^2 becomes
sum d^2 / D_k and the step tau_k d_k / D_k. (With lam = 0 this is the algorithm boxes; the weight
decay term is the exact solution of the proximal model step with lam/2 |x|^2 added.)

With ``adapt_lower_bound`` f* is estimated online (MoMo*): before the step, when
(1 + alpha lam)(fbar_k - gamma_k) + <d_k, x_k> < (1 + alpha lam) rho_k f*_k the estimate is reset
to half that value over (1 + alpha lam) rho_k; after it, f*_{k+1} = (h_k - tau_k |d_k|^2 / 2) / rho_k;
both are kept at least the given lower bound.

These references take the loss too: ``update(grads, params, value)``."""

import numpy as np

from references import value_at


def _dot(a, b):
    return float(sum(np.sum(x * y) for x, y in zip(a, b)))


class Momo:
    def __init__(
        self,
        learning_rate=1.0,
        beta=0.9,
        lower_bound=0.0,
        weight_decay=0.0,
        adapt_lower_bound=False,
        bias_correction=False,
        adam=False,
        b2=0.999,
        eps=1e-8,
    ):
        self.lr, self.beta, self.lb0, self.wd = learning_rate, beta, lower_bound, weight_decay
        self.adapt, self.bias_correction, self.adam, self.b2, self.eps = (
            adapt_lower_bound,
            bias_correction or adam,
            adam,
            b2,
            eps,
        )
        self.steps_capped = self.steps_model = self.resets = 0

    def init(self, params):
        self.k = 0
        self.d = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.fbar = self.gamma = 0.0
        self.lb = self.lb0

    def update(self, grads, params, value):
        self.k += 1
        k, b = self.k, self.beta
        if k == 1 and not self.bias_correction:  # Algorithm 1's initialization
            self.fbar, self.d, self.gamma = value, [g.copy() for g in grads], _dot(grads, params)
        self.fbar = (1 - b) * value + b * self.fbar
        self.d = [(1 - b) * g + b * d for g, d in zip(grads, self.d)]
        self.gamma = (1 - b) * _dot(grads, params) + b * self.gamma
        rho = 1 - b**k if self.bias_correction else 1.0
        if self.adam:
            self.v = [self.b2 * v + (1 - self.b2) * g * g for g, v in zip(grads, self.v)]
            D = [self.eps + np.sqrt(v / (1 - self.b2**k)) for v in self.v]
        else:
            D = [np.ones_like(d) for d in self.d]
        alpha = value_at(self.lr, k - 1)
        shrink = 1 + alpha * value_at(self.wd, k - 1)
        dot = _dot(self.d, params)
        norm = float(sum(np.sum(d * d / s) for d, s in zip(self.d, D)))
        h = self.fbar + dot - self.gamma
        if self.adapt:
            cap = shrink * (self.fbar - self.gamma) + dot
            if cap < shrink * rho * self.lb:
                self.lb = max(cap / (2 * shrink * rho), self.lb0)
                self.resets += 1
        numerator = shrink * (self.fbar - self.gamma - rho * self.lb) + dot
        model_step = max(numerator, 0.0) / norm if norm > 0 else np.inf
        tau = min(alpha / rho, model_step)
        self.steps_capped += tau == alpha / rho
        self.steps_model += tau != alpha / rho
        if self.adapt:
            self.lb = max((h - 0.5 * tau * norm) / rho, self.lb0)
        return [(x - tau * d / s) / shrink - x for x, d, s in zip(params, self.d, D)]


def ref_momo(
    learning_rate=1.0, beta=0.9, lower_bound=0.0, weight_decay=0.0, adapt_lower_bound=False, bias_correction=False
):
    return Momo(learning_rate, beta, lower_bound, weight_decay, adapt_lower_bound, bias_correction)


def ref_momo_adam(
    learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8, lower_bound=0.0, weight_decay=0.0, adapt_lower_bound=False
):
    return Momo(learning_rate, b1, lower_bound, weight_decay, adapt_lower_bound, True, adam=True, b2=b2, eps=eps)
