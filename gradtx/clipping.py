"""Clipping: bounding each update, or the norm of all updates together."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import tree as _tree
from gradtx.base import GradientTransformation
from gradtx.hyperparams import Hyperparams, check_positive


class ClipState(NamedTuple):
    """A clipping transform's state: its threshold, readable by name."""

    hyperparams: dict[str, Any]


def clip(max_delta: float) -> GradientTransformation:
    r"""Clip every element to :math:`[-\delta, \delta]`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.clip(1.0)
        >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(jnp.zeros(3)))[0].tolist()
        [-1.0, 0.5, 1.0]
    """
    hp = Hyperparams(max_delta=check_positive("max_delta", max_delta), allow_schedules=False)

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        delta = hp.values(state.hyperparams)["max_delta"]
        clipped = jax.tree.map(lambda u: jnp.clip(u, -delta.astype(u.dtype), delta.astype(u.dtype)), updates)
        return clipped, state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    r"""Rescale all updates together so that their joint l2 norm is at most ``max_norm``.

    .. math::
        u \leftarrow u \cdot \frac{c}{\max(\lVert u \rVert_2, c)}

    which leaves ``u`` unchanged when its norm is within ``c`` (Pascanu et al., 2013).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.clip_by_global_norm(1.0)
        >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"].tolist()
        [0.800000011920929]
    """
    hp = Hyperparams(max_norm=check_positive("max_norm", max_norm), allow_schedules=False)

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        c = hp.values(state.hyperparams)["max_norm"]
        norm = _tree.norm(updates)
        factor = c.astype(norm.dtype) / jnp.maximum(norm, c.astype(norm.dtype))
        return jax.tree.map(lambda u: (u * factor.astype(u.dtype)).astype(u.dtype), updates), state

    return GradientTransformation(init, update)
