"""Projection onto the simplex, the building block of the l1 ball's projection."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.aliases import PyTree
from gradtx.projections._inputs import check_leaves, check_scale, compute_dtype


def _threshold(v: jax.Array, s: jax.Array) -> jax.Array:
    r"""The :math:`\theta` with :math:`\sum_i \max(v_i - \theta, 0) = s`, found by sorting.

    With :math:`u` the entries of :math:`v` in decreasing order, the entries kept positive are
    the first :math:`\rho`, the largest :math:`j` with :math:`u_j > (\sum_{r \le j} u_r - s) / j`;
    then :math:`\theta = (\sum_{r \le \rho} u_r - s) / \rho`. For :math:`s = 0` no :math:`j`
    qualifies and :math:`\rho = 1` gives :math:`\theta = \max_i v_i`, so every entry becomes 0.
    """
    u = jnp.sort(v)[::-1]
    partial_sums = jnp.cumsum(u)
    j = jnp.arange(1, v.size + 1)
    kept = u * j.astype(v.dtype) > partial_sums - s
    rho = jnp.max(jnp.where(kept, j, 1))
    return (partial_sums[rho - 1] - s) / rho.astype(v.dtype)


def projection_simplex(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the simplex of size ``scale``, all leaves taken as one vector.

    .. math::
        \Delta_s = \{x : x_i \ge 0, \textstyle\sum_i x_i = s\}, \qquad
        P(x)_i = \max(x_i - \theta, 0)

    where :math:`\theta` is the one number with :math:`\sum_i \max(x_i - \theta, 0) = s`, found
    by sorting :math:`x` (Held, Wolfe & Crowder, 1974, :doi:`10.1007/BF01580223`; Duchi,
    Shalev-Shwartz, Singer & Chandra, 2008, :doi:`10.1145/1390156.1390191`, figure 1):
    :math:`O(n \log n)` for :math:`n` entries in all. A leaf with two or more axes is part of the
    one vector, not a batch of rows: for one simplex per row, ``jax.vmap`` the projection.
    Computed in at least float32; each leaf keeps its dtype. A tree with no entries is returned
    as it is.

    Args:
        tree: the point to project, a tree of real floating-point arrays.
        scale: :math:`s`, the sum of the entries of the result. A number or 0-d array, at least 0
            (at 0 the simplex is the single point 0).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_simplex
        >>> projection_simplex(jnp.array([0.5, 1.5, -1.0])).tolist()
        [0.0, 1.0, 0.0]
        >>> out = projection_simplex({"a": jnp.array([0.5]), "b": jnp.array([1.0, -2.0])})  # one vector
        >>> out["a"].tolist(), out["b"].tolist()
        ([0.25], [0.75, 0.0])
    """
    who = "projection_simplex"
    check_scale(who, scale)
    leaves = check_leaves(who, tree)
    sizes = [int(x.size) for x in leaves]
    if sum(sizes) == 0:
        return tree
    dtype = compute_dtype(leaves)
    v = jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])
    w = jnp.maximum(v - _threshold(v, jnp.asarray(scale).astype(dtype)), 0)
    pieces = jnp.split(w, np.cumsum(sizes)[:-1].tolist())
    out = [p.reshape(x.shape).astype(x.dtype) for p, x in zip(pieces, leaves)]
    return jax.tree.unflatten(jax.tree.structure(tree), out)
