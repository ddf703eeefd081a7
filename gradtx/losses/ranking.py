"""Listwise ranking losses: each list of items (the last axis) is scored as a whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._inputs import as_float, mask, same_shape


def _log_softmax(logits: jax.Array, included: jax.Array) -> jax.Array:
    """``log softmax`` over the last axis, taken over the included items only; 0 at the others."""
    masked = jnp.where(included, logits, -jnp.inf)
    top = jnp.max(masked, axis=-1, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    shifted = jnp.where(included, logits - top, -jnp.inf)
    total = jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)
    return jnp.where(included, shifted - jnp.log(jnp.where(total > 0, total, 1.0)), 0.0)


def ranking_softmax_loss(
    logits: Any,
    labels: Any,
    *,
    where: Any = None,
    weights: Any = None,
    reduce_fn: Callable[..., Any] | None = jnp.mean,
) -> jax.Array:
    r"""The listwise softmax cross-entropy of the relevance labels and the softmax of the scores.

    .. math::
        \ell(s, y) = -\sum_{i} w_i\, y_i \log \frac{\exp s_i}{\sum_{j} \exp s_j}

    over the items of a list (the last axis) for which ``where`` holds, the sums running over
    those items only; the labels are used as given, not normalised to sum to 1. The loss of
    ListNet with the top-one probability (Cao et al., 2007, :doi:`10.1145/1273496.1273513`),
    analysed for learning to rank by Bruch et al., 2019, :doi:`10.1145/3341981.3344221`.

    Args:
        logits: ``(..., list_size)`` scores :math:`s` of the items.
        labels: shaped like ``logits``: the relevance :math:`y` of each item (graded or 0/1).
        where: optional boolean mask shaped like ``logits``, True at the items to rank; the others
            change nothing, and a list with no item left has loss 0 and is left out of the reduction.
        weights: optional :math:`w`, shaped like ``logits``: a weight for each item (1 without).
        reduce_fn: called as ``reduce_fn(losses, where=valid)`` on the loss of each list, where
            ``valid`` is None without ``where`` and otherwise True for the lists that keep an item
            (``jnp.mean`` and ``jnp.sum`` take this keyword); ``None`` returns the loss of each list.

    Returns:
        ``reduce_fn`` of the per-list losses (a scalar with the default), or the per-list losses,
        shape ``logits.shape[:-1]``, with ``reduce_fn=None``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.ranking import ranking_softmax_loss
        >>> logits, labels = jnp.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]), jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> [round(x, 4) for x in ranking_softmax_loss(logits, labels, reduce_fn=None).tolist()]  # log 3, about 2 * 9
        [1.0986, 18.0005]
        >>> where = jnp.array([[True, True, True], [False, True, True]])  # leave out the item scored 9
        >>> [round(x, 4) for x in ranking_softmax_loss(logits, labels, where=where, reduce_fn=None).tolist()]  # 2 log 2
        [1.0986, 1.3863]
    """
    who = "ranking_softmax_loss"
    logits = as_float(who, "logits", logits)
    labels = as_float(who, "labels", labels)
    same_shape(who, "labels", labels, "logits", logits)
    if logits.ndim == 0:
        raise ValueError(f"{who}: logits must have a list axis (the last), got a scalar")
    where = mask(who, where, logits.shape, "logits")
    if weights is not None:
        weights = as_float(who, "weights", weights)
        same_shape(who, "weights", weights, "logits", logits)
        labels = labels * weights
    if reduce_fn is not None and not callable(reduce_fn):
        raise TypeError(f"{who}: reduce_fn must be a function or None, got {type(reduce_fn).__name__}")
    possible = ~jnp.isneginf(logits)  # a score of -inf is an item of probability 0
    included = possible if where is None else possible & where
    terms = jnp.where(included, labels * _log_softmax(logits, included), 0.0)
    # relevance placed on an item of probability 0 is an impossible event
    impossible = ~possible & (labels != 0) if where is None else ~possible & (labels != 0) & where
    losses = jnp.where(jnp.any(impossible, axis=-1), jnp.inf, -jnp.sum(terms, axis=-1))
    if reduce_fn is None:
        return losses
    return reduce_fn(losses, where=None if where is None else jnp.any(where, axis=-1))
