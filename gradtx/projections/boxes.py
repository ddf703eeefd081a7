"""Projections onto boxes: each entry clipped to its own interval, leaf by leaf."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core import paths as _paths
from gradtx.core.aliases import PyTree
from gradtx.projections._inputs import check_leaves, check_number, check_scale, known


def _is_number(bound: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree.structure(bound)) and bound is not None and jnp.ndim(bound) == 0


def _bounds(who: str, name: str, bound: Any, tree: PyTree, leaves: list[jax.Array]) -> list[jax.Array]:
    """One bound per leaf: the same number for all, or the leaves of a tree like ``tree``, each
    a 0-d array or shaped like its leaf."""
    if bound is None:
        raise TypeError(f"{who}: {name} must be a number, a 0-d array or a tree like tree, got None")
    if _is_number(bound):
        check_number(who, name, bound)
        bounds = [jnp.asarray(bound)] * len(leaves)
    else:
        try:
            _paths.check_same_structure(tree, bound, "tree", name)
        except ValueError as error:
            raise ValueError(f"{who}: {error}") from None
        bounds = [jnp.asarray(b) for b in jax.tree.leaves(bound)]
    for (path, x), b in zip(_paths.leaves_with_path(tree), bounds):
        where = f"'{_paths.path_str(path)}'"
        if b.ndim and b.shape != x.shape:
            raise ValueError(
                f"{who}: {name} has shape {b.shape} at {where}, where tree has shape {x.shape}; "
                "give a number, a 0-d array or an array of the leaf's shape"
            )
        if b.dtype == jnp.bool_ or jnp.iscomplexobj(b):
            raise TypeError(f"{who}: {name} must be real, got {b.dtype} at {where}")
    return bounds


def _clip(x: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    if jnp.issubdtype(x.dtype, jnp.integer):
        # the integers of [low, high]; a bound is cast only where it is taken, so an infinite
        # bound is never turned into an integer
        low, high = jnp.ceil(low), jnp.floor(high)
        x = jnp.where(x < low, low.astype(x.dtype), x)
        return jnp.where(x > high, high.astype(x.dtype), x)
    return jnp.clip(x, low.astype(x.dtype), high.astype(x.dtype))


def projection_box(tree: PyTree, lower: Any, upper: Any) -> PyTree:
    r"""The Euclidean projection onto the box :math:`[l, u]`: every entry clipped to its interval.

    .. math::
        \{x : l_i \le x_i \le u_i\}, \qquad P(x)_i = \min(\max(x_i, l_i), u_i)

    The box is a product of intervals, so the projection acts entry by entry. Each bound is one
    number for every entry, or a tree with the structure of ``tree`` whose leaves are numbers
    or arrays shaped like the leaves they bound (nothing else is broadcast). Each leaf keeps its
    dtype; an integer leaf is clipped to the integers of :math:`[l, u]`, :math:`\lceil l \rceil`
    to :math:`\lfloor u \rfloor`. With :math:`l_i > u_i` the box is empty and the entry is
    :math:`u_i`.

    Args:
        tree: the point to project, a tree of real arrays.
        lower: :math:`l`, a number or 0-d array, or a tree like ``tree``.
        upper: :math:`u`, a number or 0-d array, or a tree like ``tree``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_box
        >>> projection_box(jnp.array([-2.0, 0.5, 3.0]), 0.0, 1.0).tolist()
        [0.0, 0.5, 1.0]
        >>> x = {"a": jnp.array([-2.0, 5.0]), "b": jnp.array(3.0)}
        >>> out = projection_box(x, {"a": jnp.array([-1.0, 0.0]), "b": 0.0}, {"a": 4.0, "b": 2.0})
        >>> out["a"].tolist(), out["b"].tolist()
        ([-1.0, 4.0], 2.0)
    """
    who = "projection_box"
    leaves = check_leaves(who, tree, integers=True)
    lows, highs = _bounds(who, "lower", lower, tree, leaves), _bounds(who, "upper", upper, tree, leaves)
    if _is_number(lower) and _is_number(upper):
        low, high = known(lower), known(upper)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{who}: lower must be at most upper, got lower={low!r} and upper={high!r}")
    out = [_clip(x, low, high) for x, low, high in zip(leaves, lows, highs)]
    return jax.tree.unflatten(jax.tree.structure(tree), out)


def projection_hypercube(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the hypercube :math:`[0, s]^n`: every entry clipped, leaf by leaf.

    .. math::
        \{x : 0 \le x_i \le s\}, \qquad P(x)_i = \min(\max(x_i, 0), s)

    The box of :func:`projection_box` with :math:`l = 0` and :math:`u = s`. Each leaf keeps its
    dtype.

    Args:
        tree: the point to project, a tree of real arrays.
        scale: :math:`s`, the side of the cube. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_hypercube
        >>> out = projection_hypercube({"a": jnp.array([-1.0, 0.5]), "b": jnp.array([3.0])}, 2.0)
        >>> out["a"].tolist(), out["b"].tolist()
        ([0.0, 0.5], [2.0])
    """
    who = "projection_hypercube"
    check_scale(who, scale)
    check_leaves(who, tree, integers=True)
    return projection_box(tree, jnp.zeros_like(jnp.asarray(scale)), jnp.asarray(scale))


def projection_non_negative(tree: PyTree) -> PyTree:
    r"""The Euclidean projection onto the non-negative orthant: every negative entry set to 0.

    .. math::
        \{x : x_i \ge 0\}, \qquad P(x)_i = \max(x_i, 0)

    Each leaf keeps its dtype.

    Args:
        tree: the point to project, a tree of real arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_non_negative
        >>> projection_non_negative({"w": jnp.array([-1.0, 2.0])})["w"].tolist()
        [0.0, 2.0]
    """
    leaves = check_leaves("projection_non_negative", tree, integers=True)
    out = [jnp.maximum(x, jnp.zeros((), x.dtype)) for x in leaves]
    return jax.tree.unflatten(jax.tree.structure(tree), out)
