"""AdaBelief (Zhuang et al. 2020), Yogi (Zaheer et al. 2018), RAdam (Liu et al. 2020) and Adan (Xie et
al. 2022), each from its paper; ``lr_ref``, the learning-rate step their tests (and NovoGrad's and
AdaDelta's, whose references are in layerwise.py and rmsprop.py) chain after them."""

import numpy as np

import references as R


class Belief(R.Ref):
    """Zhuang et al. 2020, Algorithm 2 (AdaBelief)."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False):
        self.b1, self.b2, self.eps, self.eps_root, self.nesterov = b1, b2, eps, eps_root, nesterov

    def init(self, params):
        self.t, self.m, self.s = 0, [0 * p for p in params], [0 * p for p in params]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.s[i] = b2 * self.s[i] + (1 - b2) * (g - self.m[i]) ** 2 + self.eps_root
            if self.nesterov:
                m_hat = b1 * self.m[i] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = self.m[i] / (1 - b1**t)
            out.append(m_hat / (np.sqrt(self.s[i] / (1 - b2**t)) + self.eps))
        return out


class Yogi(R.Ref):
    """Zaheer et al. 2018, Algorithm 2, with Adam's bias correction (as gradtx documents)."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial_accumulator_value=1e-6):
        self.b1, self.b2, self.eps, self.eps_root, self.v0 = b1, b2, eps, eps_root, initial_accumulator_value

    def init(self, params):
        self.t, self.m, self.v = 0, [0 * p for p in params], [0 * p + self.v0 for p in params]
        self.v_went_down = False  # the additive rule must have decreased v somewhere

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v_went_down |= bool(np.any(self.v[i] > g * g))
            self.v[i] = self.v[i] - (1 - b2) * np.sign(self.v[i] - g * g) * g * g
            v_hat = self.v[i] / (1 - b2**t)
            out.append(self.m[i] / (1 - b1**t) / (np.sqrt(v_hat + self.eps_root) + self.eps))
        return out


class RAdam(R.Ref):
    """Liu et al. 2020, Algorithm 2, rectifying when rho_t > threshold."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, nesterov=False):
        self.adam = R.Adam(b1, b2, eps, eps_root, nesterov)
        self.b1, self.b2, self.eps, self.eps_root, self.threshold, self.nesterov = (
            b1,
            b2,
            eps,
            eps_root,
            threshold,
            nesterov,
        )

    def init(self, params):
        self.adam.init(params)
        self.t, self.branches = 0, set()

    def update(self, grads, params):
        adam_steps = self.adam.update(grads, params)  # advances m, v
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        out = []
        for i, g in enumerate(grads):
            m = self.adam.m[i]
            if self.nesterov:
                m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = m / (1 - b1**t)
            if rho > self.threshold:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                out.append(r * adam_steps[i])
            else:
                out.append(m_hat)
        self.branches.add(rho > self.threshold)
        return out


class Adan(R.Ref):
    """Xie et al. 2022, Algorithm 1 with b_i = 1 - (paper's beta_i), bias-corrected, Delta_1 = 0."""

    def __init__(self, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.b3, self.eps, self.eps_root = b1, b2, b3, eps, eps_root

    def init(self, params):
        self.t = 0
        self.m, self.v, self.n = ([0 * p for p in params] for _ in range(3))
        self.prev = None

    def update(self, grads, params):
        self.t += 1
        t, b1, b2, b3 = self.t, self.b1, self.b2, self.b3
        out = []
        for i, g in enumerate(grads):
            delta = 0 * g if self.prev is None else g - self.prev[i]
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * delta
            self.n[i] = b3 * self.n[i] + (1 - b3) * (g + b2 * delta) ** 2
            num = self.m[i] / (1 - b1**t) + b2 * self.v[i] / (1 - b2**t)
            out.append(num / (np.sqrt(self.n[i] / (1 - b3**t) + self.eps_root) + self.eps))
        self.prev = [g.copy() for g in grads]
        return out


def lr_ref(learning_rate):
    return R.ScaleByLearningRate(learning_rate)
