"""Adam-mini (Zhang et al. 2024, arXiv 2406.16793), float64 NumPy, from the paper's Algorithm 1
(the update) and Section 2 (the partition of a Transformer's parameters).

The partition is given as one integer *label* array per leaf, shaped like the leaf: entries
with the same label form one block and share one second moment, the mean of g^2 over the
block. The label arrays are built here from the paper's rules, for the layouts of Flax's
layers (``token_rows``, ``heads_along``, ...), with no knowledge of how gradtx finds them.

    m_t = b1 m + (1 - b1) g
    v_b = b2 v_b + (1 - b2) mean_{i in b} g_i^2
    u_i = -lr (m_i / (1 - b1^t) / (sqrt(v_b(i) / (1 - b2^t)) + eps) + wd * p_i)

Weight decay is the decoupled AdamW one, on the leaves of ``mask`` (the reference code's
``p *= 1 - lr * wd`` before the step, the same update)."""

import numpy as np

from references import Chain, Ref
from references.regularizers import AddDecayedWeights
from references.scaling import ScaleByLearningRate

# ---------------------------------------------------------------- the paper's blocks


def whole(shape):
    """One block for the leaf (norm scales, biases, anything else)."""
    return np.zeros(shape, dtype=np.int64)


def entries(shape):
    """Every entry its own block: Adam."""
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)


def token_rows(shape):
    """An embedding table (vocab, dim): one block per token, a row."""
    return np.broadcast_to(np.arange(shape[0])[:, None], shape).copy()


def last_axis(shape):
    """One block per index of the last axis: an output layer (dim, vocab) per token, an MLP or
    attention-output kernel (..., out) per output neuron."""
    return np.broadcast_to(np.arange(shape[-1]), shape).copy()


def heads_along(shape, heads):
    """A query/key kernel (in, heads * head_dim): one block per head, a run of head_dim columns."""
    d = shape[-1] // heads
    return np.broadcast_to(np.arange(shape[-1]) // d, shape).copy()


def head_axis(shape):
    """A query/key kernel (in, heads, head_dim): one block per head."""
    return np.broadcast_to(np.arange(shape[1])[None, :, None], shape).copy()


def after_first(shape):
    """A value kernel (in, heads, head_dim) or (in, out): one block per output neuron."""
    n = int(np.prod(shape[1:]))
    return np.broadcast_to(np.arange(n).reshape(shape[1:]), shape).copy()


# ---------------------------------------------------------------------- the update


class AdamMini(Ref):
    """Adam-mini's direction; ``labels`` is a function of the list of float64 params returning one
    label array per leaf (``None``: every entry its own block)."""

    def __init__(self, labels=None, b1=0.9, b2=0.999, eps=1e-8):
        self.labels, self.b1, self.b2, self.eps = labels, b1, b2, eps

    def init(self, params):
        self.t = 0
        self.blocks = self.labels(params) if self.labels is not None else [entries(p.shape) for p in params]
        assert [b.shape for b in self.blocks] == [p.shape for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros(int(b.max()) + 1 if b.size else 0) for b in self.blocks]

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, (g, labels) in enumerate(zip(grads, self.blocks)):
            flat, ids = g.reshape(-1), labels.reshape(-1)
            sizes = np.bincount(ids, minlength=len(self.v[i]))
            means = np.bincount(ids, weights=flat**2, minlength=len(self.v[i])) / np.maximum(sizes, 1)
            self.v[i] = b2 * self.v[i] + (1 - b2) * means
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            v_hat = (self.v[i] / (1 - b2**t))[ids].reshape(g.shape)
            out.append(self.m[i] / (1 - b1**t) / (np.sqrt(v_hat) + self.eps))
        return out


def ref_adam_mini(labels=None, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, mask=None):
    return Chain(
        AdamMini(labels, b1, b2, eps),
        AddDecayedWeights(weight_decay, mask) if weight_decay or mask is not None else None,
        ScaleByLearningRate(learning_rate),
    )
