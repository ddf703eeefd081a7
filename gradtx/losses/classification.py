"""Cross-entropy losses for classification: softmax over classes (soft or integer labels), the
sigmoid for independent binary labels, and the focal and poly variants that reweight them.

Each returns one loss per example (the class axis reduced, or nothing reduced for the elementwise
sigmoid losses), never a mean over the batch: take ``jnp.mean`` of the result as the training loss.
Logits are shifted by their maximum before ``exp``, so logits of +-1e4 in float32 give finite
losses and gradients. A ``where`` mask leaves classes out: the softmax is taken over the classes
where it is True, and the others contribute nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.validation import check_nonnegative, check_range
from gradtx.losses._inputs import as_float, as_integer, axis_of, labels_in_range, mask, same_shape


def masked_log_softmax(logits: jax.Array, axes: tuple[int, ...], where: jax.Array | None) -> jax.Array:
    """``log softmax(logits)`` over ``axes``, taken over the entries where ``where`` is True;
    the others (and every entry of a row with none included) are 0, so products with them vanish.

    Args:
        logits: unnormalised scores; a logit of ``-inf`` is a class of probability 0.
        axes: the class axes, non-negative and sorted.
        where: the classes to include, shaped like ``logits``, or None for all.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.classification import masked_log_softmax
        >>> jnp.exp(masked_log_softmax(jnp.array([0.0, 0.0, 5.0]), (0,), jnp.array([True, True, False])))
        Array([0.5, 0.5, 1. ], dtype=float32)
    """
    possible = ~jnp.isneginf(logits)  # a logit of -inf is a class of probability 0
    included = possible if where is None else where & possible
    masked = jnp.where(included, logits, -jnp.inf)
    top = jnp.max(masked, axis=axes, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    shifted = jnp.where(included, masked - top, -jnp.inf)
    total = jnp.sum(jnp.exp(shifted), axis=axes, keepdims=True)
    log_probs = shifted - jnp.log(jnp.where(total > 0, total, 1.0))
    return jnp.where(included, log_probs, 0.0)


def softmax_cross_entropy(
    logits: Any, labels: Any, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""Cross-entropy between ``labels``, a distribution over classes, and ``softmax(logits)``.

    .. math:: \ell = -\sum_k y_k \log \operatorname{softmax}(z)_k
       = \operatorname{logsumexp}(z) \sum_k y_k - \sum_k y_k z_k

    Args:
        logits: unnormalised scores ``z``, the classes along ``axis``.
        labels: ``y``, shaped like ``logits``: probabilities (one-hot or smoothed) over the classes.
        axis: the class axis (or axes; None for all).
        where: optional boolean mask shaped like ``logits``: the classes to include; the softmax is
            taken over them only and the others contribute nothing.

    Returns:
        The loss per example: ``logits``' shape without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.softmax_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]))
        Array([0.6931472], dtype=float32)
    """
    who = "softmax_cross_entropy"
    logits, labels = as_float(who, "logits", logits), as_float(who, "labels", labels)
    same_shape(who, "labels", labels, "logits", logits)
    axes = axis_of(who, axis, logits.ndim)
    return _cross_entropy(logits, labels, axes, mask(who, where, logits.shape, "logits"))


def _cross_entropy(logits: jax.Array, labels: jax.Array, axes: tuple[int, ...], where: jax.Array | None) -> jax.Array:
    """``-sum(y log softmax(z))`` over the included classes; label mass on a logit of ``-inf`` is
    an impossible event and gives ``+inf``."""
    log_probs = masked_log_softmax(logits, axes, where)
    impossible = jnp.isneginf(logits) & (labels > 0)
    if where is not None:
        impossible = impossible & where
    terms = jnp.where(impossible, -jnp.inf, labels * log_probs)
    return -jnp.sum(terms, axis=axes)


def safe_softmax_cross_entropy(logits: Any, labels: Any) -> jax.Array:
    r"""``softmax_cross_entropy`` over the last axis, for logits that may be ``-inf``: a class with
    logit ``-inf`` (a class masked out by the model) and label 0 contributes 0, not NaN.

    .. math:: \ell = -\sum_{k:\, y_k > 0} y_k \log \operatorname{softmax}(z)_k

    gradtx's ``softmax_cross_entropy`` is already safe in this sense (and gives ``+inf`` when a label
    puts mass on a class of logit ``-inf``); this name is kept for code written for Optax, where the
    plain one gives NaN.

    Args:
        logits: unnormalised scores, the classes along the last axis; ``-inf`` allowed.
        labels: probabilities over the classes, shaped like ``logits``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> logits = jnp.array([[-jnp.inf, 0.0, 0.0]])
        >>> gradtx.losses.safe_softmax_cross_entropy(logits, jnp.array([[0.0, 0.5, 0.5]]))
        Array([0.6931472], dtype=float32)
    """
    who = "safe_softmax_cross_entropy"
    logits, labels = as_float(who, "logits", logits), as_float(who, "labels", labels)
    same_shape(who, "labels", labels, "logits", logits)
    if logits.ndim == 0:
        raise ValueError(f"{who}: logits must have a class axis, got a scalar")
    return _cross_entropy(logits, labels, (logits.ndim - 1,), None)


def softmax_cross_entropy_with_integer_labels(
    logits: Any, labels: Any, axis: int | tuple[int, ...] = -1, where: Any = None
) -> jax.Array:
    r"""Cross-entropy of ``softmax(logits)`` with integer class labels: ``softmax_cross_entropy``
    with one-hot labels, without building them.

    .. math:: \ell = \operatorname{logsumexp}(z) - z_y

    A label outside ``[0, classes)`` raises when the labels are concrete and gives NaN when they are
    traced under ``jit`` (unless ``where`` leaves that example out).

    Args:
        logits: unnormalised scores, the classes along ``axis`` (several axes are flattened into one
            class index, in C order).
        labels: integer class indices, shaped like ``logits`` without ``axis``.
        axis: the class axis or axes.
        where: optional boolean mask, either shaped like ``logits`` (the classes to include, as in
            ``softmax_cross_entropy``: an example whose label is left out contributes 0) or shaped like
            ``labels`` (the examples to include; the others give 0).

    Returns:
        The loss per example, shaped like ``labels``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> loss = gradtx.losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 2]))
        >>> print(loss.round(4))
        [0.2395 1.0986]
    """
    who = "softmax_cross_entropy_with_integer_labels"
    logits, labels = as_float(who, "logits", logits), as_integer(who, "labels", labels)
    axes = axis_of(who, axis, logits.ndim)
    batch_axes = tuple(a for a in range(logits.ndim) if a not in axes)
    batch_shape = tuple(logits.shape[a] for a in batch_axes)
    if labels.shape != batch_shape:
        raise ValueError(
            f"{who}: labels has shape {labels.shape}; for logits of shape {logits.shape} with class axis "
            f"{axis!r} it must be {batch_shape}"
        )
    classes = int(np.prod([logits.shape[a] for a in axes]))
    labels_in_range(who, labels, classes)
    flat = jnp.transpose(logits, batch_axes + axes).reshape(batch_shape + (classes,))
    per_class = per_example = None
    if where is not None:
        where = jnp.asarray(where)
        if where.shape == logits.shape and where.dtype == bool:
            per_class = jnp.transpose(where, batch_axes + axes).reshape(flat.shape)
        else:
            per_example = mask(who, where, labels.shape, "labels (or logits)")
    log_probs = masked_log_softmax(flat, (flat.ndim - 1,), per_class)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1, mode="fill", fill_value=jnp.nan)[..., 0]
    if per_class is not None:
        label_included = jnp.take_along_axis(per_class, labels[..., None], axis=-1, mode="fill", fill_value=True)
        picked = jnp.where(label_included[..., 0], picked, 0.0)
    loss = -picked
    return loss if per_example is None else jnp.where(per_example, loss, 0.0)


def sigmoid_binary_cross_entropy(logits: Any, labels: Any) -> jax.Array:
    r"""Cross-entropy of independent binary labels with ``sigmoid(logits)``, element by element.

    .. math:: \ell = -y \log \sigma(z) - (1 - y) \log(1 - \sigma(z))
       = -y \log \sigma(z) - (1 - y) \log \sigma(-z)

    Args:
        logits: the log-odds ``z``.
        labels: ``y`` in ``[0, 1]`` (hard or soft), shaped like ``logits``.

    Returns:
        The loss of each element, shaped like ``logits``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.sigmoid_binary_cross_entropy(jnp.array([0.0, 1e4]), jnp.array([1.0, 0.0]))
        Array([6.931472e-01, 1.000000e+04], dtype=float32)
    """
    who = "sigmoid_binary_cross_entropy"
    logits = as_float(who, "logits", logits)
    labels = as_float(who, "labels", labels).astype(logits.dtype)
    same_shape(who, "labels", labels, "logits", logits)
    return -labels * jax.nn.log_sigmoid(logits) - (1 - labels) * jax.nn.log_sigmoid(-logits)


def sigmoid_focal_loss(logits: Any, labels: Any, *, alpha: Any = None, gamma: Any = 2.0) -> jax.Array:
    r"""The focal loss (Lin et al., 2017, :arxiv:`1708.02002`): the sigmoid cross-entropy scaled
    down on the elements already classified well.

    .. math:: \ell = \alpha_t (1 - p_t)^\gamma \, \mathrm{BCE}(z, y), \quad
       p_t = y \sigma(z) + (1 - y)(1 - \sigma(z)), \quad \alpha_t = y \alpha + (1 - y)(1 - \alpha)

    With ``alpha=None`` there is no class weight (``alpha_t = 1``); ``gamma = 0`` gives the cross-entropy.

    Args:
        logits: the log-odds ``z``.
        labels: ``y`` in ``[0, 1]``, shaped like ``logits``.
        alpha: the weight of the positive class, in ``[0, 1]``, or None.
        gamma: the focusing exponent, ``>= 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.sigmoid_focal_loss(jnp.array([0.0]), jnp.array([1.0]), gamma=1.0)
        Array([0.3465736], dtype=float32)
    """
    who = "sigmoid_focal_loss"
    check_nonnegative(f"{who}: gamma", gamma)
    if alpha is not None:
        check_range(f"{who}: alpha", alpha, 0.0, 1.0)
    logits = as_float(who, "logits", logits)
    labels = as_float(who, "labels", labels).astype(logits.dtype)
    same_shape(who, "labels", labels, "logits", logits)
    cross_entropy = -labels * jax.nn.log_sigmoid(logits) - (1 - labels) * jax.nn.log_sigmoid(-logits)
    one_minus_p_t = labels * jax.nn.sigmoid(-logits) + (1 - labels) * jax.nn.sigmoid(logits)
    loss = cross_entropy * one_minus_p_t**gamma
    if alpha is not None:
        loss = (labels * alpha + (1 - labels) * (1 - alpha)) * loss
    return loss


def poly_loss_cross_entropy(
    logits: Any, labels: Any, *, epsilon: Any = 2.0, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""Poly-1 loss (Leng et al., 2022, :arxiv:`2204.12511`): the softmax cross-entropy plus
    ``epsilon`` times the first term of its expansion in ``1 - p_t``.

    .. math:: \ell = \mathrm{CE}(z, y) + \epsilon (1 - p_t), \quad p_t = \sum_k y_k \operatorname{softmax}(z)_k

    Args:
        logits: unnormalised scores, the classes along ``axis``.
        labels: probabilities over the classes, shaped like ``logits``.
        epsilon: the weight of the polynomial term (``-1`` removes the first term: ``0`` gives the
            cross-entropy).
        axis: the class axis (or axes; None for all).
        where: optional boolean mask shaped like ``logits``, the classes to include (as in
            ``softmax_cross_entropy``); a row with none included gives 0.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.poly_loss_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]), epsilon=1.0)
        Array([1.1931472], dtype=float32)
    """
    who = "poly_loss_cross_entropy"
    logits, labels = as_float(who, "logits", logits), as_float(who, "labels", labels)
    same_shape(who, "labels", labels, "logits", logits)
    axes = axis_of(who, axis, logits.ndim)
    included = mask(who, where, logits.shape, "logits")
    keep = ~jnp.isneginf(logits) if included is None else included & ~jnp.isneginf(logits)
    probs = jnp.where(keep, jnp.exp(masked_log_softmax(logits, axes, included)), 0.0)
    p_t = jnp.sum(labels * probs, axis=axes)
    loss = _cross_entropy(logits, labels, axes, included) + epsilon * (1 - p_t)
    return loss if included is None else jnp.where(jnp.any(included, axis=axes), loss, 0.0)


def smooth_labels(labels: Any, alpha: Any, *, axis: int | tuple[int, ...] | None = -1, where: Any = None) -> jax.Array:
    r"""Label smoothing (Szegedy et al., 2016, :arxiv:`1512.00567`): mix the labels with the
    uniform distribution over the ``K`` classes.

    .. math:: y' = (1 - \alpha) y + \alpha / K

    Args:
        labels: one-hot (or soft) labels, the classes along ``axis``.
        alpha: the smoothing weight, in ``[0, 1]``.
        axis: the class axis (or axes; None for all).
        where: optional boolean mask shaped like ``labels``: ``K`` counts only the classes where it
            is True (at least 1); every entry is mixed.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.smooth_labels(jnp.array([0.0, 1.0]), 0.5)
        Array([0.25, 0.75], dtype=float32)
    """
    who = "smooth_labels"
    check_range(f"{who}: alpha", alpha, 0.0, 1.0)
    labels = as_float(who, "labels", labels)
    axes = axis_of(who, axis, labels.ndim)
    included = mask(who, where, labels.shape, "labels")
    if included is None:
        classes: Any = int(np.prod([labels.shape[a] for a in axes]))
    else:
        classes = jnp.maximum(jnp.sum(included, axis=axes, keepdims=True), 1).astype(labels.dtype)
    return (1.0 - alpha) * labels + alpha / classes
