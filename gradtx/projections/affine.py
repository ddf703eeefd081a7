"""Projections onto affine sets: a hyperplane, a half-space, a line; all leaves taken as one vector.

The inner product is that of all leaves together, :math:`\\langle a, x \\rangle = \\sum_i
\\bar a_i x_i`. Each is computed with :math:`a` divided by a power of two near its largest entry, which is
exact and keeps :math:`\\lVert a \\rVert^2` from overflowing or vanishing, so that a huge or tiny
:math:`a` gives the same result as a moderate one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core import paths as _paths
from gradtx.core import tree as _tree
from gradtx.core.aliases import PyTree
from gradtx.core.numerics import abs_sq, real_dtype
from gradtx.projections._inputs import check_leaves, check_like, check_number, compute_dtype


def _inputs(who: str, x: PyTree, a: PyTree, complex_ok: bool) -> tuple[list[jax.Array], list[jax.Array], Any]:
    check_like(who, x, a)
    xs = check_leaves(who, x, complex_ok=complex_ok)
    as_ = check_leaves(who, a, complex_ok=complex_ok)
    for (path, xi), ai in zip(_paths.leaves_with_path(x), as_):
        if jnp.iscomplexobj(ai) and not jnp.iscomplexobj(xi):
            raise TypeError(
                f"{who}: a is complex ({ai.dtype}) at '{_paths.path_str(path)}', where x is real ({xi.dtype})"
            )
    return xs, as_, compute_dtype(xs, as_)


def _normal(as_: list[jax.Array], dtype: Any) -> tuple[list[jax.Array], jax.Array, jax.Array]:
    """:math:`\\hat a = a / 2^k`, with :math:`2^k \\le \\max_i |a_i| < 2^{k+1}` (:math:`k = 0` for
    :math:`a = 0`), then :math:`2^k` and :math:`\\lVert \\hat a \\rVert^2`.

    Dividing by a power of two is exact, and :math:`\\lVert \\hat a \\rVert^2` lies in
    :math:`[1, 4n]`: it neither overflows nor vanishes, whatever the scale of :math:`a`.
    """
    top = _tree.norm(as_, ord="inf")
    _, exponent = jnp.frexp(top)
    unit = jnp.where((top > 0) & jnp.isfinite(top), jnp.ldexp(jnp.ones((), top.dtype), exponent - 1), 1).astype(dtype)
    scaled = [a.astype(dtype) / unit for a in as_]
    squares = jnp.zeros((), real_dtype(dtype))
    for a in scaled:
        squares = squares + jnp.sum(abs_sq(a))
    return scaled, unit, squares


def _inner(us: list[jax.Array], xs: list[jax.Array], dtype: Any) -> jax.Array:
    """:math:`\\langle u, x \\rangle = \\sum_i \\bar u_i x_i` over all leaves, in ``dtype``."""
    total = jnp.zeros((), dtype)
    for u, x in zip(us, xs):
        total = total + jnp.sum(jnp.conj(u) * x.astype(dtype))
    return total


def _divided(numerator: jax.Array, squares: jax.Array) -> jax.Array:
    """``numerator / squares``, 0 where ``squares`` is 0 (:math:`a = 0`)."""
    return jnp.where(squares > 0, numerator / jnp.where(squares > 0, squares, 1).astype(numerator.dtype), 0)


def _moved(x: PyTree, xs: list[jax.Array], us: list[jax.Array], step: jax.Array, dtype: Any) -> PyTree:
    """:math:`x - \\mathrm{step} \\cdot u`, leaf by leaf, each leaf in its own dtype."""
    out = [(xi.astype(dtype) - step * u).astype(xi.dtype) for xi, u in zip(xs, us)]
    return jax.tree.unflatten(jax.tree.structure(x), out)


def projection_hyperplane(x: PyTree, a: PyTree, b: Any) -> PyTree:
    r"""The Euclidean projection onto the hyperplane :math:`\{x : \langle a, x \rangle = b\}`.

    .. math::
        P(x) = x - \frac{\langle a, x \rangle - b}{\lVert a \rVert_2^2} \, a

    with the inner product and the norm of all leaves together. For :math:`a = 0` the set is
    everything (:math:`b = 0`) or nothing, and ``x`` is returned as it is. Complex leaves are
    allowed, with :math:`\langle a, x \rangle = \sum_i \bar a_i x_i` and a complex ``b``.
    Each leaf keeps its dtype.

    Args:
        x: the point to project, a tree of floating-point or complex arrays.
        a: the normal of the hyperplane, a tree with the structure and leaf shapes of ``x``.
        b: the offset, a number or 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_hyperplane
        >>> x, a = {"u": jnp.array([1.0, 2.0]), "v": jnp.array([3.0])}, {"u": jnp.array([1.0, 0.0]), "v": jnp.array([1.0])}
        >>> out = projection_hyperplane(x, a, 1.0)  # <a, x> = 4 becomes 1
        >>> out["u"].tolist(), out["v"].tolist()
        ([-0.5, 2.0], [1.5])
    """
    who = "projection_hyperplane"
    check_number(who, "b", b)
    xs, as_, dtype = _inputs(who, x, a, complex_ok=True)
    if jnp.iscomplexobj(b) and not jnp.iscomplexobj(jnp.zeros((), dtype)):
        raise TypeError(f"{who}: b is complex, but x and a are real")
    normal, unit, squares = _normal(as_, dtype)
    residual = _inner(normal, xs, dtype) - jnp.asarray(b).astype(dtype) / unit
    return _moved(x, xs, normal, _divided(residual, squares), dtype)


def projection_halfspace(x: PyTree, a: PyTree, b: Any) -> PyTree:
    r"""The Euclidean projection onto the half-space :math:`\{x : \langle a, x \rangle \le b\}`.

    .. math::
        P(x) = x - \frac{\max(\langle a, x \rangle - b, 0)}{\lVert a \rVert_2^2} \, a

    with the inner product and the norm of all leaves together: a point inside is unchanged, one
    outside goes to the bounding hyperplane. For :math:`a = 0` the set is everything
    (:math:`b \ge 0`) or nothing, and ``x`` is returned as it is. Each leaf keeps its dtype.

    Args:
        x: the point to project, a tree of real floating-point arrays.
        a: the outward normal, a tree with the structure and leaf shapes of ``x``.
        b: the offset, a real number or 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_halfspace
        >>> projection_halfspace(jnp.array([3.0, 1.0]), jnp.array([1.0, 1.0]), 2.0).tolist()
        [2.0, 0.0]
        >>> projection_halfspace(jnp.array([0.5, 1.0]), jnp.array([1.0, 1.0]), 2.0).tolist()  # inside
        [0.5, 1.0]
    """
    who = "projection_halfspace"
    check_number(who, "b", b)
    if jnp.iscomplexobj(b):
        raise TypeError(f"{who}: b must be real, got {b!r}")
    xs, as_, dtype = _inputs(who, x, a, complex_ok=False)
    normal, unit, squares = _normal(as_, dtype)
    excess = jnp.maximum(_inner(normal, xs, dtype) - jnp.asarray(b).astype(dtype) / unit, 0)
    return _moved(x, xs, normal, _divided(excess, squares), dtype)


def projection_vector(x: PyTree, a: PyTree) -> PyTree:
    r"""The Euclidean projection onto the line spanned by ``a``: :math:`\{t a : t \in \mathbb{R}\}`.

    .. math::
        P(x) = \frac{\langle a, x \rangle}{\lVert a \rVert_2^2} \, a

    with the inner product and the norm of all leaves together. For :math:`a = 0` the line is
    the single point 0, and the result is 0. For complex leaves the line is
    :math:`\{t a : t \in \mathbb{C}\}`, with :math:`\langle a, x \rangle = \sum_i \bar a_i x_i`.
    The result has the dtypes of ``x``.

    Args:
        x: the point to project, a tree of floating-point or complex arrays.
        a: the direction of the line, a tree with the structure and leaf shapes of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_vector
        >>> projection_vector(jnp.array([2.0, 1.0]), jnp.array([1.0, 1.0])).tolist()
        [1.5, 1.5]
    """
    who = "projection_vector"
    xs, as_, dtype = _inputs(who, x, a, complex_ok=True)
    normal, _, squares = _normal(as_, dtype)
    coefficient = _divided(_inner(normal, xs, dtype), squares)
    out = [(coefficient * u).astype(xi.dtype) for xi, u in zip(xs, normal)]
    return jax.tree.unflatten(jax.tree.structure(x), out)
