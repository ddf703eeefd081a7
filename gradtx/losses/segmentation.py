"""Overlap losses for segmentation: the soft Dice loss per class, its Tversky generalisation
with separate weights on false positives and false negatives, and the generalised Dice loss
that weights each class by its inverse squared frequency.

Predictions and targets are laid out ``(batch, *spatial, classes)``; the class axis is the last.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.validation import concrete_value
from gradtx.losses._inputs import as_float, axis_of, same_shape

REDUCTIONS = ("mean", "sum", "none")
_GENERALIZED_EPS = 1e-7  # keeps the weight of a class absent from the targets finite


def _check_number(who: str, name: str, value: Any) -> None:
    if jnp.ndim(value) != 0:
        raise ValueError(f"{who}: {name} must be a number, got an array of shape {jnp.shape(value)}")
    number = concrete_value(value)
    if number is not None and not (np.isfinite(number) and number >= 0):
        raise ValueError(f"{who}: {name} must be a nonnegative number, got {number!r}")


def _with_class_axis(who: str, predictions: Any, targets: Any) -> tuple[jax.Array, jax.Array]:
    """Both as float arrays of one shape, a missing class axis (of size 1) added to one of them."""
    predictions = as_float(who, "predictions", predictions)
    targets = as_float(who, "targets", targets)
    if predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    elif targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    same_shape(who, "targets", targets, "predictions", predictions)
    if predictions.ndim == 0:
        raise ValueError(f"{who}: predictions must have a class axis (the last), got a scalar")
    return predictions, targets


def _per_class(who, predictions, targets, smooth, alpha, beta, activate, axis):
    """``1 - (I + smooth) / (I + alpha FP + beta FN + smooth)`` per class, summed over ``axis``."""
    for name, value in (("smooth", smooth), ("alpha", alpha), ("beta", beta)):
        _check_number(who, name, value)
    ndim = predictions.ndim
    if axis is None:
        axes = tuple(range(1, ndim - 1))
    else:
        axes = axis_of(who, axis, ndim)
        if ndim - 1 in axes:
            raise ValueError(f"{who}: axis {axis!r} includes the class axis (the last); the loss is taken per class")
    if activate and predictions.shape[-1] == 1:
        probs = jax.nn.sigmoid(predictions)  # one class: the probability of the foreground
    elif activate:
        probs = jax.nn.softmax(predictions, axis=-1)
    else:
        probs = predictions
    targets = targets.astype(probs.dtype)
    intersection = jnp.sum(probs * targets, axis=axes)
    predicted = jnp.sum(probs, axis=axes)
    actual = jnp.sum(targets, axis=axes)
    denominator = intersection + alpha * (predicted - intersection) + beta * (actual - intersection) + smooth
    return 1 - (intersection + smooth) / denominator


def _finish(who, losses, class_weights, ignore_background, reduction):
    classes = losses.shape[-1]
    if class_weights is not None:
        class_weights = as_float(who, "class_weights", class_weights)
        if class_weights.shape != (classes,):
            raise ValueError(
                f"{who}: class_weights has shape {class_weights.shape}; it must be ({classes},), one per class"
            )
        losses = losses * class_weights
    if ignore_background and classes > 1:
        losses = losses[..., 1:]
    if reduction == "mean":
        return jnp.mean(losses, axis=-1)
    if reduction == "sum":
        return jnp.sum(losses, axis=-1)
    return losses


def dice_loss(
    predictions: Any,
    targets: Any,
    *,
    class_weights: Any = None,
    smooth: Any = 1.0,
    alpha: Any = 0.5,
    beta: Any = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: Any = None,
) -> jax.Array:
    r"""The soft Dice loss of each class (Milletari et al., 2016, :arxiv:`1606.04797`), or with
    ``alpha`` and ``beta`` the Tversky loss (Salehi et al., 2017, :arxiv:`1706.05721`).

    With :math:`p` the predicted probabilities and :math:`t` the targets, summed over ``axis``,

    .. math::
        I_c = \sum_i p_{ic} t_{ic}, \qquad
        \ell_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s}

    where :math:`P_c = \sum_i p_{ic}` and :math:`T_c = \sum_i t_{ic}`, so that
    :math:`P_c - I_c` counts false positives and :math:`T_c - I_c` false negatives;
    :math:`\alpha = \beta = \tfrac12` is the Dice loss :math:`1 - (2I_c + 2s)/(P_c + T_c + 2s)`.
    The per-class losses are weighted, the background dropped if asked, then reduced over classes.

    Args:
        predictions: ``(batch, *spatial, classes)`` logits (or probabilities, see
            ``apply_softmax``); with one class, or with the class axis left out, the logit of
            the foreground.
        targets: shaped like ``predictions``: one-hot (or soft) targets; the class axis of size 1
            may be left out of either argument.
        class_weights: optional ``(classes,)`` weights, multiplying each class's loss.
        smooth: :math:`s \ge 0`, added to numerator and denominator.
        alpha: :math:`\alpha \ge 0`, the weight of false positives.
        beta: :math:`\beta \ge 0`, the weight of false negatives.
        apply_softmax: turn logits into probabilities: the softmax over classes, or the sigmoid
            for one class. False takes ``predictions`` as probabilities (unchecked).
        reduction: over the classes: ``"mean"``, ``"sum"`` or ``"none"`` (the per-class losses).
        ignore_background: leave out class 0 (when there is more than one class).
        axis: the axes summed over (not the class axis); None for all but the first and the last.

    Returns:
        ``predictions``' shape without ``axis`` and, unless ``reduction="none"``, without the
        class axis: ``(batch,)`` by default.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.segmentation import dice_loss
        >>> p = jnp.array([[[0.8, 0.2], [0.4, 0.6]]])  # one image of two pixels, two classes
        >>> t = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
        >>> loss = dice_loss(p, t, apply_softmax=False, smooth=0.0, reduction="none")
        >>> [round(x, 4) for x in loss[0].tolist()]  # 1 - 1.6/2.2 and 1 - 1.2/1.8
        [0.2727, 0.3333]
    """
    who = "dice_loss"
    predictions, targets = _with_class_axis(who, predictions, targets)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    losses = _per_class(who, predictions, targets, smooth, alpha, beta, apply_softmax, axis)
    return _finish(who, losses, class_weights, ignore_background, reduction)


def binary_dice_loss(predictions: Any, targets: Any, *, smooth: Any = 1.0, apply_sigmoid: bool = True) -> jax.Array:
    r"""The soft Dice loss of a foreground against the background, from one logit per pixel.

    .. math::
        \ell = 1 - \frac{2 \sum_i p_i t_i + 2s}{\sum_i p_i + \sum_i t_i + 2s},
        \qquad p_i = \sigma(z_i)

    summed over all axes but the first (Milletari et al., 2016, :arxiv:`1606.04797`):
    :func:`dice_loss` with one class.

    Args:
        predictions: ``(batch, *spatial)`` or ``(batch, *spatial, 1)`` logits :math:`z` (or
            probabilities, see ``apply_sigmoid``).
        targets: shaped like ``predictions``: 0/1 (or soft) targets :math:`t`.
        smooth: :math:`s \ge 0`.
        apply_sigmoid: turn logits into probabilities with the sigmoid; False takes
            ``predictions`` as probabilities.

    Returns:
        The loss of each example, shape ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.segmentation import binary_dice_loss
        >>> p, t = jnp.array([[0.5, 0.5]]), jnp.array([[1.0, 0.0]])
        >>> binary_dice_loss(p, t, smooth=0.0, apply_sigmoid=False)  # 1 - 2(0.5)/(1 + 1)
        Array([0.5], dtype=float32)
    """
    who = "binary_dice_loss"
    predictions = as_float(who, "predictions", predictions)
    targets = as_float(who, "targets", targets)
    if predictions.ndim == targets.ndim and (predictions.ndim == 0 or predictions.shape[-1] != 1):
        predictions, targets = predictions[..., None], targets[..., None]
    predictions, targets = _with_class_axis(who, predictions, targets)
    losses = _per_class(who, predictions, targets, smooth, 0.5, 0.5, apply_sigmoid, None)
    return _finish(who, losses, None, False, "mean")


def multiclass_generalized_dice_loss(
    predictions: Any,
    targets: Any,
    *,
    smooth: Any = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    r"""The Dice loss with each class weighted by its inverse squared frequency in the targets, in
    the manner of the generalised Dice loss of Sudre et al., 2017, :arxiv:`1707.03237`.

    .. math::
        w_c \propto \frac{1}{F_c^2 + 10^{-7}}, \quad \sum_c w_c = C, \qquad
        \ell = \operatorname{mean}_{b, c}\, w_c \ell_{bc}

    where :math:`F_c` is the total target mass of class :math:`c` over the whole batch and
    :math:`\ell_{bc}` is the Dice loss of :func:`dice_loss` (:math:`\alpha = \beta = \tfrac12`, summed
    over the spatial axes); with ``ignore_background`` the weights are found over all
    :math:`C` classes and class 0 is then left out of the mean.

    Args:
        predictions: ``(batch, *spatial, classes)`` logits (or probabilities, see
            ``apply_softmax``).
        targets: shaped like ``predictions``: one-hot (or soft) targets.
        smooth: :math:`s \ge 0`, added to numerator and denominator of each Dice ratio.
        apply_softmax: turn logits into probabilities with the softmax over classes (the
            sigmoid for one class); False takes ``predictions`` as probabilities.
        ignore_background: leave out class 0 (when there is more than one class).

    Returns:
        The mean over the batch and the classes, a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.segmentation import multiclass_generalized_dice_loss
        >>> t = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
        >>> multiclass_generalized_dice_loss(t, t, smooth=0.0, apply_softmax=False)  # a perfect prediction
        Array(0., dtype=float32)
    """
    who = "multiclass_generalized_dice_loss"
    predictions = as_float(who, "predictions", predictions)
    targets = as_float(who, "targets", targets)
    same_shape(who, "targets", targets, "predictions", predictions)
    if predictions.ndim == 0:
        raise ValueError(f"{who}: predictions must have a class axis (the last), got a scalar")
    losses = _per_class(who, predictions, targets, smooth, 0.5, 0.5, apply_softmax, None)
    frequencies = jnp.sum(targets, axis=tuple(range(targets.ndim - 1))).astype(losses.dtype)
    weights = 1 / (frequencies**2 + _GENERALIZED_EPS)
    weights = weights * (weights.shape[0] / jnp.sum(weights))
    return jnp.mean(_finish(who, losses, weights, ignore_background, "none"))
