"""SOAP (Vyas et al. 2024, arXiv 2409.11321), float64 NumPy, from the paper's algorithm box (Adam in
the eigenbasis of Shampoo's preconditioner, one factor per axis) with the special cases of the
authors' reference implementation:

- the first gradient only updates the statistics L_k (moving averages of G_(k) G_(k)^T, with
  beta_s = shampoo_beta, or b2 when negative) and takes the bases Q_k = eigenvectors of L_k by
  decreasing eigenvalue (numpy.linalg.eigh, columns reversed); nothing moves;
- every later step t = 1, 2, ... runs Adam with m in the original space (rotated when used) and
  v in the rotated space, the update Q (Q^T m / (sqrt(v) + eps)) times sqrt(1 - b2^t) / (1 - b1^t),
  then updates the statistics with this step's gradient; when t is a multiple of the frequency it
  then refreshes each Q_k: sort its columns by decreasing diag(Q_k^T L_k Q_k), reorder v along
  axis k the same way, and take Q_k = QR(L_k Q_k) (numpy.linalg.qr);
- axes longer than max_precond_dim are not rotated; 1-D leaves only with precondition_1d;
  merge_dims first multiplies adjacent axes together while the product stays <= max_precond_dim.

Where a statistic is rank deficient (the first one of any non-square kernel), the basis eigh or QR
returns inside its null space is set by rounding; gradtx fixes it, and so does this reference, in
its own way: the columns of eigenvalue (eigh) or |R_ii| (QR) at most n * eps * the largest are
replaced by N V, with N any orthonormal basis of the complement of the other columns (from an SVD)
and V the eigenvectors of N^T diag(1, ..., n) N by increasing eigenvalue. The columns eigh gives
and these are signed to make each one's entry of largest magnitude positive (the updates do not
depend on it). The authors' code keeps eigh's and QR's columns as they come.

Weight decay is AdamW's (lr * wd * p_{t-1}), skipped with everything else on the first step; the
authors' code multiplies the already-updated parameters by (1 - lr * wd) instead.
"""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate


def merged(shape, limit):
    """Adjacent sizes multiplied together while the product stays <= limit."""
    groups, current = [], 1
    for size in shape:
        if current * size > limit:
            if current > 1:
                groups.append(current)
                current = size
            else:
                groups.append(size)
                current = 1
        else:
            current = current * size
    if current > 1 or not groups:
        groups.append(current)
    return tuple(groups)


def mode_product(x, q, k):
    """x with axis k multiplied by the matrix q: (x x_k q)[..., i, ...] = sum_j q[i, j] x[..., j, ...]."""
    return np.moveaxis(np.tensordot(q, np.moveaxis(x, k, 0), axes=1), 0, k)


def negligible(x):
    """Entries at most n * eps(float64) * the largest: the rounding level of a rank-deficient statistic."""
    return x <= len(x) * np.finfo(np.float64).eps * max(float(np.max(x)), 0.0)


def canonical(q, null):
    """q with its columns where null replaced by the canonical basis of the complement of the others."""
    if not null.any():
        return q
    n, k = q.shape[0], int(null.sum())
    kept = q[:, ~null]
    u = np.linalg.svd(np.eye(n) - kept @ kept.T)[0][:, :k]  # singular values 1 (the complement), then 0
    basis = u @ np.linalg.eigh(u.T @ np.diag(np.arange(1.0, n + 1)) @ u)[1]
    q = q.copy()
    q[:, null] = signed(basis)
    return q


def signed(q):
    """Each column times the sign of its entry of largest magnitude."""
    return q * np.sign(q[np.argmax(np.abs(q), axis=0), np.arange(q.shape[1])])


def eigenbasis(L):
    w, q = np.linalg.eigh(L)
    return canonical(signed(q[:, ::-1]), negligible(w[::-1]))


def qr_basis(a):
    q, r = np.linalg.qr(a)
    return canonical(q, negligible(np.abs(np.diag(r))))


class SOAP(Ref):
    def __init__(
        self,
        b1=0.95,
        b2=0.95,
        shampoo_beta=-1.0,
        eps=1e-8,
        precondition_frequency=10,
        max_precond_dim=10000,
        merge_dims=False,
        precondition_1d=False,
        normalize_grads=False,
        correct_bias=True,
    ):
        self.b1, self.b2, self.shampoo_beta, self.eps = b1, b2, shampoo_beta, eps
        self.frequency, self.limit = precondition_frequency, max_precond_dim
        self.merge, self.one_d = merge_dims, precondition_1d
        self.normalize, self.correct_bias = normalize_grads, correct_bias

    def _shape(self, shape):
        """The shape the statistics see and which axes have a statistic."""
        if len(shape) == 0 or int(np.prod(shape)) == 0:
            return tuple(shape), [False] * len(shape)
        if len(shape) == 1:
            return tuple(shape), [self.one_d and shape[0] <= self.limit]
        dims = merged(shape, self.limit) if self.merge else tuple(shape)
        return dims, [d <= self.limit for d in dims]

    def init(self, params):
        self.t = 0
        self.refreshes = 0  # how many QR refreshes happened, for regime checks
        self.shapes = [self._shape(p.shape) for p in params]
        self.m = [np.zeros(dims) for dims, _ in self.shapes]
        self.v = [np.zeros(dims) for dims, _ in self.shapes]
        self.L = [[np.zeros((d, d)) if r else None for d, r in zip(*s)] for s in self.shapes]
        self.Q = [[np.eye(d) if r else None for d, r in zip(*s)] for s in self.shapes]

    def rotate(self, x, i, back=False):
        for k, q in enumerate(self.Q[i]):
            if q is not None:
                x = mode_product(x, q if back else q.T, k)
        return x

    def update(self, grads, params):
        beta_s = self.shampoo_beta if self.shampoo_beta >= 0 else self.b2
        t = self.t
        out = []
        for i, g_flat in enumerate(grads):
            dims, has = self.shapes[i]
            g = g_flat.reshape(dims)
            if t == 0:
                out.append(np.zeros_like(g_flat))
            else:
                self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
                self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * self.rotate(g, i) ** 2
                d = self.rotate(self.rotate(self.m[i], i) / (np.sqrt(self.v[i]) + self.eps), i, back=True)
                if self.normalize and d.size:
                    d = d / (1e-30 + np.sqrt(np.mean(d**2)))
                if self.correct_bias:
                    d = d * np.sqrt(1 - self.b2**t) / (1 - self.b1**t)
                out.append(d.reshape(g_flat.shape))
            for k, r in enumerate(has):  # the statistics take this step's gradient after the update
                if r:
                    unfolded = np.moveaxis(g, k, 0).reshape(dims[k], -1)
                    self.L[i][k] = beta_s * self.L[i][k] + (1 - beta_s) * unfolded @ unfolded.T
            if t == 0:
                self.Q[i] = [None if L is None else eigenbasis(L) for L in self.L[i]]
            elif t % self.frequency == 0:
                for k, (L, Q) in enumerate(zip(self.L[i], self.Q[i])):
                    if L is None:
                        continue
                    order = np.argsort(-np.diag(Q.T @ L @ Q), kind="stable")
                    self.v[i] = np.take(self.v[i], order, axis=k)
                    self.Q[i][k] = qr_basis(L @ Q[:, order])
        if t > 0 and t % self.frequency == 0:
            self.refreshes += 1
        self.t += 1
        return out


class ZeroFirstStep(Ref):
    def update(self, grads, params):
        self.t += 1
        return [np.zeros_like(g) for g in grads] if self.t == 1 else grads


def ref_soap(learning_rate=3e-3, weight_decay=0.01, **kwargs):
    return Chain(SOAP(**kwargs), AddDecayedWeights(weight_decay), ScaleByLearningRate(learning_rate), ZeroFirstStep())
