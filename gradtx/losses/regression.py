"""Regression losses, element by element (squared error, its half, Huber, log-cosh), and the
cosine similarity and distance between vectors along an axis.

``targets=None`` means zero targets, so ``l2_loss(x)`` is half the square of ``x``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core.validation import check_nonnegative, check_positive
from gradtx.losses._inputs import as_float, axis_of, mask, same_shape


def _errors(who: str, predictions: Any, targets: Any) -> jax.Array:
    predictions = as_float(who, "predictions", predictions)
    if targets is None:
        return predictions
    targets = as_float(who, "targets", targets)
    same_shape(who, "targets", targets, "predictions", predictions)
    return predictions - targets.astype(predictions.dtype)


def squared_error(predictions: Any, targets: Any = None) -> jax.Array:
    r"""The squared error, element by element: :math:`\ell = (p - t)^2`.

    Args:
        predictions: the predictions ``p``.
        targets: the targets ``t``, shaped like ``predictions``; None for zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.squared_error(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.5]))
        Array([1.  , 2.25], dtype=float32)
    """
    return jnp.square(_errors("squared_error", predictions, targets))


def l2_loss(predictions: Any, targets: Any = None) -> jax.Array:
    r"""Half the squared error, element by element: :math:`\ell = \tfrac12 (p - t)^2`, whose
    gradient is the error itself.

    Args:
        predictions: the predictions ``p``.
        targets: the targets ``t``, shaped like ``predictions``; None for zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.l2_loss(jnp.array([1.0, 2.0]))
        Array([0.5, 2. ], dtype=float32)
    """
    return 0.5 * jnp.square(_errors("l2_loss", predictions, targets))


def huber_loss(predictions: Any, targets: Any = None, *, delta: Any = 1.0) -> jax.Array:
    r"""The Huber loss (Huber, 1964, :doi:`10.1214/aoms/1177703732`): quadratic for errors up to
    ``delta``, linear beyond, so outliers pull with a bounded force.

    .. math:: \ell = \begin{cases} \tfrac12 e^2 & |e| \le \delta \\
       \delta (|e| - \tfrac12 \delta) & |e| > \delta \end{cases}, \quad e = p - t

    Args:
        predictions: the predictions ``p``.
        targets: the targets ``t``, shaped like ``predictions``; None for zeros.
        delta: where the loss turns linear, ``> 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.huber_loss(jnp.array([0.5, 3.0]))
        Array([0.125, 2.5  ], dtype=float32)
    """
    check_positive("huber_loss: delta", delta)
    magnitude = jnp.abs(_errors("huber_loss", predictions, targets))
    quadratic = jnp.minimum(magnitude, delta)  # 0.5 q^2 + delta (|e| - q) is both branches at once
    return 0.5 * jnp.square(quadratic) + delta * (magnitude - quadratic)


def log_cosh(predictions: Any, targets: Any = None) -> jax.Array:
    r"""The log-cosh loss, element by element: about :math:`\tfrac12 e^2` for small errors and
    :math:`|e| - \log 2` for large ones, computed without overflow as
    :math:`\ell = \operatorname{logaddexp}(e, -e) - \log 2`.

    Args:
        predictions: the predictions ``p``.
        targets: the targets ``t``, shaped like ``predictions``; None for zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> print(gradtx.losses.log_cosh(jnp.array([0.0, 1e4])))
        [   0.    9999.307]
    """
    errors = _errors("log_cosh", predictions, targets)
    return jnp.logaddexp(errors, -errors) - jnp.log(2.0).astype(errors.dtype)


def cosine_similarity(
    predictions: Any, targets: Any, *, epsilon: Any = 0.0, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""The cosine of the angle between ``predictions`` and ``targets`` along ``axis``.

    .. math:: s = \frac{\langle p, t \rangle}{\max(\|p\|, \epsilon) \max(\|t\|, \epsilon)}

    A zero vector has no direction: its similarity is 0 (with a zero gradient), also when
    ``epsilon`` is 0.

    Args:
        predictions: the vectors ``p``, along ``axis``.
        targets: the vectors ``t``, shaped like ``predictions``.
        epsilon: a floor on each norm, ``>= 0``.
        axis: the vector axis (or axes; None for all).
        where: optional boolean mask shaped like ``predictions``: the components to include.

    Returns:
        One similarity per vector: the shape without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]))
        Array([0.70710677], dtype=float32)
    """
    who = "cosine_similarity"
    check_nonnegative(f"{who}: epsilon", epsilon)
    predictions, targets = as_float(who, "predictions", predictions), as_float(who, "targets", targets)
    same_shape(who, "targets", targets, "predictions", predictions)
    axes = axis_of(who, axis, predictions.ndim)
    included = mask(who, where, predictions.shape, "predictions")
    if included is not None:
        predictions, targets = jnp.where(included, predictions, 0.0), jnp.where(included, targets, 0.0)

    def unit(x: jax.Array) -> jax.Array:
        squares = jnp.sum(jnp.square(x), axis=axes, keepdims=True)
        positive = squares > 0
        norm = jnp.sqrt(jnp.where(positive, squares, 1.0))  # no NaN gradient at the zero vector
        return jnp.where(positive, x / jnp.maximum(norm, epsilon), 0.0)

    return jnp.sum(unit(predictions) * unit(targets), axis=axes)


def cosine_distance(
    predictions: Any, targets: Any, *, epsilon: Any = 0.0, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""One minus the cosine similarity: 0 for vectors pointing the same way, 2 for opposite ones.

    .. math:: d = 1 - \frac{\langle p, t \rangle}{\max(\|p\|, \epsilon) \max(\|t\|, \epsilon)}

    Args:
        predictions: the vectors ``p``, along ``axis``.
        targets: the vectors ``t``, shaped like ``predictions``.
        epsilon: a floor on each norm, ``>= 0``.
        axis: the vector axis (or axes; None for all).
        where: optional boolean mask shaped like ``predictions``: the components to include.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[-2.0, 0.0]]))
        Array([2.], dtype=float32)
    """
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)
