"""GaLore (Zhao et al. 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
Projection", Algorithm 2): Adam (Kingma & Ba 2015) on P^T G, with P from the top-r singular
vectors of the gradient, renewed every T steps, and the result brought back as alpha * P N.

Leaves are taken as matrices by the given axes (rows, cols); the short side is projected
(``side="smaller"``, the paper's m <= n case and its transpose) or the long one (``"larger"``).
Singular vectors are signed so that their entry of largest magnitude is real and positive.
"""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


def matrix_axes(shape, dims):
    """(rows, cols) for a leaf: ``dims`` a pair of axis tuples, or None (plain Adam); ``"auto"``
    is rows by columns for 2-d leaves only."""
    if dims == "auto":
        return ((0,), (1,)) if len(shape) == 2 else None
    return dims


class GaLore(Ref):
    def __init__(self, rank, gap, alpha, dims, b1=0.9, b2=0.999, eps=1e-8, side="smaller"):
        self.rank, self.gap, self.alpha, self.dims = rank, gap, alpha, dims
        self.b1, self.b2, self.eps, self.side = b1, b2, eps, side
        self.renewals = 0  # how many times a projector was computed after the first

    def init(self, params):
        self.t = 0
        self.axes = [matrix_axes(p.shape, d) for p, d in zip(params, self.dims)]
        self.P = [None] * len(params)
        self.m = [None] * len(params)
        self.v = [None] * len(params)

    def _adam(self, i, r):
        if self.m[i] is None:
            self.m[i] = np.zeros_like(r)
            self.v[i] = np.zeros(r.shape)
        t, b1, b2 = self.t + 1, self.b1, self.b2
        self.m[i] = b1 * self.m[i] + (1 - b1) * r
        self.v[i] = b2 * self.v[i] + (1 - b2) * np.abs(r) ** 2
        m_hat, v_hat = self.m[i] / (1 - b1**t), self.v[i] / (1 - b2**t)
        return m_hat / (np.sqrt(v_hat) + self.eps)

    def update(self, grads, params):
        out = []
        for i, g in enumerate(grads):
            axes = self.axes[i]
            if axes is None:
                out.append(self._adam(i, g))
                continue
            rows, cols = axes
            order = list(rows) + list(cols)
            gt = np.transpose(g, order)
            m = int(np.prod([g.shape[a] for a in rows]))
            G = gt.reshape(m, -1)
            n = G.shape[1]
            left = m <= n if self.side == "smaller" else m >= n
            r = min(self.rank, m, n)
            if self.t % self.gap == 0:  # Algorithm 2: t mod T = 0, t from 0
                self.renewals += self.t > 0
                U, _, Vh = np.linalg.svd(G, full_matrices=False)
                P = U[:, :r] if left else Vh[:r].conj().T
                pivot = P[np.argmax(np.abs(P), axis=0), np.arange(r)]
                P = P * (np.conj(pivot) / np.abs(pivot))
                self.P[i] = P
            P = self.P[i]
            R = P.conj().T @ G if left else G @ P
            N = self._adam(i, R)
            back = self.alpha * (P @ N if left else N @ P.conj().T)
            out.append(np.transpose(back.reshape(gt.shape), np.argsort(order)))
        self.t += 1
        return out


def ref_scale_by_galore(
    rank=128, update_proj_gap=200, scale=1.0, dims=None, b1=0.9, b2=0.999, eps=1e-8, projection_side="smaller"
):
    """``dims``: a list with one entry per leaf, (rows, cols) or None; None for rows by columns
    on every 2-d leaf."""
    return _GaLoreOver(rank, update_proj_gap, scale, dims, b1, b2, eps, projection_side)


class _GaLoreOver(GaLore):
    def init(self, params):
        if self.dims is None:
            self.dims = ["auto"] * len(params)
        super().init(params)


def ref_galore(learning_rate=1e-2, weight_decay=0.0, **kwargs):
    return Chain(ref_scale_by_galore(**kwargs), AddDecayedWeights(weight_decay), ScaleByLearningRate(learning_rate))
