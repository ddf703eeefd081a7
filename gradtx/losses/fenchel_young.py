"""Fenchel-Young losses: a regulariser's convex conjugate (a "max function") at the scores minus
the scores' inner product with the target, and the two sparsemax losses built this way.

For a regulariser :math:`\\Omega`, the loss :math:`\\Omega^*(z) + \\Omega(y) - \\langle y, z \\rangle`
is nonnegative, zero exactly when :math:`y` is the regularised prediction
:math:`\\nabla\\Omega^*(z)`, and has gradient :math:`\\nabla\\Omega^*(z) - y`: the softmax for the
negative entropy, the sparsemax for the Gini negentropy :math:`\\tfrac12 (\\lVert p \\rVert^2 - 1)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.losses._inputs import as_float, as_integer, labels_in_range, same_shape


def _sparsemax(z: jax.Array) -> jax.Array:
    """The Euclidean projection of each row (last axis) of ``z`` onto the probability simplex,
    :math:`\\max(z - \\tau, 0)`, with the threshold found by sorting (Martins & Astudillo, 2016)."""
    ordered = -jnp.sort(-z, axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    totals = jnp.cumsum(ordered, axis=-1)
    support = jnp.sum(1 + k * ordered > totals, axis=-1, keepdims=True)  # >= 1: the largest is always in
    tau = (jnp.take_along_axis(totals, support - 1, axis=-1) - 1) / support.astype(z.dtype)
    return jnp.maximum(z - tau, 0)


def _sparse_plus(u: jax.Array) -> jax.Array:
    """The conjugate of :math:`p^2 - p` on :math:`[0, 1]`: 0, :math:`(u+1)^2/4`, then :math:`u`."""
    return jnp.where(u <= -1, 0.0, jnp.where(u >= 1, u, (u + 1) ** 2 / 4)).astype(u.dtype)


def sparsemax_loss(logits: Any, labels: Any) -> jax.Array:
    r"""The binary sparsemax loss: the Fenchel-Young loss of the sparse sigmoid.

    .. math::
        \ell(z, y) = \operatorname{sparseplus}\bigl((1 - 2y) z\bigr), \qquad
        \operatorname{sparseplus}(u) = \begin{cases} 0 & u \le -1 \\ (u+1)^2/4 & |u| < 1 \\
        u & u \ge 1 \end{cases}

    which is :math:`\Omega^*(z) - yz` for :math:`\Omega(p) = p^2 - p` on :math:`[0, 1]`; it is zero
    exactly when :math:`\operatorname{clip}((z+1)/2, 0, 1) = y` and grows linearly beyond
    (Blondel et al., 2020, :arxiv:`1901.02324`, section 4.4; the binary case of the sparsemax of
    Martins & Astudillo, 2016, :arxiv:`1602.02068`).

    Args:
        logits: the scores :math:`z`, any shape.
        labels: :math:`y`, shaped like ``logits``: integers (or booleans) 0 or 1.

    Returns:
        The loss of each element, shaped like ``logits``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.fenchel_young import sparsemax_loss
        >>> sparsemax_loss(jnp.array([-3.0, 0.0, 3.0]), jnp.array([1, 1, 1]))
        Array([3.  , 0.25, 0.  ], dtype=float32)
    """
    who = "sparsemax_loss"
    logits = as_float(who, "logits", logits)
    labels = jnp.asarray(labels)
    if labels.dtype != bool:
        labels = as_integer(who, "labels", labels)
    same_shape(who, "labels", labels, "logits", logits)
    if not isinstance(labels, jax.core.Tracer) and np.any((np.asarray(labels) != 0) & (np.asarray(labels) != 1)):
        raise ValueError(f"{who}: labels must be 0 or 1, got values {sorted(set(np.asarray(labels).ravel().tolist()))}")
    return _sparse_plus(jnp.where(labels.astype(bool), -logits, logits))


def multiclass_sparsemax_loss(scores: Any, labels: Any) -> jax.Array:
    r"""The sparsemax loss of Martins & Astudillo, 2016, :arxiv:`1602.02068`, for integer labels.

    .. math::
        \ell(z, y) = \langle p, z \rangle + \tfrac12 \bigl(1 - \lVert p \rVert^2\bigr) - z_y
        = \tfrac12 \sum_{j \in S(z)} \bigl(z_j^2 - \tau(z)^2\bigr) + \tfrac12 - z_y

    with :math:`p = \operatorname{sparsemax}(z) = \max(z - \tau, 0)` the Euclidean projection of
    the scores onto the simplex and :math:`S(z)` its support: the Fenchel-Young loss of the Gini
    negentropy. Its gradient is :math:`p - e_y`; it is zero exactly when :math:`p = e_y`.

    Args:
        scores: ``(..., classes)`` scores :math:`z`.
        labels: ``(...)`` integer class indices :math:`y` in ``[0, classes)``.

    Returns:
        The loss of each example, shape ``scores.shape[:-1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.fenchel_young import multiclass_sparsemax_loss
        >>> loss = multiclass_sparsemax_loss(jnp.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), jnp.array([0, 1]))
        >>> [round(x, 4) for x in loss.tolist()]  # sparsemax (1, 0, 0) is right; (1/3, 1/3, 1/3) is not
        [0.0, 0.3333]
    """
    who = "multiclass_sparsemax_loss"
    scores = as_float(who, "scores", scores)
    labels = as_integer(who, "labels", labels)
    if scores.ndim == 0 or scores.shape[-1] == 0:
        raise ValueError(f"{who}: scores must have a class axis (the last) of size >= 1, got shape {scores.shape}")
    if labels.shape != scores.shape[:-1]:
        raise ValueError(
            f"{who}: labels has shape {labels.shape}, scores has shape {scores.shape}; labels must be {scores.shape[:-1]}"
        )
    labels_in_range(who, labels, scores.shape[-1])
    # the loss is unchanged by a shift of the scores: measure them from their largest
    z = scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    p = _sparsemax(z)
    z_y = jnp.take_along_axis(z, jnp.clip(labels, 0, z.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    z_y = jnp.where((labels >= 0) & (labels < z.shape[-1]), z_y, jnp.nan)  # traced labels out of range: NaN
    return jnp.sum(p * z, axis=-1) + 0.5 * (1 - jnp.sum(p * p, axis=-1)) - z_y


def make_fenchel_young_loss(max_fun: Callable[..., Any]) -> Callable[..., jax.Array]:
    r"""The Fenchel-Young loss built on a max function :math:`\Omega^*` (Blondel et al., 2020,
    :arxiv:`1901.02324`).

    .. math:: \ell(z, y) = \Omega^*(z) - \langle y, z \rangle

    taken over the last axis; the term :math:`\Omega(y)`, constant in the scores, is left out. With
    ``jax.nn.logsumexp`` as :math:`\Omega^*` and targets that sum to 1 this is the softmax
    cross-entropy (the full loss, with :math:`\Omega(y) = \sum_k y_k \log y_k`, is the
    Kullback-Leibler divergence).

    Args:
        max_fun: :math:`\Omega^*`, a function of a vector of scores (and of any further arguments
            the loss is called with) that returns one number.

    Returns:
        ``loss(scores, targets, *args, **kwargs)``: ``scores`` and ``targets`` of one shape
        ``(..., n)``, and the loss of each vector, shape ``(...)``; ``args`` and ``kwargs`` go
        to ``max_fun`` unchanged (they are not mapped over the leading axes).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.losses.fenchel_young import make_fenchel_young_loss
        >>> loss = make_fenchel_young_loss(jax.nn.logsumexp)
        >>> loss(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]))  # log 2
        Array([0.6931472], dtype=float32)
    """
    if not callable(max_fun):
        raise TypeError(f"make_fenchel_young_loss: max_fun must be a function, got {type(max_fun).__name__}")

    def fenchel_young_loss(scores: Any, targets: Any, *args: Any, **kwargs: Any) -> jax.Array:
        """:math:`\\Omega^*(z) - \\langle y, z \\rangle` over the last axis of ``scores`` and ``targets``."""
        who = "fenchel_young_loss"
        scores = as_float(who, "scores", scores)
        targets = as_float(who, "targets", targets)
        same_shape(who, "targets", targets, "scores", scores)
        if scores.ndim == 0:
            raise ValueError(f"{who}: scores must have at least one axis (the last is reduced), got a scalar")

        def one(z):
            value = jnp.asarray(max_fun(z, *args, **kwargs))
            if value.ndim != 0:
                raise ValueError(f"{who}: max_fun must return one number per vector of scores, got shape {value.shape}")
            return value

        maxima = jnp.vectorize(one, signature="(n)->()")(scores)
        return maxima - jnp.sum(targets * scores, axis=-1)

    return fenchel_young_loss
