"""Shampoo (Gupta, Koren & Singer 2018) in the blocked, grafted form of Anil et al. 2020
("Scalable Second Order Optimization for Deep Learning", Algorithm 1 and Sections 3-5), float64
NumPy, with the options of the authors' reference implementation (distributed_shampoo).

At update t = 0, 1, ... each leaf is (optionally) reshaped with its small axes merged, cut into
blocks of at most ``block_size`` along every axis, and for every block and axis i the statistic
L_i <- beta2 L_i + w G_(i) G_(i)^T (w = 1 - beta2, or 1 when beta2 = 1) is updated when
t % statistics_compute_steps == 0; when t % preconditioning_compute_steps == 0 every root
P_i = (L_i + eps lambda_max I)^(-1/p), p = 2 rank (or exponent_override), is recomputed, here by
numpy's eigh whatever method the library uses; steps in between reuse P_i. The block's direction
is the mode-i product of G with every P_i; the leaf's direction is rescaled to the norm of the
grafted direction D (SGD, sign, AdaGrad, RMSProp, their normalised forms). Two momenta, of D and of
the Shampoo direction, are kept; the output is the grafted one before start_preconditioning_step.
"""

import itertools

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


def merged(shape, limit):
    """Neighbouring axes multiplied together while the product stays <= limit; 1s dropped."""
    if len(shape) and all(d == 1 for d in shape):
        return (1,)
    out, current = [], 1
    for d in shape:
        if current * d > limit:
            if current > 1:
                out.append(current)
            current = d
        else:
            current *= d
    return tuple(out + ([current] if current > 1 else []))


def block_slices(shape, block_size):
    """Every block as a tuple of slices, the first axis outermost."""
    per_axis = [[slice(s, min(s + block_size, d)) for s in range(0, d, block_size)] for d in shape]
    return list(itertools.product(*per_axis))


def mode_product(x, p, axis):
    """x times the symmetric matrix p along ``axis``."""
    return np.moveaxis(np.tensordot(p, x, axes=([1], [axis])), 0, axis)


def inverse_root(a, p, eps):
    w, v = np.linalg.eigh(a)
    top = w.max()
    ridge = eps * (top if top > 0 else 1.0)
    return (v * np.maximum(w + ridge, ridge) ** (-1.0 / p)) @ v.T


class Shampoo(Ref):
    def __init__(
        self,
        block_size=128,
        beta1=0.9,
        beta2=0.999,
        diagonal_epsilon=1e-10,
        matrix_epsilon=1e-6,
        start_preconditioning_step=5,
        preconditioning_compute_steps=1,
        statistics_compute_steps=1,
        best_effort_shape_interpretation=True,
        graft_type="sgd",
        nesterov=True,
        exponent_override=0,
        inverse_failure_threshold=0.1,
        moving_average_for_momentum=False,
        skip_preconditioning_dim_size_gt=4096,
        skip_preconditioning_rank_lt=1,
        merge_small_dims_block_size=4096,
        inverse_root_method="newton",
    ):
        self.block_size, self.b1, self.b2 = block_size, beta1, beta2
        self.eps_d, self.eps_m = diagonal_epsilon, matrix_epsilon
        self.start, self.every_p, self.every_s = (
            start_preconditioning_step,
            preconditioning_compute_steps,
            statistics_compute_steps,
        )
        self.merge, self.graft, self.nesterov, self.p_override = (
            best_effort_shape_interpretation,
            graft_type,
            nesterov,
            exponent_override,
        )
        self.moving_average = moving_average_for_momentum
        self.skip_gt, self.skip_rank = skip_preconditioning_dim_size_gt, skip_preconditioning_rank_lt
        self.merge_limit = merge_small_dims_block_size

    def init(self, params):
        self.t = 0
        self.shapes = [merged(p.shape, self.merge_limit) if self.merge else p.shape for p in params]
        self.skipped = [
            p.ndim < self.skip_rank or any(d > self.skip_gt for d in p.shape) or len(s) == 0 or p.size == 0
            for p, s in zip(params, self.shapes)
        ]
        self.L, self.P = [], []
        for shape, skip in zip(self.shapes, self.skipped):
            sides = [] if skip else [sl.stop - sl.start for b in block_slices(shape, self.block_size) for sl in b]
            self.L.append([self.eps_m * np.eye(d) for d in sides])
            self.P.append([np.eye(d) for d in sides])
        self.v = [np.zeros_like(p) for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.m_graft = [np.zeros_like(p) for p in params]
        self.refreshes = self.reuses = self.grafted_steps = 0
        self.blocked_leaves = sum(
            len(block_slices(s, self.block_size)) > 1 for s, k in zip(self.shapes, self.skipped) if not k
        )

    def grafted(self, i, g):
        b2 = self.b2
        if self.graft == "sgd":
            return g
        if self.graft == "sqrt_n":
            return np.sign(g)
        x = g / (np.linalg.norm(g) + 1e-16) if self.graft.endswith("_normalized") else g
        if self.graft.startswith("adagrad"):
            self.v[i] = self.v[i] + x**2
        else:
            self.v[i] = b2 * self.v[i] + (1.0 if b2 == 1 else 1 - b2) * x**2
        return x / (np.sqrt(self.v[i]) + self.eps_d)

    def update(self, grads, params):
        t, b1, b2 = self.t, self.b1, self.b2
        w = 1.0 if b2 == 1 else 1 - b2
        refresh = t % self.every_p == 0
        self.refreshes += refresh
        self.reuses += not refresh
        self.grafted_steps += t < self.start
        out = []
        for i, g in enumerate(grads):
            shape = self.shapes[i]
            blocks = block_slices(shape, self.block_size)
            x = g.reshape(shape)
            k = len(shape)
            if not self.skipped[i]:
                if t % self.every_s == 0:  # the statistics of every block and axis
                    for n, sl in enumerate(blocks):
                        for a in range(k):
                            unfolded = np.moveaxis(x[sl], a, 0).reshape(x[sl].shape[a], -1)
                            self.L[i][n * k + a] = b2 * self.L[i][n * k + a] + w * unfolded @ unfolded.T
                if refresh:
                    p = self.p_override or 2 * k
                    self.P[i] = [inverse_root(s, p, self.eps_m) for s in self.L[i]]
            d = self.grafted(i, g)
            if self.skipped[i]:
                s = d
            else:
                s = np.zeros_like(x)
                for n, sl in enumerate(blocks):
                    y = x[sl]
                    for a in range(k):
                        y = mode_product(y, self.P[i][n * k + a], a)
                    s[sl] = y
                s = s.reshape(g.shape)
            s = s * np.linalg.norm(d) / (np.linalg.norm(s) + 1e-16)
            c = 1 - b1 if self.moving_average else 1.0
            self.m[i] = b1 * self.m[i] + c * s
            self.m_graft[i] = b1 * self.m_graft[i] + c * d
            momentum, now = (self.m[i], s) if t >= self.start else (self.m_graft[i], d)
            out.append(b1 * momentum + c * now if self.nesterov else momentum.copy())
        self.t += 1
        return out


def ref_shampoo(learning_rate, weight_decay=0.0, **kwargs):
    return Chain(Shampoo(**kwargs), AddDecayedWeights(weight_decay), ScaleByLearningRate(learning_rate))


# ------------------------------------------------------------------ the test tree

SHAPES = {"w": (5, 3), "b": (4,), "s": (), "t": (2, 3, 2)}
GRAD_SCALES = {"w": 1.0, "b": 0.1, "s": 3.0, "t": 10.0}


def shampoo_params(dtype, seed=0):
    """A blocked matrix (with block_size 3), a vector, a 0-d leaf and a rank-3 leaf."""
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.standard_normal(s) + 0.5, dtype) for k, s in SHAPES.items()}


def shampoo_grads(dtype, steps, seed=1, zero_until=0):
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        tree = {}
        for k, s in SHAPES.items():
            g = GRAD_SCALES[k] * np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(s)
            g = np.array(g, np.float64).reshape(-1)
            if step < zero_until:
                g[0] = 0.0
            tree[k] = np.asarray(g.reshape(s), dtype)
        out.append(tree)
    return out
