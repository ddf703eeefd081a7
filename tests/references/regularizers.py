"""Decoupled weight decay (Loshchilov & Hutter 2019), gradient centralization (Yong et al. 2020),
annealed gradient noise (Neelakantan et al. 2015) and non-negative parameters.

The noise reference draws its noise with ``jax.random`` from the same key, in the documented
order; everything else is NumPy."""

import jax
import numpy as np

import references as R
from references import Ref, value_at


class AddDecayedWeights(Ref):
    """u + wd * p on the leaves where ``mask`` is True.

    ``mask`` is a tree of bools shaped like the params, or a function of the
    params; the reference calls that function on its flat list of leaves, so
    it must be structure-agnostic (like :func:`mask_matrices`). A schedule
    ``weight_decay`` is evaluated at t - 1, like every other schedule.
    """

    def __init__(self, weight_decay=0.0, mask=None):
        self.weight_decay, self.mask = weight_decay, mask

    def init(self, params):
        self.t = 0
        if self.mask is None:
            self.mask_leaves = [True] * len(params)
        else:
            tree = self.mask(params) if callable(self.mask) else self.mask
            self.mask_leaves = [bool(m) for m in jax.tree.leaves(tree)]
        assert len(self.mask_leaves) == len(params)

    def update(self, grads, params):
        self.t += 1
        wd = value_at(self.weight_decay, self.t - 1)
        return [g + wd * p if m else g for g, p, m in zip(grads, params, self.mask_leaves)]


class Centralize(R.Ref):
    """Subtract from every >= 2-d leaf its mean over every axis but the last (each output's fan-in)."""

    def update(self, grads, params):
        return [g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True) if g.ndim > 1 else g for g in grads]


class AddNoise(R.Ref):
    """g + N(0, eta / (1 + t)^gamma), t = 0, 1, ...; the noise drawn as documented: split the key
    into (next key, noise key), split the noise key into one key per leaf, draw a standard
    normal per leaf in the leaf's dtype."""

    def __init__(self, eta, gamma, key, dtype):
        self.eta, self.gamma, self.key, self.dtype = eta, gamma, key, dtype

    def update(self, grads, params):
        eta, gamma = R.value_at(self.eta, self.t), R.value_at(self.gamma, self.t)
        std = np.sqrt(eta / (1.0 + self.t) ** gamma)
        self.t += 1
        self.key, noise_key = jax.random.split(self.key)
        keys = jax.random.split(noise_key, max(len(grads), 1))
        return [
            g + std * np.asarray(jax.random.normal(k, g.shape, self.dtype), np.float64) for k, g in zip(keys, grads)
        ]


class KeepNonnegative(R.Ref):
    def update(self, grads, params):
        return [np.where(p + u < 0, -p, u) for u, p in zip(grads, params)]
