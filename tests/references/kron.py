"""PSGD Kron (Li 2015, arXiv 1512.04202; Li 2022, arXiv 2211.04422), float64 NumPy, in the form of
the psgd_jax / kron_torch ``kron``: bias-corrected momentum, a Kronecker-factored preconditioner
P = Q^T Q with Q = Q_1 (x) ... (x) Q_k, and the whitening fit of each factor on the group of
upper triangular (or diagonal) matrices.

Written on the whole Kronecker product: for a leaf X of shape (d_1, ..., d_k), ``Q @ x`` with
``Q = np.kron(Q_1, ..., Q_k)`` and ``x`` the row-major flattening of X is the flattening of
X x_1 Q_1 ... x_k Q_k, so A = Q h, B = Q^{-T} v (a dense solve) and P u = Q^T Q u are plain
matrix products here, where the library applies the factors axis by axis. The fit of factor i
uses the mode-i unfoldings A_(i), B_(i):

    Q_i <- Q_i - lr / ||A_(i) A_(i)^T + B_(i) B_(i)^T|| * triu(A_(i) A_(i)^T - B_(i) B_(i)^T) Q_i

with ||S|| the bound ||S y|| / ||y||, y = S r, r the row of S of largest norm (a diagonal factor
keeps the diagonal of both terms, and the largest entry as the norm). The fitted gradient is
damped, h + sqrt(eps_float32) mean|h| v. The update is P m_hat, divided by max(1, RMS / 1.1).

The random parts (whether a step fits the factors, whether it first balances them, and the
probe of every leaf) are not re-derived here: ``draws(t)`` gives them for step t = 1, 2, ...
as ``(fit, balance, [v per leaf])``, drawn by the test from the library's documented key schedule.
"""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate

DAMPING = np.sqrt(np.finfo(np.float32).eps)


def diagonal_axes(shape, max_size, min_ndim, mode):
    """Which axes get a diagonal factor (a 0-d leaf is one diagonal axis of size 1)."""
    if len(shape) == 0:
        return [True]
    largest = max(i for i in range(len(shape)) if shape[i] == max(shape))
    return [
        d == 1 or d > max_size or len(shape) < min_ndim or mode == "all_diag" or (mode == "one_diag" and i == largest)
        for i, d in enumerate(shape)
    ]


def norm_lower_bound(s):
    r = s[np.argmax(np.sum(s * s, axis=1))]
    y = s @ r
    return np.linalg.norm(s @ y) / np.linalg.norm(y) if np.linalg.norm(y) > 0 else 0.0


class Kron(Ref):
    def __init__(
        self,
        b1=0.9,
        preconditioner_update_probability=None,
        max_size_triangular=8192,
        min_ndim_triangular=2,
        memory_save_mode=None,
        momentum_into_precond_update=True,
        preconditioner_lr=0.1,
        preconditioner_init_scale=1.0,
        draws=None,
    ):
        self.b1, self.lr_p, self.scale = b1, preconditioner_lr, preconditioner_init_scale
        self.max_size, self.min_ndim, self.mode = max_size_triangular, min_ndim_triangular, memory_save_mode
        self.into = momentum_into_precond_update
        self.draws = draws
        self.fits = self.balances = 0  # for regime checks

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.shapes = [p.shape if p.ndim else (1,) for p in params]
        self.diag = [diagonal_axes(p.shape, self.max_size, self.min_ndim, self.mode) for p in params]
        self.Q = []
        for shape, diag in zip(self.shapes, self.diag):
            s = self.scale ** (1 / len(shape))
            self.Q.append([s * np.ones(d) if dg else s * np.eye(d) for d, dg in zip(shape, diag)])

    def full(self, i):
        """The leaf's whole Q, the Kronecker product of its factors (diagonals as matrices)."""
        out = np.ones((1, 1))
        for q in self.Q[i]:
            out = np.kron(out, np.diag(q) if q.ndim == 1 else q)
        return out

    def fit(self, i, h, v):
        shape, q_full = self.shapes[i], self.full(i)
        h = h.reshape(-1) + DAMPING * np.mean(np.abs(h)) * v.reshape(-1)
        a = (q_full @ h).reshape(shape)
        b = np.linalg.solve(q_full.T, v.reshape(-1)).reshape(shape)
        new = []
        for axis, (q, diag) in enumerate(zip(self.Q[i], self.diag[i])):
            a_i = np.moveaxis(a, axis, 0).reshape(shape[axis], -1)
            b_i = np.moveaxis(b, axis, 0).reshape(shape[axis], -1)
            t1, t2 = a_i @ a_i.T, b_i @ b_i.T
            if diag:
                d1, d2 = np.diag(t1), np.diag(t2)
                new.append(q - self.lr_p / np.max(np.abs(d1 + d2)) * (d1 - d2) * q)
            else:
                new.append(q - self.lr_p / norm_lower_bound(t1 + t2) * np.triu(t1 - t2) @ q)
        self.Q[i] = new

    def balance(self, i):
        if len(self.Q[i]) > 1:
            sizes = [np.max(np.abs(q)) for q in self.Q[i]]
            mean = np.prod(sizes) ** (1 / len(sizes))
            self.Q[i] = [q * mean / s for q, s in zip(self.Q[i], sizes)]

    def update(self, grads, params):
        self.t += 1
        t = self.t
        fit, balance, probes = self.draws(t)
        out = []
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
        m_hat = [m / (1 - self.b1**t) for m in self.m]
        if fit:
            self.fits += 1
            self.balances += int(balance)
            for i, g in enumerate(grads):
                if balance:
                    self.balance(i)
                if g.size:
                    self.fit(i, m_hat[i] if self.into else g, probes[i])
        for i, m in enumerate(m_hat):
            if m.size == 0:
                out.append(np.zeros_like(m))
                continue
            q_full = self.full(i)
            u = q_full.T @ (q_full @ m.reshape(-1))
            rms = np.sqrt(np.mean(u * u))
            out.append((u / max(1.0, rms / 1.1)).reshape(m.shape))
        return out


def ref_kron(
    learning_rate=1e-3,
    b1=0.9,
    weight_decay=0.0,
    weight_decay_mask=None,
    preconditioner_update_probability=None,
    max_size_triangular=8192,
    min_ndim_triangular=2,
    memory_save_mode=None,
    momentum_into_precond_update=True,
    preconditioner_lr=0.1,
    preconditioner_init_scale=1.0,
    draws=None,
):
    return Chain(
        Kron(
            b1,
            preconditioner_update_probability,
            max_size_triangular,
            min_ndim_triangular,
            memory_save_mode,
            momentum_into_precond_update,
            preconditioner_lr,
            preconditioner_init_scale,
            draws,
        ),
        AddDecayedWeights(weight_decay, weight_decay_mask) if weight_decay else None,
        ScaleByLearningRate(learning_rate),
    )
