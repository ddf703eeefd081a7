"""Margin losses for linear classifiers: the hinge (support vector machines) and the perceptron,
binary with labels in {-1, 1} and multiclass with integer labels.

The binary ones act element by element; the multiclass ones reduce the last (class) axis.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._inputs import as_float, as_integer, same_shape


def _binary_margin(who: str, predictor_outputs: Any, targets: Any, margin: float) -> jax.Array:
    """:math:`\\max(0, m - y f)`, the inputs checked."""
    outputs, targets = as_float(who, "predictor_outputs", predictor_outputs), as_float(who, "targets", targets)
    same_shape(who, "targets", targets, "predictor_outputs", outputs)
    return jnp.maximum(0, margin - outputs * targets)


def hinge_loss(predictor_outputs: Any, targets: Any) -> jax.Array:
    r"""The hinge loss of a binary classifier, element by element.

    .. math:: \ell = \max(0, 1 - y f), \quad y \in \{-1, 1\}

    Args:
        predictor_outputs: the classifier's scores ``f``.
        targets: the labels ``y``, -1 or 1, shaped like ``predictor_outputs``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.hinge_loss(jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 1.0, 1.0]))
        Array([0.5, 0. , 2. ], dtype=float32)
    """
    return _binary_margin("hinge_loss", predictor_outputs, targets, 1.0)


def perceptron_loss(predictor_outputs: Any, targets: Any) -> jax.Array:
    r"""The perceptron loss (Rosenblatt's rule as a loss), element by element: zero once the sign
    is right, whatever the margin.

    .. math:: \ell = \max(0, -y f), \quad y \in \{-1, 1\}

    Args:
        predictor_outputs: the classifier's scores ``f``.
        targets: the labels ``y``, -1 or 1, shaped like ``predictor_outputs``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.perceptron_loss(jnp.array([0.5, -2.0]), jnp.array([1.0, 1.0]))
        Array([0., 2.], dtype=float32)
    """
    return _binary_margin("perceptron_loss", predictor_outputs, targets, 0.0)


def _true_scores(who: str, scores: Any, labels: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    scores, labels = as_float(who, "scores", scores), as_integer(who, "labels", labels)
    if scores.ndim == 0 or labels.shape != scores.shape[:-1]:
        raise ValueError(
            f"{who}: labels has shape {labels.shape}; for scores of shape {scores.shape} (classes on the "
            f"last axis) it must be {scores.shape[:-1]}"
        )
    one_hot = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    return scores, one_hot, jnp.sum(scores * one_hot, axis=-1)


def multiclass_hinge_loss(scores: Any, labels: Any) -> jax.Array:
    r"""The multiclass hinge loss of Crammer and Singer: the true class must beat every
    other by a margin of 1.

    .. math:: \ell = \max_k \left(s_k + [k \neq y]\right) - s_y

    Args:
        scores: one score per class, the classes on the last axis.
        labels: integer class indices, shaped like ``scores`` without its last axis.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.multiclass_hinge_loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([2]))
        Array([0.], dtype=float32)
    """
    scores, one_hot, true = _true_scores("multiclass_hinge_loss", scores, labels)
    return jnp.max(scores + 1 - one_hot, axis=-1) - true


def multiclass_perceptron_loss(scores: Any, labels: Any) -> jax.Array:
    r"""The multiclass perceptron loss: how far the true class's score is below the best one.

    .. math:: \ell = \max_k s_k - s_y

    Args:
        scores: one score per class, the classes on the last axis.
        labels: integer class indices, shaped like ``scores`` without its last axis.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.multiclass_perceptron_loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([0]))
        Array([2.], dtype=float32)
    """
    scores, _, true = _true_scores("multiclass_perceptron_loss", scores, labels)
    return jnp.max(scores, axis=-1) - true
