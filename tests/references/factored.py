"""Adafactor's factored second moment (Shazeer & Stern 2018, Algorithms 4-5) and SM3 (Anil et al.
2019, SM3-II)."""

import numpy as np

import references as R


def factored_axes(shape, min_dim):
    """(columns, rows): the largest axis and the second largest, ties going to the later axis."""
    if len(shape) < 2:
        return None
    by_size = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    cols, rows = by_size[-1], by_size[-2]
    return (cols, rows) if shape[rows] >= min_dim else None


class FactoredRMS(R.Ref):
    """Algorithms 4 and 5 with row/column *sums* as the paper writes them:
    V = R C / (1^T R), each matrix of the leaf (other axes are batch axes) on its own."""

    def __init__(self, factored=True, decay_rate=0.8, step_offset=0, min_dim_size_to_factor=128, epsilon=1e-30):
        self.factored, self.decay_rate, self.offset = factored, decay_rate, step_offset
        self.min_dim, self.eps = min_dim_size_to_factor, epsilon

    def init(self, params):
        self.t, self.stats = 0, [None] * len(params)
        self.axes = [factored_axes(p.shape, self.min_dim) if self.factored else None for p in params]
        self.factored_leaves = sum(a is not None for a in self.axes)

    def update(self, grads, params):
        self.t += 1
        beta = 1 - (max(self.t - 1 - self.offset, 0) + 1) ** (-self.decay_rate)
        out = []
        for i, g in enumerate(grads):
            sq = g * g + self.eps
            if self.axes[i] is None:
                v = sq if self.stats[i] is None else beta * self.stats[i] + (1 - beta) * sq
                self.stats[i] = v
                out.append(g / np.sqrt(v))
                continue
            cols, rows = self.axes[i]
            mat = np.moveaxis(sq, (rows, cols), (-2, -1))  # (..., n, m)
            row_sums, col_sums = mat.sum(-1), mat.sum(-2)
            if self.stats[i] is not None:
                row_sums = beta * self.stats[i][0] + (1 - beta) * row_sums
                col_sums = beta * self.stats[i][1] + (1 - beta) * col_sums
            self.stats[i] = (row_sums, col_sums)
            v = row_sums[..., :, None] * col_sums[..., None, :] / row_sums.sum(-1)[..., None, None]
            out.append(g / np.sqrt(np.moveaxis(v, (-2, -1), (rows, cols))))
        return out


class ClipByUpdateRMS(R.Ref):
    def __init__(self, d):
        self.d, self.clipped = d, False

    def update(self, grads, params):
        out = []
        for u in grads:
            rms = np.sqrt(np.mean(u * u))
            self.clipped |= bool(rms > self.d)
            out.append(u / max(1.0, rms / self.d))
        return out


class ParameterScale(R.Ref):
    def update(self, grads, params):
        return [u * max(1e-3, np.sqrt(np.mean(p * p))) for u, p in zip(grads, params)]


def adafactor_ref(
    learning_rate=None,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    momentum=None,
    weight_decay_rate=None,
    eps=1e-30,
    factored=True,
    weight_decay_mask=None,
):
    relative_step = lambda count: min(1e-2, 1 / np.sqrt(count + 1))  # noqa: E731
    return R.Chain(
        FactoredRMS(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
        ClipByUpdateRMS(clipping_threshold) if clipping_threshold is not None else None,
        R.ScaleBySchedule(relative_step if learning_rate is None else learning_rate),
        ParameterScale() if multiply_by_parameter_scale else None,
        R.EMA(momentum, debias=False) if momentum is not None else None,
        R.AddDecayedWeights(weight_decay_rate, weight_decay_mask) if weight_decay_rate is not None else None,
        R.Scale(-1.0),
    )


class SM3(R.Ref):
    """SM3-II, one coordinate at a time: nu(j) = min over the slices r containing j of
    mu(r), plus g(j)^2; then mu(r) = max over r of nu. Slices are along each axis."""

    def __init__(self, b1=0.9, b2=1.0, eps=1e-8):
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, params):
        self.t = 0
        self.mu = [[np.zeros(n) for n in p.shape] if p.ndim else [np.zeros(1)] for p in params]
        self.m = [0 * p for p in params]

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            nu = np.zeros_like(g)
            for j in np.ndindex(g.shape):
                bound = min(self.mu[i][d][j[d]] for d in range(g.ndim)) if g.ndim else self.mu[i][0][0]
                nu[j] = bound + g[j] ** 2 if self.b2 == 1 else self.b2 * bound + (1 - self.b2) * g[j] ** 2
            if g.ndim:
                new_mu = [np.zeros(n) for n in g.shape]
                for j in np.ndindex(g.shape):
                    for d in range(g.ndim):
                        new_mu[d][j[d]] = max(new_mu[d][j[d]], nu[j])
                self.mu[i] = new_mu
            else:
                self.mu[i] = [np.reshape(nu, 1)]
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g / np.sqrt(nu + self.eps)
            out.append(self.m[i].copy())
        return out
