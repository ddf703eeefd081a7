"""Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"; Liu et al. 2025, Moonlight,
arXiv 2502.16982), in float64 NumPy, from the papers' equations:

    B_t = beta B_{t-1} + (1 - beta) G_t                  (momentum, kept as an average)
    M_t = (1 - beta) G_t + beta B_t  (Nesterov) or B_t
    O_t = NewtonSchulz5(M_t)                              (each matrix: X <- aX + b(XX^T)X + c(XX^T)^2 X)
    W_t = W_{t-1} - lr (s(A, B) O_t + lambda W_{t-1})    (Moonlight's Algorithm 1)

with s = sqrt(max(1, B/A)) ("original") or r sqrt(max(A, B)) ("match_rms_adamw") for an A x B
matrix (A the fan-in). The other leaves take AdamW (Kingma & Ba 2015; Dozat 2016 for the
Nesterov look-ahead; Loshchilov & Hutter 2019). The references work on flat lists of leaves,
one matrix description per leaf: None (Adam) or a pair (reduction axes, output axes).

Also here: the Polar Express coefficients (Amsel et al. 2025, arXiv 2505.16932, Algorithm 1) as
published, with the paper's safety rule, and NorMuon (Li et al. 2025, arXiv 2510.05491,
Algorithm 1), NorMuonRef.
"""

from __future__ import annotations

import numpy as np

STANDARD = (3.4445, -4.7750, 2.0315)


def newton_schulz(g, coeffs=STANDARD, steps=5, eps=1e-8, preconditioning="frobenius"):
    """The quintic Newton-Schulz iteration on one matrix (Jordan et al.'s algorithm box)."""
    x = np.array(g, dtype=np.complex128 if np.iscomplexobj(g) else np.float64)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    if preconditioning == "frobenius":
        x = x / (np.sqrt(np.sum(np.abs(x) ** 2)) + eps)
    elif preconditioning == "spectral":
        x = x / (np.linalg.svd(x, compute_uv=False)[0] + eps)
    elif preconditioning == "schatten":  # (sum of sigma^4)^(1/4)
        s4 = np.sum(np.linalg.svd(x, compute_uv=False) ** 4) ** 0.25
        x = x / s4 if s4 > 0 else x
    elif preconditioning == "aol":
        rows = np.sqrt(np.abs(x @ x.conj().T).sum(axis=1))
        x = x / np.where(rows > 0, rows, 1.0)[:, None]
    table = np.asarray(coeffs, dtype=np.float64)
    triples = [table] * steps if table.ndim == 1 else list(table)
    for a, b, c in triples:
        gram = x @ x.conj().T
        x = a * x + b * (gram @ x) + c * (gram @ (gram @ x))
    return x.T if transposed else x


def orthogonalize(m, axes, **ns):
    """Newton-Schulz on every matrix of a leaf: rows the reduction axes, columns the output axes,
    one matrix per index of the remaining (batch) axes. Returns O and <M, O> per matrix, broadcast."""
    reduction, output = axes
    batch = [a for a in range(m.ndim) if a not in reduction + output]
    order = batch + list(reduction) + list(output)
    moved = np.transpose(m, order)
    rows = int(np.prod([m.shape[a] for a in reduction]))
    cols = int(np.prod([m.shape[a] for a in output]))
    stack = moved.reshape(-1, rows, cols)
    outs = np.stack([newton_schulz(s, **ns) for s in stack])
    inner = np.array([np.real(np.vdot(s, o)) for s, o in zip(stack, outs)])[:, None, None]
    undo = np.argsort(order)
    return (
        np.transpose(outs.reshape(moved.shape), undo),
        np.transpose((inner * np.ones_like(outs.real)).reshape(moved.shape), undo),
    )


def shape_factor(shape, axes, adjust="original", rms=0.2):
    fan_in = int(np.prod([shape[a] for a in axes[0]]))
    fan_out = int(np.prod([shape[a] for a in axes[1]]))
    if adjust == "original":
        return np.sqrt(max(1.0, fan_out / fan_in))
    if adjust == "match_rms_adamw":
        return rms * np.sqrt(max(fan_in, fan_out))
    return 1.0


def _value(v, t):
    return float(v(t - 1)) if callable(v) else float(v)


class MuonRef:
    """The whole of ``muon``: ``update(grads, params)`` on flat lists returns the updates."""

    def __init__(
        self,
        learning_rate,
        dims,
        beta=0.95,
        eps=1e-8,
        nesterov=True,
        adaptive=False,
        coeffs=STANDARD,
        steps=5,
        preconditioning="frobenius",
        adjust="original",
        rms=0.2,
        weight_decay=0.0,
        decay=None,
        adam_b1=0.9,
        adam_b2=0.999,
        adam_eps=1e-8,
        adam_eps_root=0.0,
        adam_weight_decay=0.0,
        adam_learning_rate=None,
        bias_correction=False,
        muon_only=False,
    ):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def init(self, params):
        self.t = 0
        self.b = [np.zeros_like(np.asarray(p, np.float64)) for p in params]  # Muon's momentum / Adam's m
        self.v = [np.zeros_like(np.asarray(p, np.float64)) for p in params]

    def _muon(self, g, i, axes):
        beta, t = self.beta, self.t
        self.b[i] = beta * self.b[i] + (1 - beta) * g
        if self.bias_correction:  # Optax's form: Adam's corrected moment, NAdam's look-ahead
            m = (
                beta * self.b[i] / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
                if self.nesterov
                else self.b[i] / (1 - beta**t)
            )
        else:
            m = (1 - beta) * g + beta * self.b[i] if self.nesterov else self.b[i]
        o, inner = orthogonalize(
            m, axes, coeffs=self.coeffs, steps=self.steps, eps=self.eps, preconditioning=self.preconditioning
        )
        return o * inner if self.adaptive else o

    def _adam(self, g, i):
        b1, b2, t = self.adam_b1, self.adam_b2, self.t
        self.b[i] = b1 * self.b[i] + (1 - b1) * g
        self.v[i] = b2 * self.v[i] + (1 - b2) * g**2
        m_hat = (
            b1 * self.b[i] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            if self.nesterov
            else self.b[i] / (1 - b1**t)
        )
        return m_hat / (np.sqrt(self.v[i] / (1 - b2**t) + self.adam_eps_root) + self.adam_eps)

    def update(self, grads, params):
        self.t += 1
        lr = _value(self.learning_rate, self.t)
        adam_lr = lr if self.adam_learning_rate is None else _value(self.adam_learning_rate, self.t)
        wd, adam_wd = _value(self.weight_decay, self.t), _value(self.adam_weight_decay, self.t)
        out = []
        for i, (g, p, axes) in enumerate(zip(grads, params, self.dims)):
            g, p = np.asarray(g, np.float64), np.asarray(p, np.float64)
            if self.muon_only:  # scale_by_muon alone: the direction
                out.append(self._muon(g, i, axes))
            elif axes is None:
                out.append(-adam_lr * (self._adam(g, i) + adam_wd * p))
            else:
                s = shape_factor(p.shape, axes, self.adjust, self.rms)
                lam = wd if self.decay is None or self.decay[i] else 0.0
                out.append(-lr * (s * self._muon(g, i, axes) + lam * p))
        return out


# ------------------------------------------------------------------ Polar Express

# Amsel, Persson, Musco & Gower 2025, "The Polar Express", arXiv 2505.16932, Algorithm 1: the
# published degree-5 polynomials, one per iteration, and the rule written next to them: every one
# but the last divided by the safety factor 1.01 as p(x / 1.01); after the eighth, the eighth again.
POLAR_EXPRESS_PUBLISHED = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


def polar_express_coeffs(steps, safety=1.01):
    """The first ``steps`` triples of Algorithm 1's list, after its safety rule."""
    *first, last = POLAR_EXPRESS_PUBLISHED
    table = [(a / safety, b / safety**3, c / safety**5) for a, b, c in first] + [last]
    return (table + [last] * max(0, steps - len(table)))[:steps]


# --------------------------------------------------------------------------- NorMuon


class NorMuonRef(MuonRef):
    """NorMuon (Li et al. 2025, arXiv 2510.05491, Algorithm 1), from the paper's box, per matrix
    of a leaf (rows the fan-in, columns the fan-out, one matrix per batch index):

        M_t = beta M_{t-1} + (1 - beta) G_t;  M_hat = (1 - beta) G_t + beta M_t (Nesterov) or M_t
        O_t = NewtonSchulz5(M_hat)
        v_t = beta2 v_{t-1} + (1 - beta2) mean over the rows of O_t * O_t    (one per output neuron)
        O_hat = O_t / (sqrt(v_t) + eps)
        W_t = W_{t-1} - lr (0.2 sqrt(A B) O_hat / ||O_hat||_F + lambda W_{t-1})

    ``rms=None``: the authors' released code's scale instead, ||O_t||_F / ||O_hat||_F times
    sqrt(max(1, B / A)). The other leaves: AdamW, as MuonRef.
    """

    def __init__(self, learning_rate, dims, beta2=0.95, rms=0.2, **kwargs):
        super().__init__(learning_rate, dims, rms=rms, **kwargs)
        self.beta2 = beta2

    def init(self, params):
        super().init(params)
        self.nv = {}  # leaf index -> per matrix, per column

    def _normuon(self, g, i, axes):
        beta = self.beta
        self.b[i] = beta * self.b[i] + (1 - beta) * g
        m = (1 - beta) * g + beta * self.b[i] if self.nesterov else self.b[i]
        reduction, output = axes
        batch = [a for a in range(m.ndim) if a not in reduction + output]
        order = batch + list(reduction) + list(output)
        moved = np.transpose(m, order)
        rows = int(np.prod([m.shape[a] for a in reduction]))
        cols = int(np.prod([m.shape[a] for a in output]))
        stack = moved.reshape(-1, rows, cols)
        if i not in self.nv:
            self.nv[i] = np.zeros((len(stack), cols))
        out = []
        for k, s in enumerate(stack):
            o = newton_schulz(s, coeffs=self.coeffs, steps=self.steps, eps=self.eps)
            self.nv[i][k] = self.beta2 * self.nv[i][k] + (1 - self.beta2) * np.mean(o**2, axis=0)
            o_hat = o / (np.sqrt(self.nv[i][k])[None, :] + self.eps)
            if self.rms is None:
                scale = np.sqrt(max(1.0, cols / rows)) * np.linalg.norm(o) / np.linalg.norm(o_hat)
            else:
                scale = self.rms * np.sqrt(rows * cols) / np.linalg.norm(o_hat)
            out.append(scale * o_hat)
        return np.transpose(np.stack(out).reshape(moved.shape), np.argsort(order))

    def update(self, grads, params):
        self.t += 1
        lr = _value(self.learning_rate, self.t)
        adam_lr = lr if self.adam_learning_rate is None else _value(self.adam_learning_rate, self.t)
        wd, adam_wd = _value(self.weight_decay, self.t), _value(self.adam_weight_decay, self.t)
        out = []
        for i, (g, p, axes) in enumerate(zip(grads, params, self.dims)):
            g, p = np.asarray(g, np.float64), np.asarray(p, np.float64)
            if self.muon_only:  # scale_by_normuon alone: the direction
                out.append(self._normuon(g, i, axes))
            elif axes is None:
                out.append(-adam_lr * (self._adam(g, i) + adam_wd * p))
            else:
                lam = wd if self.decay is None or self.decay[i] else 0.0
                out.append(-lr * (self._normuon(g, i, axes) + lam * p))
        return out
