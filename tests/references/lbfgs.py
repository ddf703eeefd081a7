"""L-BFGS's two-loop recursion (Nocedal & Wright, Algorithm 7.4)."""

import numpy as np


class TwoLoop:
    """Nocedal & Wright's Algorithm 7.4 on flat float64 vectors, with the documented rules of
    gradtx.scale_by_lbfgs: pairs with s^T y <= 0 are skipped (and still take a slot of the ring),
    H0 = (s^T y / y^T y) I from the newest usable pair, or I / ||g|| before there is one."""

    def __init__(self, memory_size=10, scale_init_precond=True):
        self.m, self.scale = memory_size, scale_init_precond
        self.slots = [None] * memory_size  # (s, y, rho) or None
        self.k = 0
        self.prev = None

    def update(self, g, x):
        if self.k > 0:
            s, y = x - self.prev[0], g - self.prev[1]
            sy = s @ y
            self.slots[(self.k - 1) % self.m] = (s, y, 1 / sy) if sy > 0 else None
        newest = (self.k - 1) % self.m
        order = [(newest - j) % self.m for j in range(self.m)]  # newest first
        pairs = [self.slots[i] for i in order if self.slots[i] is not None]
        q, alphas = g.copy(), []
        for s, y, rho in pairs:
            alphas.append(rho * (s @ q))
            q = q - alphas[-1] * y
        if not self.scale:
            gamma = 1.0
        elif pairs:
            s, y, _ = pairs[0]
            gamma = (s @ y) / (y @ y)
        else:
            gamma = 1 / np.linalg.norm(g) if np.linalg.norm(g) > 0 else 1.0
        r = gamma * q
        for (s, y, rho), alpha in reversed(list(zip(pairs, alphas))):
            r = r + (alpha - rho * (y @ r)) * s
        if np.linalg.norm(g) > 0 and not r @ g > 0:
            r = g / np.linalg.norm(g)
        self.k += 1
        self.prev = (x.copy(), g.copy())
        return r
