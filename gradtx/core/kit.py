r"""The author's kit: the pieces every transform in gradtx is written with.

A new ``scale_by_*`` block needs the same few things as the ones that ship: hyperparameters cast
to the dtype of the arithmetic, an exponential moving average kept in the moment's own dtype, a
check that the updates match the tree the state was built for, a clear error when the parameters
are missing, and a way to split a tree of per-leaf tuples. Written once here, they keep each
optimizer down to its paper's equations::

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)
        ...

The rules they carry: arithmetic runs in at least float32 (:func:`gradtx.core.numerics.compute_dtype`),
moments are stored back in their own dtype, second moments are real for complex gradients, and
updates leave in the dtype they came in.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from gradtx.core import kit
    >>> m = kit.update_moment(jnp.ones(2, jnp.bfloat16), jnp.zeros(2, jnp.bfloat16), 0.9, 1)
    >>> m.dtype, [round(x, 3) for x in m.tolist()]
    (dtype(bfloat16), [0.1, 0.1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, Updates
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype
from gradtx.core.tree import magnitudes_like, moments_like

__all__ = [
    "cast_scalars",
    "update_moment",
    "check_updates",
    "needs_params",
    "unzip",
    "scaled",
    "real_vdot",
    "moments_like",
    "magnitudes_like",
    "whole",
]


def cast_scalars(dtype: Any, *values: Any) -> tuple[jax.Array, ...]:
    """Hyperparameters (real numbers) in the real dtype of a computation carried out in ``dtype``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import cast_scalars
        >>> [x.dtype for x in cast_scalars(jnp.complex64, 0.9, 1e-8)]
        [dtype('float32'), dtype('float32')]
    """
    return tuple(jnp.asarray(v).astype(real_dtype(dtype)) for v in values)


def update_moment(g: jax.Array, m: jax.Array, decay: Any, order: int) -> jax.Array:
    r"""One step of an exponential moving average: :math:`\beta m + (1-\beta) g` (``order=1``)
    or :math:`\beta m + (1-\beta) |g|^2` (``order=2``), computed in at least float32 and stored in
    ``m``'s dtype (real for ``order=2``).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import update_moment
        >>> update_moment(jnp.array([2.0]), jnp.array([1.0]), 0.5, 2).tolist()
        [2.5]
    """
    dtype = compute_dtype(g, m)
    (decay,) = cast_scalars(dtype, decay)
    g = g.astype(dtype)
    target = g if order == 1 else abs_sq(g) if order == 2 else g**order
    return (decay * m + (1 - decay) * target).astype(m.dtype)


def check_updates(state_tree: Updates, updates: Updates, shapes: bool = True) -> None:
    """Raise a ``ValueError`` naming the first path where ``updates`` differ from ``state_tree``
    (the tree the state was built for): a missing or extra leaf, or, with ``shapes``, another shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import check_updates
        >>> check_updates({"w": jnp.zeros(2)}, {"w": jnp.zeros(3)})
        Traceback (most recent call last):
        ...
        ValueError: the updates do not match the tree this state was built for: 'w' has shape (3,) in the updates but (2,) in the tree this state was built for.
    """
    _tree.check_same_structure(state_tree, updates, "the tree this state was built for", "the updates", shapes=shapes)


def needs_params(who: str, params: Params | None, updates: Updates = None, call: str = "updates") -> None:
    """Raise a ``ValueError`` when a transform that reads the parameters was given none; with
    ``updates``, also check that the parameters have the updates' tree.

    Example:
        >>> from gradtx.core.kit import needs_params
        >>> needs_params("add_decayed_weights", None)
        Traceback (most recent call last):
        ...
        ValueError: add_decayed_weights needs the parameters: call update(updates, state, params)
    """
    if params is None:
        raise ValueError(f"{who} needs the parameters: call update({call}, state, params)")
    if updates is not None:
        _tree.check_same_structure(params, updates, "the parameters", "the updates")


def copied(tree: Any, dtype: Any = None) -> Any:
    """Every array of ``tree`` in a buffer of its own (cast to ``dtype`` when given): for state that
    starts at the parameters (:math:`x_0`, an average, a cache). A state holding the parameters
    themselves, or one array in two fields, cannot be donated: ``jax.jit(step, donate_argnums=...)``
    fails with "Attempt to donate the same buffer twice".

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import copied
        >>> x = jnp.ones(2)
        >>> y = copied(x)
        >>> bool(jnp.array_equal(x, y)), x.unsafe_buffer_pointer() == y.unsafe_buffer_pointer()
        (True, False)
    """
    return jax.tree.map(lambda x: jnp.array(x, dtype, copy=True), tree)


def unzip(tuples: Any, like: Any, n: int = 2) -> tuple[Any, ...]:
    """Split a tree of ``n``-tuples, shaped like ``like`` above the tuples, into ``n`` trees: what a
    per-leaf step that returns ``(update, new_moment)`` gives back through ``jax.tree.map``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import unzip
        >>> like = {"a": 0, "b": 0}
        >>> unzip({"a": (1, 2), "b": (3, 4)}, like)
        ({'a': 1, 'b': 3}, {'a': 2, 'b': 4})
    """
    treedef = jax.tree.structure(like)
    flat = treedef.flatten_up_to(tuples)  # type: ignore[attr-defined]
    return tuple(jax.tree.unflatten(treedef, [t[i] for t in flat]) for i in range(n))


def scaled(updates: Updates, factor: jax.Array) -> Updates:
    """Every leaf times ``factor``, multiplied in the wider of their dtypes and cast back to the
    leaf's: a factor past float16's range (1 / a tiny norm) must not become inf when the product
    is finite.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import scaled
        >>> scaled(jnp.array([1e-4], jnp.float16), jnp.float32(1e5)).tolist()
        [10.0]
    """
    return jax.tree.map(
        lambda u: (u * factor.astype(jnp.promote_types(u.dtype, factor.dtype))).astype(u.dtype), updates
    )


def real_vdot(a: Updates, b: Updates, dtype: Any) -> jax.Array:
    r""":math:`\mathrm{Re}\langle a, b \rangle` over all leaves, accumulated in ``dtype``: the inner
    product of :math:`\mathbb{C}^n` taken as :math:`\mathbb{R}^{2n}`, in which curvature and descent
    are measured.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import real_vdot
        >>> float(real_vdot({"z": jnp.array([1 + 1j])}, {"z": jnp.array([2 + 3j])}, jnp.float32))
        5.0
    """
    total = jnp.zeros((), dtype)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        c = jnp.promote_types(jnp.result_type(x, y), dtype)
        total = total + jnp.real(jnp.sum(jnp.conj(x.astype(c)) * y.astype(c))).astype(dtype)
    return total


def whole(x: jax.Array) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """``x`` whole on every device, and the function that lays a result of its shape out as ``x``
    was, where ``x`` carries an explicit sharding (a mesh with ``AxisType.Explicit`` axes); elsewhere
    ``x`` itself and the identity. For the steps that need a whole matrix (a product over a sharded
    contracting axis, an SVD): on an Auto mesh XLA chooses the communication, an Explicit one wants it
    said.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.kit import whole
        >>> x, back = whole(jnp.ones((2, 3)))  # no explicit sharding here: x as it is
        >>> x.shape, back(x).shape
        ((2, 3), (2, 3))
    """
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec, mesh = getattr(sharding, "spec", None), getattr(sharding, "mesh", None)
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    if mesh is None or not spec or all(s is None for s in spec) or explicit not in tuple(mesh.axis_types or ()):
        return x, lambda y: y
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.sharding.reshard(x, replicated), lambda y: jax.sharding.reshard(y, sharding)
