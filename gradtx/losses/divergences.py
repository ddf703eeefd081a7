r"""Kullback-Leibler divergences between a target distribution and a predicted one given by its
logarithm (the output of ``log_softmax``), with the convention :math:`0 \log 0 = 0`.

Each reduces ``axis`` (the distribution's support) and returns one divergence per example.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._inputs import as_float, axis_of, mask, same_shape


def _prepared(who: str, log_predictions: Any, targets: Any, name: str, axis: Any, where: Any):
    log_predictions, targets = as_float(who, "log_predictions", log_predictions), as_float(who, name, targets)
    same_shape(who, name, targets, "log_predictions", log_predictions)
    axes = axis_of(who, axis, log_predictions.ndim)
    return log_predictions, targets, axes, mask(who, where, log_predictions.shape, "log_predictions")


def _reduce(terms: jax.Array, axes: tuple[int, ...], where: jax.Array | None) -> jax.Array:
    return jnp.sum(terms if where is None else jnp.where(where, terms, 0.0), axis=axes)


def _xlogy_over(targets: jax.Array, log_targets_minus: jax.Array) -> jax.Array:
    """``t * (log t - log q)`` with 0 where ``t`` is 0 (and a zero gradient there)."""
    positive = targets > 0
    safe = jnp.where(positive, targets, 1.0)
    return jnp.where(positive, targets * (jnp.log(safe) - log_targets_minus), 0.0)


def kl_divergence(
    log_predictions: Any, targets: Any, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""The Kullback-Leibler divergence of the predictions from the targets.

    .. math:: D_{KL}(t \,\|\, q) = \sum_k t_k (\log t_k - \log q_k)

    Args:
        log_predictions: ``log q``, the log-probabilities of the prediction (e.g. ``log_softmax``).
        targets: the probabilities ``t``, shaped like ``log_predictions``.
        axis: the axis (or axes; None for all) over which the distributions sum to one.
        where: optional boolean mask shaped like ``log_predictions``: the entries to include.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.kl_divergence(jnp.log(jnp.array([0.5, 0.5])), jnp.array([1.0, 0.0]))
        Array(0.6931472, dtype=float32)
    """
    log_q, t, axes, where = _prepared("kl_divergence", log_predictions, targets, "targets", axis, where)
    return _reduce(_xlogy_over(t, log_q), axes, where)


def kl_divergence_with_log_targets(
    log_predictions: Any, log_targets: Any, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""``kl_divergence`` with the targets given by their logarithm (a target of probability 0 is a
    log-target of ``-inf``, which contributes 0).

    .. math:: D_{KL}(t \,\|\, q) = \sum_k e^{\log t_k} (\log t_k - \log q_k)

    Args:
        log_predictions: ``log q``, the log-probabilities of the prediction.
        log_targets: ``log t``, shaped like ``log_predictions``.
        axis: the axis (or axes; None for all) over which the distributions sum to one.
        where: optional boolean mask shaped like ``log_predictions``: the entries to include.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> log_q = jnp.log(jnp.array([0.5, 0.5]))
        >>> gradtx.losses.kl_divergence_with_log_targets(log_q, jnp.array([0.0, -jnp.inf]))
        Array(0.6931472, dtype=float32)
    """
    who = "kl_divergence_with_log_targets"
    log_q, log_t, axes, where = _prepared(who, log_predictions, log_targets, "log_targets", axis, where)
    possible = ~jnp.isneginf(log_t)
    safe = jnp.where(possible, log_t, 0.0)
    return _reduce(jnp.where(possible, jnp.exp(safe) * (safe - log_q), 0.0), axes, where)


def generalized_kl_divergence(
    log_predictions: Any, targets: Any, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""The generalized KL divergence, for nonnegative measures that need not sum to one: the
    Bregman divergence of :math:`\sum x \log x - x`, nonnegative and convex in ``log q``.

    .. math:: D(t \,\|\, q) = \sum_k t_k (\log t_k - \log q_k) - t_k + q_k

    For normalised ``t`` and ``q`` it equals ``kl_divergence``.

    Args:
        log_predictions: ``log q``, the logarithm of the predicted measure.
        targets: the target measure ``t >= 0``, shaped like ``log_predictions``.
        axis: the axis (or axes; None for all) to sum over.
        where: optional boolean mask shaped like ``log_predictions``: the entries to include.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> gradtx.losses.generalized_kl_divergence(jnp.log(jnp.array([1.0, 1.0])), jnp.array([2.0, 0.0]))
        Array(1.3862944, dtype=float32)
    """
    who = "generalized_kl_divergence"
    log_q, t, axes, where = _prepared(who, log_predictions, targets, "targets", axis, where)
    return _reduce(_xlogy_over(t, log_q) - t + jnp.exp(log_q), axes, where)


def convex_kl_divergence(
    log_predictions: Any, targets: Any, axis: int | tuple[int, ...] | None = -1, where: Any = None
) -> jax.Array:
    r"""Deprecated in Optax: the same function as ``generalized_kl_divergence``, under its old name.

    .. math:: D(t \,\|\, q) = \sum_k t_k (\log t_k - \log q_k) - t_k + q_k

    Args:
        log_predictions: ``log q``, the logarithm of the predicted measure.
        targets: the target measure ``t >= 0``, shaped like ``log_predictions``.
        axis: the axis (or axes; None for all) to sum over.
        where: optional boolean mask shaped like ``log_predictions``: the entries to include.

    Example:
        >>> import warnings
        >>> import jax.numpy as jnp
        >>> import gradtx
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     gradtx.losses.convex_kl_divergence(jnp.zeros(2), jnp.ones(2))
        Array(0., dtype=float32)
    """
    warnings.warn(
        "convex_kl_divergence is deprecated: use generalized_kl_divergence, the same function",
        DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
