"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney 2020, arXiv 2006.00719), Algorithm 1,
in float64 NumPy.

Written from the algorithm box and Eqs. 9-12: the Hutchinson estimate D = z * (H z) with the
exact Hessian-vector product of the test's objective and the probe vectors z the test draws,
spatial averaging of |D| over the spatial axes of 4-D leaves (Eq. 10 as the authors' code runs
it: the mean of the absolute values), the Hessian momentum v = EMA of D^2, the gradient's EMA m,
both bias-corrected, the step m_hat / (v_hat^(k/2) + eps), and decoupled weight decay and the
learning rate as in the authors' code: theta - lr * (step + wd * theta). A new estimate is made
on the steps t = 1, K + 1, 2K + 1, ...; on the others the last averaged estimate enters v again.
Every hyperparameter may be a function of the step count (t - 1).
"""

from __future__ import annotations

import numpy as np

import references as R


def block_average(d, spatial_axes):
    """Eq. 10 on a 4-D kernel: each entry replaced by the mean of |d| over its block, the entries
    that differ from it only along ``spatial_axes``; on other leaves |d|."""
    d = np.abs(d)
    if spatial_axes is None or d.ndim != 4:
        return d
    return np.broadcast_to(np.mean(d, axis=tuple(spatial_axes), keepdims=True), d.shape).copy()


class AdaHessian(R.Ref):
    """The whole optimizer on flat lists of leaves: ``update(grads, params)`` returns theta_{t+1} - theta_t.

    ``hvp_fn(params, z)`` is the exact product H(params) z (lists of arrays); ``probes`` the list of
    probe vectors z (lists of arrays), the i-th used by the i-th estimate; ``weight_decay_mask`` a
    list of bools, one per leaf (None: all). ``negative_in_blocks`` counts the entries of z * (H z)
    below 0 on the averaged leaves (where the absolute value changes the average).
    """

    def __init__(
        self,
        hvp_fn,
        probes,
        learning_rate=0.15,
        b1=0.9,
        b2=0.999,
        eps=1e-4,
        weight_decay=0.0,
        hessian_power=1.0,
        weight_decay_mask=None,
        update_interval=1,
        spatial_axes=(0, 1),
    ):
        self.hvp_fn, self.probes = hvp_fn, probes
        self.lr, self.b1, self.b2, self.eps = learning_rate, b1, b2, eps
        self.wd, self.k, self.mask = weight_decay, hessian_power, weight_decay_mask
        self.interval, self.axes = update_interval, spatial_axes

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.d = [np.zeros_like(p) for p in params]
        self.estimates = 0
        self.negative_in_blocks = 0

    def update(self, grads, params):
        self.t += 1
        t, c = self.t, self.t - 1
        beta1, beta2 = R.value_at(self.b1, c), R.value_at(self.b2, c)
        k, interval = R.value_at(self.k, c), int(R.value_at(self.interval, c))
        if c % interval == 0:  # a new estimate at theta_t (Eq. 9)
            z = [np.asarray(x, np.float64) for x in self.probes[self.estimates]]
            d = [zi * hz for zi, hz in zip(z, self.hvp_fn(params, z))]
            self.negative_in_blocks += sum(int(np.sum(x < 0)) for x in d if x.ndim == 4 and self.axes is not None)
            self.d = [block_average(x, self.axes) for x in d]  # Eq. 10
            self.estimates += 1
        self.m = [beta1 * m + (1 - beta1) * g for m, g in zip(self.m, grads)]
        self.v = [beta2 * v + (1 - beta2) * d**2 for v, d in zip(self.v, self.d)]  # Eq. 11, squared
        eta, lam, epsilon = R.value_at(self.lr, c), R.value_at(self.wd, c), R.value_at(self.eps, c)
        out = []
        for i, (m, v, p) in enumerate(zip(self.m, self.v, params)):
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
            step = m_hat / (np.sqrt(v_hat) ** k + epsilon)  # Eq. 12: v_t = (D_bar_t)^k
            decay = lam if self.mask is None or self.mask[i] else 0.0
            out.append(-eta * (step + decay * p))
        return out
