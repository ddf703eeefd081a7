"""Float64 NumPy references for the structured losses, written from their definitions:

- CTC (Graves et al. 2006): the forward recursion over the extended label sequence in log space
  with true ``-inf`` (so it also holds at extreme logits), and, for a few frames, the brute-force
  sum over every alignment that collapses to the labels;
- sparsemax (Martins & Astudillo 2016) by sorting and, independently, by bisection on the
  threshold; the sparsemax loss in Martins & Astudillo's closed form; the binary sparsemax loss
  piece by piece; a Fenchel-Young loss (Blondel et al. 2020) from its definition;
- the listwise softmax ranking loss, NT-Xent (Chen et al. 2020) and the triplet margin loss by
  explicit loops;
- the Dice / Tversky losses (Milletari et al. 2016; Salehi et al. 2017) and the generalised Dice
  weighting (Sudre et al. 2017).

Nothing here imports gradtx. Every function takes and returns float64 NumPy arrays.
"""

from __future__ import annotations

import itertools

import numpy as np


def f64(x):
    return np.asarray(x, dtype=np.float64)


def log_softmax(x, axis=-1):
    x = f64(x)
    top = np.max(x, axis=axis, keepdims=True)
    return x - top - np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    return np.exp(log_softmax(x, axis))


def sigmoid(x):
    x = f64(x)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def central_differences(f, x, h=1e-6):
    """The gradient of the scalar function ``f`` at ``x`` by central differences."""
    x = f64(x).copy()
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        up = f(x)
        x[index] = saved - h
        down = f(x)
        x[index] = saved
        grad[index] = (up - down) / (2 * h)
    return grad


# ------------------------------------------------------------------------------------- CTC


def _lse(*values):
    out = -np.inf
    for v in values:
        out = np.logaddexp(out, v)
    return out


def ctc_one(log_probs, labels, blank):
    """Graves' forward variables of one sequence: ``log_probs`` (frames, classes) of its real
    frames, ``labels`` its real labels. Returns ``log alpha`` of shape (frames, 2N + 1)."""
    ext = [blank]
    for y in labels:
        ext += [int(y), blank]
    frames, states = len(log_probs), len(ext)
    alpha = np.full((frames, states), -np.inf)
    previous = np.full(states, -np.inf)
    previous[0] = 0.0  # before the first frame: in the leading blank state, nothing emitted
    for t in range(frames):
        for s in range(states):
            terms = [previous[s]]
            if s >= 1:
                terms.append(previous[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(previous[s - 2])
            alpha[t, s] = log_probs[t, ext[s]] + _lse(*terms)
        previous = alpha[t]
    return alpha


def ctc_reference(logits, logit_paddings, labels, label_paddings, blank_id=0):
    """``(loss, P_blank, P_label)``: the loss per sequence and the forward probabilities (not
    their logs) in the (frames, batch, N + 1) and (frames, batch, N) layout: a padded frame
    repeats the row before it (the start row (1, 0, ...) before any real frame), a padded label
    has probability 0, and the last row of ``P_blank`` also counts the paths ending on label n."""
    logits = f64(logits)
    batch, frames, _ = logits.shape
    width = np.shape(labels)[1]
    loss = np.zeros(batch)
    blank_rows = np.zeros((frames, batch, width + 1))
    label_rows = np.zeros((frames, batch, width))
    for b in range(batch):
        real_frames = [t for t in range(frames) if not logit_paddings[b][t]]
        real_labels = [int(labels[b][n]) for n in range(width) if not label_paddings[b][n]]
        n_labels = len(real_labels)
        alpha = ctc_one(log_softmax(logits[b, real_frames]), real_labels, blank_id)
        row = np.full(2 * n_labels + 1, -np.inf)
        row[0] = 0.0
        k = 0
        for t in range(frames):
            if t in real_frames:
                row = alpha[k]
                k += 1
            blank_rows[t, b, : n_labels + 1] = np.exp(row[0::2])
            label_rows[t, b, :n_labels] = np.exp(row[1::2])
        blank_rows[-1, b, 1 : n_labels + 1] += label_rows[-1, b, :n_labels]
        loss[b] = -_lse(row[2 * n_labels], row[2 * n_labels - 1] if n_labels else -np.inf)
    return loss, blank_rows, label_rows


def ctc_brute_force(logits, labels, blank_id=0):
    """``-log`` of the total probability of every alignment of one sequence (all its frames
    real) that collapses to ``labels``: repeats merged, then blanks removed."""
    log_probs = log_softmax(logits)
    frames, classes = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(classes), repeat=frames):
        collapsed = [k for i, k in enumerate(path) if (i == 0 or k != path[i - 1]) and k != blank_id]
        if collapsed == list(labels):
            total = np.logaddexp(total, sum(log_probs[t, k] for t, k in enumerate(path)))
    return -total


# ------------------------------------------------------------------------- sparsemax, FY


def sparsemax(z):
    """The projection of each row (last axis) onto the simplex, the threshold found by sorting."""
    z = f64(z)
    out = np.zeros_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = z[index]
        ordered = np.sort(row)[::-1]
        totals = np.cumsum(ordered)
        k = max(j for j in range(1, len(row) + 1) if 1 + j * ordered[j - 1] > totals[j - 1])
        tau = (totals[k - 1] - 1) / k
        out[index] = np.maximum(row - tau, 0)
    return out


def sparsemax_by_bisection(z, steps=200):
    """The same projection, the threshold found by bisection on ``sum(max(z - tau, 0)) = 1``."""
    z = f64(z)
    out = np.zeros_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = z[index]
        low, high = row.max() - 1, row.max()
        for _ in range(steps):
            mid = (low + high) / 2
            low, high = (mid, high) if np.maximum(row - mid, 0).sum() > 1 else (low, mid)
        out[index] = np.maximum(row - (low + high) / 2, 0)
    return out


def multiclass_sparsemax_loss(scores, labels):
    """Martins & Astudillo's closed form: 1/2 sum over the support of (z_j^2 - tau^2) + 1/2 - z_y."""
    scores = f64(scores)
    out = np.zeros(scores.shape[:-1])
    for index in np.ndindex(scores.shape[:-1]):
        row = scores[index]
        p = sparsemax(row)
        support = p > 0
        tau = np.mean(row[support]) - 1 / support.sum()  # sum_S (z_j - tau) = 1
        out[index] = 0.5 * np.sum(row[support] ** 2 - tau**2) + 0.5 - row[int(np.asarray(labels)[index])]
    return out


def binary_sparsemax_loss(logits, labels):
    """Piece by piece: with u = z for y = 0 and u = -z for y = 1, 0 below -1, (u + 1)^2 / 4 in
    between, u above 1."""
    u = np.where(np.asarray(labels).astype(bool), -f64(logits), f64(logits))
    return np.where(u <= -1, 0.0, np.where(u >= 1, u, (u + 1) ** 2 / 4))


def fenchel_young(max_fun, scores, targets):
    """max_fun(z) - <y, z> for each row (last axis)."""
    scores, targets = f64(scores), f64(targets)
    out = np.zeros(scores.shape[:-1])
    for index in np.ndindex(scores.shape[:-1]):
        out[index] = max_fun(scores[index]) - np.dot(targets[index], scores[index])
    return out


def logsumexp(z):
    top = np.max(z)
    return top + np.log(np.sum(np.exp(z - top)))


# -------------------------------------------------------------------------------- ranking


def ranking_softmax(logits, labels, where=None, weights=None):
    """``-sum_i w_i y_i log softmax(s)_i`` per list, over the valid items only (0 for a list
    without one); also returns which lists have a valid item."""
    logits, labels = f64(logits), f64(labels)
    where = np.ones(logits.shape, bool) if where is None else np.asarray(where)
    weights = np.ones(logits.shape) if weights is None else f64(weights)
    losses = np.zeros(logits.shape[:-1])
    valid = np.zeros(logits.shape[:-1], bool)
    for index in np.ndindex(logits.shape[:-1]):
        items = [i for i in range(logits.shape[-1]) if where[index][i]]
        valid[index] = bool(items)
        if not items:
            continue
        s = logits[index][items]
        log_p = s - logsumexp(s)
        losses[index] = -sum(weights[index][i] * labels[index][i] * lp for i, lp in zip(items, log_p))
    return losses, valid


# ---------------------------------------------------------------------------- contrastive


def ntxent(embeddings, labels, temperature):
    """The mean over ordered positive pairs (i, j), i != j, of
    ``-log(e^{s_ij} / (e^{s_ij} + sum over negatives k of i of e^{s_ik}))``."""
    e = f64(embeddings)
    eps = np.finfo(np.asarray(embeddings).dtype).eps
    unit = e / np.sqrt(np.maximum(np.sum(e * e, axis=1, keepdims=True), eps))
    sims = unit @ unit.T / temperature
    losses = []
    n = len(e)
    for i in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[i]]
        for j in range(n):
            if j != i and labels[j] == labels[i]:
                terms = [sims[i, j]] + [sims[i, k] for k in negatives]
                losses.append(-sims[i, j] + logsumexp(np.array(terms)))
    return np.mean(losses) if losses else np.nan


def triplet_margin(anchors, positives, negatives, axis=-1, norm_degree=2, margin=1.0, eps=1e-6):
    a, p, n = f64(anchors), f64(positives), f64(negatives)
    d_pos = (np.sum(np.abs(a - p) ** norm_degree, axis=axis) + eps) ** (1 / norm_degree)
    d_neg = (np.sum(np.abs(a - n) ** norm_degree, axis=axis) + eps) ** (1 / norm_degree)
    return np.maximum(d_pos - d_neg + margin, 0.0)


# --------------------------------------------------------------------------- segmentation


def dice_per_class(probs, targets, axes, smooth=1.0, alpha=0.5, beta=0.5):
    """``1 - (I + s) / (I + alpha FP + beta FN + s)`` per class, sums over ``axes``."""
    probs, targets = f64(probs), f64(targets)
    inter = np.sum(probs * targets, axis=axes)
    false_pos = np.sum(probs * (1 - targets), axis=axes)
    false_neg = np.sum((1 - probs) * targets, axis=axes)
    return 1 - (inter + smooth) / (inter + alpha * false_pos + beta * false_neg + smooth)


def probabilities(logits):
    """The softmax over the last axis, the sigmoid for a last axis of size 1."""
    return sigmoid(logits) if np.shape(logits)[-1] == 1 else softmax(logits)


def generalized_weights(targets):
    """``1 / (F_c^2 + 1e-7)`` with ``F_c`` the target mass of class c over everything, scaled to
    sum to the number of classes."""
    targets = f64(targets)
    freq = targets.reshape(-1, targets.shape[-1]).sum(0)
    w = 1 / (freq**2 + 1e-7)
    return w * len(w) / w.sum()
