"""Regularizers that act on the updates: decoupled weight decay."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from gradtx import tree as _tree
from gradtx.base import GradientTransformation, Params, ScalarOrSchedule
from gradtx.combine import masked
from gradtx.hyperparams import Hyperparams, check_nonnegative
from gradtx.numerics import safe_increment, zero_count


class AddDecayedWeightsState(NamedTuple):
    """``add_decayed_weights``: the step count (for a schedule) and the decay rate."""

    count: jax.Array
    hyperparams: dict[str, Any]


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    r"""Add :math:`\lambda\,\theta` to the updates: weight decay, decoupled from the gradient.

    Placed before the learning rate in a chain, it gives AdamW's
    :math:`\theta \leftarrow \theta - \eta(u + \lambda\theta)` (Loshchilov & Hutter, 2019).
    ``weight_decay`` is a number or a schedule; ``mask`` (a tree of bools or a
    function of the parameters) selects the leaves to decay.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.add_decayed_weights(0.1)
        >>> params = jnp.array([10.0])
        >>> tx.update(jnp.zeros(1), tx.init(params), params)[0].tolist()
        [1.0]
    """
    check_nonnegative("weight_decay", weight_decay)
    hp = Hyperparams(weight_decay=weight_decay)

    def init(params):
        return AddDecayedWeightsState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(params, updates, "the parameters", "the updates")
        wd = hp.values(state.hyperparams)["weight_decay"]
        decayed = jax.tree.map(lambda u, p: (u + wd.astype(u.dtype) * p).astype(u.dtype), updates, params)
        count = safe_increment(state.count)
        return decayed, AddDecayedWeightsState(count, hp.advance(state.hyperparams, count))

    tx = GradientTransformation(init, update)
    return tx if mask is None else masked(tx, mask)
