"""Heavy-ball and Nesterov momentum (``trace``) and the exponential moving average (``ema``)."""

import numpy as np

from references import Ref


class Trace(Ref):
    """Heavy-ball momentum b = g + decay b; Nesterov returns g + decay b_new."""

    def __init__(self, decay, nesterov=False):
        self.decay, self.nesterov = decay, nesterov

    def init(self, params):
        self.t = 0
        self.b = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            self.b[i] = g + self.decay * self.b[i]
            out.append(g + self.decay * self.b[i] if self.nesterov else self.b[i].copy())
        return out


class EMA(Ref):
    def __init__(self, decay, debias=True):
        self.decay, self.debias = decay, debias

    def init(self, params):
        self.t = 0
        self.e = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            self.e[i] = self.decay * self.e[i] + (1 - self.decay) * g
            out.append(self.e[i] / (1 - self.decay**self.t) if self.debias else self.e[i].copy())
        return out
