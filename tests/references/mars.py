"""MARS (Yuan et al. 2024, arXiv 2411.10438), float64 NumPy, from the paper's Algorithm 1 (the
framework), Algorithm 2 (MARS-AdamW) and the MARS-Lion instantiation, with the conventions of the
authors' code where the paper leaves a choice:

- the correction c_t = g_t + gamma * b1 / (1 - b1) * (g_t - g_{t-1}); approximate form: g_{t-1} is
  the previous step's gradient, 0 before the first step; exact form: the gradient at the previous
  parameters on the current batch, given to ``update`` as ``previous_grads``;
- Clip(c, 1) = c / ||c|| when ||c|| > 1, with the 2-norm of each leaf on its own;
- m_t = b1 m + (1 - b1) c~; mars-adamw: v_t = b2 v + (1 - b2) c~^2 (the clipped c), u = m_hat /
  (sqrt(v_hat) + eps) with Adam's bias corrections; mars-lion: u = sign(m_t);
- with ``optimize_1d`` False, the leaves that are not 2-D take AdamW of the raw gradient with
  ``betas_1d`` (and the same eps), their own learning rate and weight decay;
- decoupled weight decay: theta -= lr * (u + wd * theta).

``clipped`` and ``kept`` count the MARS leaf-steps whose c_t the clip did and did not rescale.
"""

import numpy as np

from references import Ref, value_at


class MARS(Ref):
    """The direction u_t of every leaf (scale_by_mars)."""

    def __init__(
        self,
        b1=0.95,
        b2=0.99,
        eps=1e-8,
        gamma=0.025,
        mars_type="mars-adamw",
        optimize_1d=False,
        betas_1d=(0.9, 0.95),
        is_approx=True,
    ):
        self.b1, self.b2, self.eps, self.gamma, self.mars_type = b1, b2, eps, gamma, mars_type
        self.optimize_1d, self.betas_1d, self.is_approx = optimize_1d, betas_1d, is_approx

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.last = [np.zeros_like(p) for p in params]
        self.is_mars = [self.optimize_1d or np.ndim(p) == 2 for p in params]
        self.clipped = self.kept = 0

    def update(self, grads, params, previous_grads=None):
        self.t += 1
        t = self.t
        out = []
        for i, g in enumerate(grads):
            if not self.is_mars[i]:  # AdamW's direction of the raw gradient
                b1, b2 = self.betas_1d
                self.m[i] = b1 * self.m[i] + (1 - b1) * g
                self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
                out.append((self.m[i] / (1 - b1**t)) / (np.sqrt(self.v[i] / (1 - b2**t)) + self.eps))
                continue
            b1, b2 = self.b1, self.b2
            g_prev = self.last[i] if self.is_approx else previous_grads[i]
            c = g + self.gamma * (b1 / (1 - b1)) * (g - g_prev)
            norm = np.sqrt(np.sum(c * c))
            if norm > 1:
                c = c / norm
                self.clipped += 1
            else:
                self.kept += 1
            self.m[i] = b1 * self.m[i] + (1 - b1) * c
            if self.mars_type == "mars-lion":
                out.append(np.sign(self.m[i]))
            else:
                self.v[i] = b2 * self.v[i] + (1 - b2) * c * c
                out.append((self.m[i] / (1 - b1**t)) / (np.sqrt(self.v[i] / (1 - b2**t)) + self.eps))
        if self.is_approx:
            self.last = [np.array(g) for g in grads]
        return out


class MARSWithStep(Ref):
    """mars: theta -= lr (u + wd theta) on the MARS leaves, lr_1d (u + wd_1d theta) on the others;
    schedules are evaluated at t - 1."""

    def __init__(self, direction, learning_rate, weight_decay, lr_1d, weight_decay_1d):
        self.direction = direction
        self.lr, self.wd, self.lr_1d, self.wd_1d = learning_rate, weight_decay, lr_1d, weight_decay_1d

    def init(self, params):
        self.t = 0
        self.direction.init(params)

    def update(self, grads, params, previous_grads=None):
        self.t += 1
        us = self.direction.update(grads, params, previous_grads)
        out = []
        for u, p, is_mars in zip(us, params, self.direction.is_mars):
            lr, wd = (self.lr, self.wd) if is_mars else (self.lr_1d, self.wd_1d)
            out.append(-value_at(lr, self.t - 1) * (u + value_at(wd, self.t - 1) * p))
        return out


def ref_scale_by_mars(
    b1=0.95,
    b2=0.99,
    eps=1e-8,
    gamma=0.025,
    mars_type="mars-adamw",
    mu_dtype=None,
    optimize_1d=False,
    betas_1d=(0.9, 0.95),
    is_approx=True,
):
    return MARS(b1, b2, eps, gamma, mars_type, optimize_1d, betas_1d, is_approx)


def ref_mars(
    learning_rate=3e-3,
    b1=0.95,
    b2=0.99,
    eps=1e-8,
    weight_decay=0.0,
    gamma=0.025,
    mars_type="mars-adamw",
    mu_dtype=None,
    optimize_1d=False,
    lr_1d=3e-3,
    betas_1d=(0.9, 0.95),
    weight_decay_1d=0.1,
    is_approx=True,
):
    direction = MARS(b1, b2, eps, gamma, mars_type, optimize_1d, betas_1d, is_approx)
    return MARSWithStep(direction, learning_rate, weight_decay, lr_1d, weight_decay_1d)
