"""Projections onto the balls and spheres of the l1, l2 and infinity norms, all leaves taken as one vector."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import PyTree
from gradtx.core.control import cond
from gradtx.projections._inputs import check_leaves, check_scale, compute_dtype
from gradtx.projections.boxes import projection_box
from gradtx.projections.simplex import projection_simplex


def _rebuild(tree: PyTree, leaves: list[jax.Array]) -> PyTree:
    return jax.tree.unflatten(jax.tree.structure(tree), leaves)


def _signed(signs: list[jax.Array], magnitudes: PyTree, leaves: list[jax.Array]) -> list[jax.Array]:
    return [(s * m).astype(x.dtype) for s, m, x in zip(signs, jax.tree.leaves(magnitudes), leaves)]


def _l2_norm(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The global l2 norm and whether it is positive; the norm is taken of the leaves with the
    origin replaced by ones, so that its derivative at the origin is not 0/0 (the value there is
    never used)."""
    nonzero = _tree.norm(leaves, ord="inf") > 0
    return _tree.norm([jnp.where(nonzero, x, jnp.ones((), x.dtype)) for x in leaves]), nonzero


def projection_l1_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the l1 ball of radius ``scale``, all leaves taken as one vector.

    .. math::
        B_1(s) = \{x : \lVert x \rVert_1 \le s\}, \qquad
        P(x) = \begin{cases} x & \lVert x \rVert_1 \le s \\
        \mathrm{sign}(x) \odot P_{\Delta_s}(|x|) & \text{otherwise} \end{cases}

    where :math:`P_{\Delta_s}` is :func:`projection_simplex`: outside the ball, the magnitudes are
    projected onto the simplex and the signs put back (Duchi, Shalev-Shwartz, Singer & Chandra,
    2008, :doi:`10.1145/1390156.1390191`, section 4). The simplex's sort runs only for a point
    outside the ball. Each leaf keeps its dtype.

    Args:
        tree: the point to project, a tree of real floating-point arrays.
        scale: :math:`s`, the radius. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l1_ball
        >>> projection_l1_ball(jnp.array([2.0, -1.5, 0.25])).tolist()
        [0.75, -0.25, 0.0]
        >>> projection_l1_ball(jnp.array([0.5, -0.25])).tolist()  # inside: unchanged
        [0.5, -0.25]
    """
    who = "projection_l1_ball"
    check_scale(who, scale)
    leaves = check_leaves(who, tree)
    s = jnp.asarray(scale).astype(compute_dtype(leaves))

    def project(leaves):
        magnitudes = projection_simplex([jnp.abs(x) for x in leaves], s)
        return _signed([jnp.sign(x) for x in leaves], magnitudes, leaves)

    inside = _tree.norm(leaves, ord=1) <= s
    return _rebuild(tree, cond(inside, lambda leaves: leaves, project, leaves))


def projection_l1_sphere(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the l1 sphere of radius ``scale``, all leaves taken as one vector.

    .. math::
        S_1(s) = \{x : \lVert x \rVert_1 = s\}, \qquad
        P(x) = \sigma(x) \odot P_{\Delta_s}(|x|), \quad \sigma(x)_i = \begin{cases} -1 & x_i < 0 \\
        +1 & x_i \ge 0 \end{cases}

    where :math:`P_{\Delta_s}` is :func:`projection_simplex`. The sphere is the union of the
    simplices :math:`\sigma \odot \Delta_s` over the sign patterns :math:`\sigma`, and
    :math:`|x_i - \sigma_i y_i| \ge ||x_i| - y_i|` for every :math:`y \ge 0`, so the
    closest one is the one of :math:`x`'s own signs; at :math:`x_i = 0` either sign is as close,
    and ``+1`` is taken. Inside the ball the entries grow in magnitude until the norm is
    :math:`s`; the origin goes to :math:`(s/n, \dots, s/n)`, one of the :math:`2^n` closest
    points. Each leaf keeps its dtype.

    Args:
        tree: the point to project, a tree of real floating-point arrays.
        scale: :math:`s`, the radius. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l1_sphere
        >>> projection_l1_sphere(jnp.array([0.25, -0.25])).tolist()
        [0.5, -0.5]
        >>> projection_l1_sphere(jnp.zeros(4)).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    who = "projection_l1_sphere"
    check_scale(who, scale)
    leaves = check_leaves(who, tree)
    s = jnp.asarray(scale).astype(compute_dtype(leaves))
    magnitudes = projection_simplex([jnp.abs(x) for x in leaves], s)
    signs = [jnp.where(x < 0, -1, 1).astype(x.dtype) for x in leaves]
    return _rebuild(tree, _signed(signs, magnitudes, leaves))


def projection_l2_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the l2 ball of radius ``scale``, all leaves taken as one vector.

    .. math::
        B_2(s) = \{x : \lVert x \rVert_2 \le s\}, \qquad
        P(x) = x \cdot \frac{s}{\max(\lVert x \rVert_2, s)}

    with the global norm over all leaves, computed without overflow for any finite entries.
    Complex leaves keep their phases. Each leaf keeps its dtype.

    Args:
        tree: the point to project, a tree of floating-point or complex arrays.
        scale: :math:`s`, the radius. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l2_ball
        >>> out = projection_l2_ball({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, 2.5)
        >>> out["a"].tolist(), out["b"].tolist()
        ([1.5], [2.0])
    """
    who = "projection_l2_ball"
    check_scale(who, scale)
    leaves = check_leaves(who, tree, complex_ok=True)
    norm, nonzero = _l2_norm(leaves)
    s = jnp.asarray(scale).astype(norm.dtype)
    outside = nonzero & (norm > s)
    factor = jnp.where(outside, s / jnp.where(outside, norm, 1), 1)
    return _rebuild(
        tree, [(x * factor.astype(jnp.promote_types(x.dtype, factor.dtype))).astype(x.dtype) for x in leaves]
    )


def projection_l2_sphere(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the l2 sphere of radius ``scale``, all leaves taken as one vector.

    .. math::
        S_2(s) = \{x : \lVert x \rVert_2 = s\}, \qquad
        P(x) = s \, \frac{x}{\lVert x \rVert_2} \quad (x \neq 0)

    with the global norm over all leaves, computed without overflow or underflow for any finite
    entries. Every point of the sphere is equally close to the origin; the origin is sent to
    :math:`s \, e_1`: ``scale`` at the first entry of the first non-empty leaf (in flattening
    order) and 0 elsewhere, so the result is never NaN. Complex leaves keep their phases. Each
    leaf keeps its dtype.

    Args:
        tree: the point to project, a tree of floating-point or complex arrays.
        scale: :math:`s`, the radius. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l2_sphere
        >>> projection_l2_sphere(jnp.array([0.3, 0.4]), 10.0).tolist()
        [6.0, 8.0]
        >>> projection_l2_sphere({"a": jnp.zeros(0), "b": jnp.zeros(2)})["b"].tolist()  # the origin
        [1.0, 0.0]
    """
    who = "projection_l2_sphere"
    check_scale(who, scale)
    leaves = check_leaves(who, tree, complex_ok=True)
    norm, nonzero = _l2_norm(leaves)
    s = jnp.asarray(scale).astype(norm.dtype)
    safe = jnp.where(nonzero, norm, 1)
    first = next((i for i, x in enumerate(leaves) if x.size), None)
    out = []
    for i, x in enumerate(leaves):
        dtype = jnp.promote_types(x.dtype, norm.dtype)
        origin = jnp.zeros(x.size, dtype).at[0].set(s.astype(dtype)) if i == first else jnp.zeros(x.size, dtype)
        # x / |x| before the product with s: s / |x| overflows for a tiny |x|
        projected = jnp.where(nonzero, x.astype(dtype) / safe.astype(dtype) * s.astype(dtype), origin.reshape(x.shape))
        out.append(projected.astype(x.dtype))
    return _rebuild(tree, out)


def projection_linf_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    r"""The Euclidean projection onto the infinity-norm ball of radius ``scale``: every entry clipped.

    .. math::
        B_\infty(s) = \{x : \max_i |x_i| \le s\}, \qquad P(x)_i = \min(\max(x_i, -s), s)

    The ball is the box :math:`[-s, s]^n`, so the projection acts entry by entry (see
    :func:`projection_box`). Each leaf keeps its dtype; an integer leaf is clipped to
    :math:`\pm\lfloor s \rfloor`.

    Args:
        tree: the point to project, a tree of real arrays.
        scale: :math:`s`, the radius. A number or 0-d array, at least 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_linf_ball
        >>> projection_linf_ball(jnp.array([-3.0, 0.5, 2.0]), 1.5).tolist()
        [-1.5, 0.5, 1.5]
    """
    who = "projection_linf_ball"
    check_scale(who, scale)
    check_leaves(who, tree, integers=True)
    return projection_box(tree, -jnp.asarray(scale), jnp.asarray(scale))
