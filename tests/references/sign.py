"""signSGD and Signum (Bernstein et al. 2018), Lion (Chen et al. 2023, Algorithm 2) and Rprop-
(Riedmiller & Braun 1993 without backtracking, i.e. Igel & Hüsken's Rprop-)."""

import numpy as np

import references as R


class Sign(R.Ref):
    def update(self, grads, params):
        return [np.sign(g) for g in grads]


class Lion(R.Ref):
    """c = b1 m + (1 - b1) g; u = sign(c); m = b2 m + (1 - b2) g."""

    def __init__(self, b1=0.9, b2=0.99):
        self.b1, self.b2 = b1, b2

    def init(self, params):
        self.t, self.m = 0, [0 * p for p in params]

    def update(self, grads, params):
        out = []
        for i, g in enumerate(grads):
            out.append(np.sign(self.b1 * self.m[i] + (1 - self.b1) * g))
            self.m[i] = self.b2 * self.m[i] + (1 - self.b2) * g
        return out


class Rprop(R.Ref):
    """Per-coordinate step sizes without backtracking (Igel & Hüsken 2000): Rprop- steps at every
    update; iRprop- takes no step where the sign flipped and stores a zero gradient there."""

    def __init__(
        self, learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0, variant="irprop-"
    ):
        self.delta0, self.eta_minus, self.eta_plus = learning_rate, eta_minus, eta_plus
        self.lo, self.hi = min_step_size, max_step_size
        self.improved = variant == "irprop-"

    def init(self, params):
        self.delta = [np.full(p.shape, self.delta0) for p in params]
        self.prev = [0 * p for p in params]
        self.seen = set()  # which of grow / shrink / keep / clamp happened

    def update(self, grads, params):
        out = []
        for i, g in enumerate(grads):
            for j in np.ndindex(g.shape):
                product = g[j] * self.prev[i][j]
                d = self.delta[i][j]
                if product > 0:
                    new = min(d * self.eta_plus, self.hi)
                    self.seen.add("grow" if new > d else "clamp")
                elif product < 0:
                    new = max(d * self.eta_minus, self.lo)
                    self.seen.add("shrink" if new < d else "clamp")
                else:
                    new = d
                    self.seen.add("keep")
                self.delta[i][j] = new
            flipped = g * self.prev[i] < 0
            step = np.sign(g) * self.delta[i]
            if self.improved:
                step, g = np.where(flipped, 0.0, step), np.where(flipped, 0.0, g)
            out.append(step)
            self.prev[i] = g.copy()
        return out
