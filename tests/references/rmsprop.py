"""RMSProp (Tieleman & Hinton 2012), centred RMSProp (Graves 2013), AdaGrad (Duchi et al. 2011) and
AdaDelta (Zeiler 2012).

Each ``ref_*`` takes the same keyword arguments as its gradtx namesake."""

import numpy as np

import references as R
from references import Chain, Ref
from references.momentum import Trace
from references.scaling import ScaleByLearningRate


class RMS(Ref):
    """Tieleman & Hinton's RMSProp scaling; ``centered`` is Graves' variant."""

    def __init__(self, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False, centered=False):
        self.decay, self.eps, self.initial_scale = decay, eps, initial_scale
        self.eps_in_sqrt, self.bias_correction, self.centered = eps_in_sqrt, bias_correction, centered

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.full_like(p, self.initial_scale) for p in params]

    def update(self, grads, params):
        self.t += 1
        d = self.decay
        corr = (1 - d**self.t) if self.bias_correction else 1.0
        out = []
        for i, g in enumerate(grads):
            self.v[i] = d * self.v[i] + (1 - d) * g * g
            self.m[i] = d * self.m[i] + (1 - d) * g
            var = self.v[i] / corr
            if self.centered:
                var = var - (self.m[i] / corr) ** 2
            if self.eps_in_sqrt:
                out.append(g / np.sqrt(var + self.eps))
            else:
                out.append(g / (np.sqrt(var) + self.eps))
        return out


def Stddev(**kw):
    return RMS(centered=True, **kw)


class RSS(Ref):
    """Duchi et al.'s AdaGrad scaling by the root of the sum of squares."""

    def __init__(self, initial_accumulator_value=0.1, eps=1e-7):
        self.init_value, self.eps = initial_accumulator_value, eps

    def init(self, params):
        self.t = 0
        self.s = [np.full_like(p, self.init_value) for p in params]

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            self.s[i] = self.s[i] + g * g
            with np.errstate(divide="ignore", invalid="ignore"):
                u = g / np.sqrt(self.s[i] + self.eps)
            out.append(np.where(self.s[i] > 0, u, 0.0))
        return out


def ref_rmsprop(
    learning_rate=1e-2,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=None,
    nesterov=False,
    bias_correction=False,
):
    return Chain(
        RMS(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered),
        ScaleByLearningRate(learning_rate),
        Trace(momentum, nesterov) if momentum is not None else None,
    )


def ref_adagrad(learning_rate=1e-2, initial_accumulator_value=0.1, eps=1e-7):
    return Chain(RSS(initial_accumulator_value, eps), ScaleByLearningRate(learning_rate))


class AdaDelta(R.Ref):
    """Zeiler 2012, Algorithm 1 (the update returned without its minus sign)."""

    def __init__(self, rho=0.9, eps=1e-6):
        self.rho, self.eps = rho, eps

    def init(self, params):
        self.t, self.eg, self.ex = 0, [0 * p for p in params], [0 * p for p in params]

    def update(self, grads, params):
        self.t += 1
        rho, eps = self.rho, self.eps
        out = []
        for i, g in enumerate(grads):
            self.eg[i] = rho * self.eg[i] + (1 - rho) * g * g
            dx = np.sqrt(self.ex[i] + eps) / np.sqrt(self.eg[i] + eps) * g
            self.ex[i] = rho * self.ex[i] + (1 - rho) * dx * dx
            out.append(dx)
        return out
