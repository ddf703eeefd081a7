"""Mechanic (Cutkosky, Defazio & Mehta 2023, Algorithm 1), in float64 NumPy, around any reference
base optimizer.

The base optimizer's updates u_t add up to Delta_{t+1} = Delta_t + u_t; Mechanic plays the
iterate x_{t+1} = x_ref + (sum_i s_{t+1,i}) Delta_{t+1}, tuning n scales s_i, one per beta_i =
1 - 10^-i, by coin betting on h_t = <Delta_t, g_t + lambda (sum_i s_{t,i}) |g_t| x_t / |x_t|>.
The base reference is given the actual iterate x_t as its parameters, which the update returned
reaches when it is applied.
"""

import numpy as np

import references as R


def _dot(a, b):
    return sum(float(np.sum(x * y)) for x, y in zip(a, b))


class Mechanic(R.Ref):
    """m_t = max(beta m_{t-1}, |h_t|), v_t = beta^2 v_{t-1} + h_t^2,
    r_t = max(0, beta r_{t-1} - s_t h_t), W_t = s_init m_t / n + r_t, s_{t+1} = W_t / (sqrt(v_t) + eps),
    all elementwise over the n betas; s_1 = 0."""

    def __init__(self, base, weight_decay=0.01, eps=1e-8, s_init=1e-6, num_betas=6):
        self.base, self.wd, self.eps, self.s_init, self.n = base, weight_decay, eps, s_init, num_betas
        self.beta = 1.0 - 10.0 ** -np.arange(1, num_betas + 1)

    def init(self, params):
        self.t = 0
        self.base.init(params)
        self.x_ref = [p.copy() for p in params]
        self.delta = [np.zeros_like(p) for p in params]
        self.s, self.m, self.v, self.r = (np.zeros(self.n) for _ in range(4))
        self.scales = []

    def update(self, grads, params):
        u = self.base.update(grads, params)
        total = float(np.sum(self.s))
        played = [total * dl for dl in self.delta]  # x_t - x_ref
        h = _dot(self.delta, grads)
        x_norm = np.sqrt(_dot(params, params))
        if x_norm > 0:
            h += self.wd * total * np.sqrt(_dot(grads, grads)) / x_norm * _dot(self.delta, params)
        beta = self.beta
        self.m = np.maximum(beta * self.m, abs(h))
        self.v = beta**2 * self.v + h**2
        self.r = np.maximum(0.0, beta * self.r - self.s * h)
        wealth = self.s_init * self.m / self.n + self.r
        self.s = wealth / (np.sqrt(self.v) + self.eps)
        self.delta = [dl + du for dl, du in zip(self.delta, u)]
        self.scales.append(float(np.sum(self.s)))
        self.t += 1
        # x_{t+1} - x_t = (x_ref + S_{t+1} Delta_{t+1}) - (x_ref + S_t Delta_t), without the
        # cancellation of subtracting x_t (~1) from x_{t+1} when the step is ~1e-9
        return [self.scales[-1] * dl - p for dl, p in zip(self.delta, played)]
