"""Averaged SGD, as torch.optim.ASGD documents it."""

import numpy as np


class TorchASGD:
    """torch.optim.ASGD's documented algorithm on flat float64 leaves (torch is not a dependency).

    State: step t, eta (starts at lr), mu (starts at 1), ax. Each step: g += wd * p;
    p *= 1 - lambd * eta; p -= eta * g; ax = p if mu == 1 else ax + mu * (p - ax);
    then eta = lr / (1 + lambd * lr * t)^alpha and mu = 1 / max(1, t - t0).
    """

    def __init__(self, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0):
        self.lr, self.lambd, self.alpha, self.t0, self.wd = lr, lambd, alpha, t0, weight_decay

    def init(self, params):
        self.t, self.eta, self.mu = 0, self.lr, 1.0
        self.params = [p.copy() for p in params]
        self.ax = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        for i, g in enumerate(grads):
            p = self.params[i]
            g = g + self.wd * p
            p = p * (1 - self.lambd * self.eta)
            p = p - self.eta * g
            self.ax[i] = p.copy() if self.mu == 1 else self.ax[i] + (p - self.ax[i]) * self.mu
            self.params[i] = p
        self.eta = self.lr / (1 + self.lambd * self.lr * self.t) ** self.alpha
        self.mu = 1 / max(1, self.t - self.t0)
