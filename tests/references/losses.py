"""Float64 NumPy references for the cross-entropy, margin, regression and divergence losses,
written from their definitions (log-softmax by the log-sum-exp of shifted logits; the focal loss
of Lin et al. 2017; poly-1 of Leng et al. 2022; Huber 1964), and a central finite-difference
gradient to check the library's gradients against.
"""

from __future__ import annotations

import numpy as np


def log_softmax(z, axis=-1, where=None):
    z = np.asarray(z, np.float64)
    keep = np.ones(z.shape, bool) if where is None else np.asarray(where)
    keep = keep & ~np.isneginf(z)
    zm = np.where(keep, z, -np.inf)
    top = np.max(zm, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        lse = top + np.log(np.sum(np.where(keep, np.exp(zm - top), 0.0), axis=axis, keepdims=True))
    return np.where(keep, z - lse, -np.inf)


def softmax_cross_entropy(z, y, axis=-1, where=None):
    lp = log_softmax(z, axis, where)
    keep = np.ones(np.shape(z), bool) if where is None else np.asarray(where)
    y = np.asarray(y, np.float64)
    with np.errstate(invalid="ignore"):
        terms = np.where(keep & (y != 0), y * lp, 0.0)
    return -np.sum(terms, axis=axis)


def integer_cross_entropy(z, labels):
    """Cross-entropy with integer labels on the last axis: logsumexp(z) - z_y, written with a loop."""
    z = np.asarray(z, np.float64)
    flat, lab = z.reshape(-1, z.shape[-1]), np.asarray(labels).reshape(-1)
    out = np.empty(len(lab))
    for i, (row, y) in enumerate(zip(flat, lab)):
        m = row.max()
        out[i] = m + np.log(np.sum(np.exp(row - m))) - row[y]
    return out.reshape(np.shape(labels))


def sigmoid_bce(z, y):
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    # log sigmoid(z) = -log(1 + e^-z), written stably with logaddexp
    return y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)


def focal(z, y, alpha=None, gamma=2.0):
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    p = 1 / (1 + np.exp(-z))
    p_t = y * p + (1 - y) * (1 - p)
    loss = sigmoid_bce(z, y) * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (y * alpha + (1 - y) * (1 - alpha))
    return loss


def poly1(z, y, epsilon=2.0, axis=-1):
    p = np.exp(log_softmax(z, axis))
    return softmax_cross_entropy(z, y, axis) + epsilon * (1 - np.sum(np.asarray(y, np.float64) * p, axis=axis))


def smooth(y, alpha, classes):
    return (1 - alpha) * np.asarray(y, np.float64) + alpha / classes


def multiclass_hinge(s, labels):
    s = np.asarray(s, np.float64)
    out = np.empty(s.shape[:-1])
    for idx in np.ndindex(*s.shape[:-1]):
        row, y = s[idx], int(labels[idx])
        out[idx] = max(row[k] + (k != y) for k in range(len(row))) - row[y]
    return out


def multiclass_perceptron(s, labels):
    s = np.asarray(s, np.float64)
    return np.max(s, -1) - np.take_along_axis(s, np.asarray(labels)[..., None], -1)[..., 0]


def huber(e, delta):
    e = np.asarray(e, np.float64)
    return np.where(np.abs(e) <= delta, 0.5 * e**2, delta * (np.abs(e) - 0.5 * delta))


def log_cosh(e):
    return np.log(np.cosh(np.asarray(e, np.float64)))


def cosine_similarity(p, t, epsilon=0.0, axis=-1):
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    np_, nt = np.linalg.norm(p, axis=axis), np.linalg.norm(t, axis=axis)
    dot = np.sum(p * t, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = dot / (np.maximum(np_, epsilon) * np.maximum(nt, epsilon))
    return np.where((np_ == 0) | (nt == 0), 0.0, s)


def kl(log_q, t, axis=-1):
    log_q, t = np.asarray(log_q, np.float64), np.asarray(t, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * (np.log(t) - log_q), 0.0)
    return np.sum(terms, axis=axis)


def generalized_kl(log_q, t, axis=-1):
    return kl(log_q, t, axis) + np.sum(np.exp(np.asarray(log_q, np.float64)) - np.asarray(t, np.float64), axis=axis)


def numeric_grad(f, x, h=1e-6):
    """Central finite differences of the scalar float64 function ``f`` at ``x``."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad
