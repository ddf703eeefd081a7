"""Optimistic gradient descent and Optimistic Adam (Daskalakis et al. 2018; Mokhtari et al. 2020)."""

import numpy as np

import references as R


class Optimistic(R.Ref):
    """u_t = alpha g_t + beta (g_t - g_{t-1}), with g_{t-1} = g_t on the first step (no change yet)."""

    def __init__(self, alpha=1.0, beta=1.0):
        self.alpha, self.beta = alpha, beta

    def init(self, params):
        self.t, self.prev = 0, None

    def update(self, grads, params):
        a, b = R.value_at(self.alpha, self.t), R.value_at(self.beta, self.t)
        self.t += 1
        if self.prev is None:
            self.prev = [g.copy() for g in grads]
        out = [a * g + b * (g - prev) for g, prev in zip(grads, self.prev)]
        self.prev = [g.copy() for g in grads]
        return out


class OptimisticAdam(R.Ref):
    """Daskalakis et al. (2018), Algorithm 1: w_t = w_{t-1} - 2 eta d_t + eta d_{t-1} with Adam's
    d_t = m_hat / (sqrt(v_hat) + eps), generalized to eta (alpha d_t + beta (d_t - d_{t-1}));
    with ``nesterov``, NAdam's m_hat = b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t) (Dozat, 2016);
    d_0 = d_1 on the first step, so that it is not doubled."""

    def __init__(
        self,
        learning_rate=1e-3,
        alpha=1.0,
        beta=1.0,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        eps_root=0.0,
        mu_dtype=None,
        nesterov=True,
    ):
        self.lr, self.alpha, self.beta = learning_rate, alpha, beta
        self.b1, self.b2, self.eps, self.eps_root, self.nesterov = b1, b2, eps, eps_root, nesterov

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.prev = None

    def update(self, grads, params):
        lr, alpha, beta = (R.value_at(x, self.t) for x in (self.lr, self.alpha, self.beta))
        first = self.prev is None
        if first:
            self.prev = [None] * len(grads)
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g**2
            if self.nesterov:
                m_hat = b1 * self.m[i] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = self.m[i] / (1 - b1**t)
            d = m_hat / (np.sqrt(self.v[i] / (1 - b2**t) + self.eps_root) + self.eps)
            if first:
                self.prev[i] = d
            out.append(-lr * (alpha * d + beta * (d - self.prev[i])))
            self.prev[i] = d
        return out


def ref_optimistic_adam(
    learning_rate, optimism=None, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, nesterov=True
):
    """Optax's optimistic_adam: the step eta (d_t) + optimism (d_t - d_{t-1}), optimism = eta by default."""
    optimism = learning_rate if optimism is None else optimism
    return OptimisticAdam(1.0, learning_rate, optimism, b1, b2, eps, eps_root, mu_dtype, nesterov)


def ref_ogd(learning_rate=1e-3, alpha=1.0, beta=1.0):
    return R.Chain(Optimistic(alpha, beta), R.ScaleByLearningRate(learning_rate))
