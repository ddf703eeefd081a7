"""Losses on embeddings: the normalised temperature-scaled cross-entropy of contrastive learning,
and the triplet margin loss."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.numerics import compute_dtype
from gradtx.core.validation import concrete_value
from gradtx.losses._inputs import as_float, as_integer, same_shape


def _check_number(who: str, name: str, value: Any, ok, requirement: str) -> None:
    if jnp.ndim(value) != 0:
        raise ValueError(f"{who}: {name} must be a number, got an array of shape {jnp.shape(value)}")
    number = concrete_value(value)
    if number is not None and not (np.isfinite(number) and ok(number)):
        raise ValueError(f"{who}: {name} must be {requirement}, got {number!r}")


def _unit_rows(x: jax.Array) -> jax.Array:
    """Each row divided by ``max(|row|, sqrt(eps))``: cosine similarities as dot products, with a
    zero row left at zero. Each row is first scaled by its largest magnitude (a constant for the
    gradient, which the quotient does not depend on), so that no square overflows."""
    eps = jnp.finfo(x.dtype).eps
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
    scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, 1)
    scaled = x / scale
    squares = jnp.sum(scaled * scaled, axis=-1, keepdims=True)
    return scaled / jnp.sqrt(jnp.maximum(squares, eps / (scale * scale)))


def ntxent(embeddings: Any, labels: Any, temperature: Any = 0.07) -> jax.Array:
    r"""The normalised temperature-scaled cross-entropy (NT-Xent) of Chen et al., 2020,
    :arxiv:`2002.05709`, averaged over all positive pairs.

    With the cosine similarities :math:`s_{ij} = \hat e_i \cdot \hat e_j / \tau`, the positives
    :math:`P = \{(i, j): i \ne j, y_i = y_j\}` and the negatives :math:`N_i = \{k: y_k \ne y_i\}`,

    .. math::
        \ell = \frac{1}{|P|} \sum_{(i, j) \in P}
            -\log \frac{\exp s_{ij}}{\exp s_{ij} + \sum_{k \in N_i} \exp s_{ik}}

    An embedding shorter than :math:`\sqrt{\epsilon}` (machine epsilon) is divided by
    :math:`\sqrt{\epsilon}` instead of its length. Without a positive pair the mean is NaN.

    Args:
        embeddings: ``(batch, features)`` embeddings :math:`e`.
        labels: ``(batch,)`` integer group labels :math:`y`: embeddings of one label are positives
            of each other, of different labels negatives.
        temperature: :math:`\tau > 0`.

    Returns:
        The mean loss over the positive pairs, a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.contrastive import ntxent
        >>> e = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> round(float(ntxent(e, jnp.array([0, 0, 1, 1]), temperature=1.0)), 4)  # log(1 + 2 / e)
        0.5514
    """
    who = "ntxent"
    embeddings = as_float(who, "embeddings", embeddings)
    labels = as_integer(who, "labels", labels)
    if embeddings.ndim != 2:
        raise ValueError(f"{who}: embeddings must have shape (batch, features), got {embeddings.shape}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"{who}: labels has shape {labels.shape}, embeddings has shape {embeddings.shape}; labels must be {embeddings.shape[:1]}"
        )
    _check_number(who, "temperature", temperature, lambda t: t > 0, "a positive number")
    dtype = compute_dtype(embeddings)
    unit = _unit_rows(embeddings.astype(dtype))
    # full precision: the default on accelerators may round the factors to 10 bits (TF32)
    sims = jnp.matmul(unit, unit.T, precision=jax.lax.Precision.HIGHEST) / jnp.asarray(temperature, dtype)
    same = labels[:, None] == labels[None, :]
    positives = same & ~jnp.eye(labels.shape[0], dtype=bool)
    negatives = ~same
    # log sum_k exp s_ik over the negatives of i, -inf for none
    top = jax.lax.stop_gradient(jnp.max(jnp.where(negatives, sims, -jnp.inf), axis=1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.where(negatives, jnp.exp(sims - top), 0.0), axis=1, keepdims=True)
    log_negatives = jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1.0)) + top, -jnp.inf)
    # -log(e^s / (e^s + e^n)) = softplus(n - s)
    pair_losses = jax.nn.softplus(log_negatives - sims)
    loss = jnp.sum(jnp.where(positives, pair_losses, 0.0)) / jnp.sum(positives)
    return loss.astype(embeddings.dtype)


def triplet_margin_loss(
    anchors: Any,
    positives: Any,
    negatives: Any,
    axis: int = -1,
    norm_degree: Any = 2,
    margin: Any = 1.0,
    eps: Any = 1e-6,
) -> jax.Array:
    r"""The triplet margin loss of Balntas et al., 2016, :doi:`10.5244/C.30.119`, per triplet.

    .. math::
        \ell(a, p, n) = \max\bigl(d(a, p) - d(a, n) + m,\ 0\bigr), \qquad
        d(x, y) = \Bigl(\sum_k |x_k - y_k|^q + \epsilon\Bigr)^{1/q}

    the :math:`q`-norm distance taken along ``axis``, :math:`\epsilon` keeping its gradient finite
    where two embeddings coincide.

    Args:
        anchors: the anchor embeddings :math:`a`.
        positives: :math:`p`, shaped like ``anchors``: embeddings to be near their anchor.
        negatives: :math:`n`, shaped like ``anchors``: embeddings to be far from their anchor.
        axis: the feature axis the distances are taken along.
        norm_degree: :math:`q > 0`, the degree of the norm (2: Euclidean).
        margin: :math:`m`, by how much the negative must be farther than the positive.
        eps: :math:`\epsilon \ge 0`, added to the sum of powers.

    Returns:
        The loss of each triplet: ``anchors``' shape without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.contrastive import triplet_margin_loss
        >>> a, p, n = jnp.zeros((1, 2)), jnp.array([[3.0, 4.0]]), jnp.array([[1.0, 0.0]])
        >>> triplet_margin_loss(a, p, n, eps=0.0)  # 5 - 1 + 1
        Array([5.], dtype=float32)
    """
    who = "triplet_margin_loss"
    anchors = as_float(who, "anchors", anchors)
    positives = as_float(who, "positives", positives)
    negatives = as_float(who, "negatives", negatives)
    same_shape(who, "positives", positives, "anchors", anchors)
    same_shape(who, "negatives", negatives, "anchors", anchors)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -anchors.ndim <= axis < anchors.ndim:
        raise ValueError(f"{who}: axis {axis!r} is out of range for embeddings of {anchors.ndim} dimensions")
    _check_number(who, "norm_degree", norm_degree, lambda q: q > 0, "a positive number")
    _check_number(who, "margin", margin, lambda m: True, "a finite number")
    _check_number(who, "eps", eps, lambda e: e >= 0, "a nonnegative number")
    dtype = jnp.result_type(anchors, positives, negatives)

    def distance(x, y):
        diff = jnp.abs(x - y)
        powers = diff * diff if isinstance(norm_degree, int) and norm_degree == 2 else diff**norm_degree
        return (jnp.sum(powers, axis=axis) + eps) ** (1 / jnp.asarray(norm_degree, dtype))

    loss = jnp.maximum(distance(anchors, positives) - distance(anchors, negatives) + margin, 0)
    return loss.astype(dtype)
