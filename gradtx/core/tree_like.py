"""Trees made like other trees: filled with a value, random, split keys, cast to a dtype or to
another tree's dtypes, and the moment updates of adaptive optimizers (exponential moving averages
leaf by leaf, their bias correction, and the zero moments they start from), as in ``optax.tree``.

Binary operations take trees of the same structure; when they differ, the error names the
first differing path. :mod:`gradtx.core.tree` re-exports every name here.
"""

from __future__ import annotations

import builtins
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core.aliases import PyTree
from gradtx.core.numerics import (
    abs_sq,
    compute_dtype,
    magnitude_dtype,
    moment_dtype,
    real_dtype,
)
from gradtx.core.paths import first_difference, leafwise, leaves_with_path, path_str
from gradtx.core.validation import check_one_of

# ---------------------------------------------------------------- new trees like a tree


def _filled_like(x: Any, fill_value: Any, dtype: Any) -> jax.Array:
    """``fill_value`` with the shape, dtype and sharding of ``x``.

    ``jnp.full_like`` inside ``jit`` makes a constant that does not depend on
    ``x``, so XLA places it on one device (or replicates it) whatever ``x``'s
    sharding. Selecting between two equal constants with a predicate computed
    from ``x`` makes the result depend on ``x``, and sharding propagation gives it
    ``x``'s layout; the predicate is false only for NaN, where both branches agree.
    """
    x = jnp.asarray(x)
    fill = jnp.asarray(fill_value, dtype=dtype or x.dtype)
    return jnp.where(x == x, fill, fill)


def zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped and sharded like each leaf, in ``dtype`` or the leaf's own dtype.

    The sharding follows under ``jit`` too, so ``jax.jit(tx.init)(params)``
    lays optimizer state out as the parameters are laid out.

    Args:
        tree: the tree to imitate.
        dtype: the dtype of every new leaf; ``None`` keeps each leaf's.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.zeros_like({"a": jnp.ones(2)})["a"].tolist()
        [0.0, 0.0]
    """
    return jax.tree.map(lambda x: _filled_like(x, 0, dtype), tree)


def full_like(tree: PyTree, fill_value: Any, dtype: Any = None) -> PyTree:
    """``fill_value`` shaped and sharded like each leaf, in ``dtype`` or the leaf's own dtype.

    Args:
        tree: the tree to imitate.
        fill_value: the value of every element.
        dtype: the dtype of every new leaf; ``None`` keeps each leaf's.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.full_like({"a": jnp.ones(2)}, 7.0)["a"].tolist()
        [7.0, 7.0]
    """
    return jax.tree.map(lambda x: _filled_like(x, fill_value, dtype), tree)


def ones_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Ones shaped and sharded like each leaf, in ``dtype`` or the leaf's own dtype.

    Args:
        tree: the tree to imitate.
        dtype: the dtype of every new leaf; ``None`` keeps each leaf's.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.ones_like({"a": jnp.zeros(2)}, jnp.int32)["a"].tolist()
        [1, 1]
    """
    return full_like(tree, 1, dtype)


def batch_shape(tree: PyTree, shape: tuple[int, ...] = ()) -> PyTree:
    """Every leaf broadcast to ``shape + leaf.shape``: a tree of ``shape`` copies, stacked in front.

    Args:
        tree: the tree to broadcast.
        shape: the leading batch axes, a tuple of non-negative integers.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.batch_shape({"a": jnp.ones((2, 3)), "b": 1.0}, (4,))["a"].shape
        (4, 2, 3)
    """
    valid = isinstance(shape, (tuple, list)) and builtins.all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in shape
    )
    if not valid:
        raise ValueError(f"batch_shape: shape must be a tuple of non-negative integers, got {shape!r}")
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)


def split_key_like(rng_key: jax.Array, target_tree: PyTree) -> PyTree:
    """One PRNG key per leaf of ``target_tree``, split from ``rng_key``, as a tree of its structure.

    Args:
        rng_key: the key to split (a typed key or a raw ``uint32`` one).
        target_tree: the tree whose structure the keys take.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import tree
        >>> keys = tree.split_key_like(jax.random.key(0), {"a": jnp.zeros(3), "b": [jnp.zeros(2)]})
        >>> jax.tree.structure(keys) == jax.tree.structure({"a": 0, "b": [0]})
        True
    """
    treedef = jax.tree.structure(target_tree)
    return jax.tree.unflatten(treedef, list(jax.random.split(rng_key, treedef.num_leaves)))  # type: ignore[attr-defined]


def random_like(rng_key: jax.Array, target_tree: PyTree, sampler: Any = jax.random.normal, dtype: Any = None) -> PyTree:
    """Random values shaped like each leaf, each leaf with its own key from :func:`split_key_like`.

    Args:
        rng_key: the key the leaves' keys are split from.
        target_tree: the tree whose leaves' shapes the values take.
        sampler: called as ``sampler(key, shape, dtype)``, e.g. ``jax.random.uniform``.
        dtype: the dtype asked of ``sampler``; ``None`` for each leaf's own.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import tree
        >>> noise = tree.random_like(jax.random.key(0), {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))})
        >>> noise["b"].shape, noise["a"].dtype
        ((2, 2), dtype('float32'))
    """

    def draw(x, key):
        return sampler(key, jnp.shape(x), dtype or jnp.result_type(x))

    return jax.tree.map(draw, target_tree, split_key_like(rng_key, target_tree))


def unwrap_random_key_data(input_tree: PyTree) -> PyTree:
    """The tree with every typed PRNG key replaced by its raw ``uint32`` data (other leaves kept),
    so that states holding keys can be compared or stored as plain arrays.

    Args:
        input_tree: a tree of arrays, some of them typed keys (``jax.random.key``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.unwrap_random_key_data({"k": jax.random.key(0), "x": jnp.ones(1)})["k"].dtype
        dtype('uint32')
    """

    def unwrap(x):
        is_key = isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
        return jax.random.key_data(x) if is_key else x

    return jax.tree.map(unwrap, input_tree)


# ----------------------------------------------------------------------- dtypes


def cast(tree: PyTree, dtype: Any) -> PyTree:
    """Every leaf in ``dtype`` (``None`` keeps each leaf as it is).

    Args:
        tree: the tree to cast.
        dtype: the new dtype, or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.cast({"a": jnp.ones(1)}, jnp.bfloat16)["a"].dtype
        dtype(bfloat16)
    """
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def cast_like(tree: PyTree, other_tree: PyTree) -> PyTree:
    """Every leaf of ``tree`` in the dtype of the matching leaf of ``other_tree`` (kept as it is
    where that leaf has no dtype, such as a Python number).

    Args:
        tree: the tree to cast.
        other_tree: a tree of the same structure giving the dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.cast_like({"a": jnp.ones(1), "b": 2}, {"a": jnp.ones(1, jnp.bfloat16), "b": 1.5})
        {'a': Array([1], dtype=bfloat16), 'b': 2}
    """

    def like(x, other):
        return jnp.asarray(x).astype(other.dtype) if hasattr(other, "dtype") else x

    return leafwise("cast_like", ("tree", "other_tree"), like, tree, other_tree)


def _ordered(dtypes: list[Any], highest: bool) -> Any:
    """The dtype of ``dtypes`` every other promotes to (``highest``), or that promotes to every other."""
    for d in dtypes:
        if builtins.all(jnp.promote_types(d, x) == (d if highest else x) for x in dtypes):
            return d
    a, b = next((a, b) for a in dtypes for b in dtypes if jnp.promote_types(a, b) not in (a, b))
    raise ValueError(
        f"dtype: {a} and {b} have no order (neither promotes to the other), so the leaves have no "
        f"{'highest' if highest else 'lowest'} dtype; mixed_dtype_handler='promote' gives {jnp.result_type(*dtypes)}"
    )


def dtype(tree: PyTree, mixed_dtype_handler: str | None = None) -> Any:
    """The dtype of the leaves of ``tree``, or the default float dtype when it has none.

    Python numbers count as JAX would make them (``1.0`` as float32, or float64 under x64).

    Args:
        tree: a tree of arrays.
        mixed_dtype_handler: what to do when the leaves have several dtypes: ``None`` raises a
            ``ValueError`` naming them; ``"promote"`` returns the dtype JAX promotes them to;
            ``"highest"`` and ``"lowest"`` the highest and lowest in the promotion order
            (int32 < float32), an error when two are not ordered (float16 and bfloat16).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> mixed = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(1, jnp.float16)}
        >>> tree.dtype(mixed, "promote"), tree.dtype({"a": jnp.ones(1, jnp.int8), "b": 1.0}, "lowest")
        (dtype('float32'), dtype('int8'))
        >>> tree.dtype(mixed)
        Traceback (most recent call last):
        ...
        ValueError: dtype: the leaves of tree have several dtypes: bfloat16 at 'a', float16 at 'b'; pass mixed_dtype_handler='promote', 'highest' or 'lowest' to get one
    """
    check_one_of("dtype: mixed_dtype_handler", mixed_dtype_handler, (None, "promote", "highest", "lowest"))
    first_at: dict[Any, Any] = {}
    for path, x in leaves_with_path(tree):
        first_at.setdefault(jnp.asarray(x).dtype, path)
    if not first_at:
        return jnp.dtype(jnp.result_type(float))
    dtypes = list(first_at)
    if len(dtypes) == 1:
        return dtypes[0]
    if mixed_dtype_handler is None:
        found = ", ".join(f"{d} at '{path_str(p)}'" for d, p in first_at.items())
        raise ValueError(
            f"dtype: the leaves of tree have several dtypes: {found}; "
            "pass mixed_dtype_handler='promote', 'highest' or 'lowest' to get one"
        )
    if mixed_dtype_handler == "promote":
        return jnp.result_type(*dtypes)
    return _ordered(dtypes, highest=mixed_dtype_handler == "highest")


def size(tree: PyTree) -> int:
    """The number of elements in all leaves.

    Args:
        tree: any tree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.size({"a": jnp.ones((2, 3)), "b": [1.0, None]})
        7
    """
    return builtins.sum(int(jnp.size(x)) for x in jax.tree.leaves(tree))


def allclose(a: PyTree, b: PyTree, rtol: Any = 1e-5, atol: Any = 1e-8, equal_nan: bool = False) -> bool:
    """True when the trees have the same structure and every pair of leaves is close.

    Args:
        a: the first tree.
        b: the second tree.
        rtol: the relative tolerance, as in ``jnp.allclose``.
        atol: the absolute tolerance.
        equal_nan: count NaNs in the same places as equal.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> nan = {"a": jnp.array([1.0, jnp.nan])}
        >>> tree.allclose(nan, nan), tree.allclose(nan, nan, equal_nan=True), tree.allclose(nan, {"b": 1.0})
        (False, True, False)
    """
    if first_difference(a, b) is not None:
        return False
    return builtins.all(
        bool(jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


# ---------------------------------------------------------------------- moments


def _moment_step(who: str, updates: PyTree, moments: PyTree, decay: Any, target: Any, extra: Any = None) -> PyTree:
    """``decay * m + (1 - decay) * target(g)`` leafwise (or ``extra(target(g), decay * m)`` when
    given), computed in at least float32 and stored in each moment's dtype; ``None`` updates stay
    ``None``."""

    def step(path, g, m):
        if g is None:
            return None
        dtype = compute_dtype(g, m)
        t = target(jnp.asarray(g).astype(dtype))
        if jnp.iscomplexobj(t) and not jnp.iscomplexobj(m):
            raise TypeError(
                f"{who}: the update at '{path_str(path)}' is complex but its moment is {m.dtype}, "
                "which would drop the imaginary part; keep complex moments (gradtx.core.tree.moments_like)"
            )
        d = jnp.asarray(decay).astype(real_dtype(dtype))
        new = extra(t, d * m) if extra is not None else d * m + (1 - d) * t
        return new.astype(m.dtype)

    return leafwise(who, ("updates", "moments"), step, updates, moments, with_path=True, is_leaf=lambda x: x is None)


def update_moment(updates: PyTree, moments: PyTree, decay: Any, order: Any) -> PyTree:
    r"""One step of the exponential moving average of the ``order``-th power of the updates:
    :math:`m \leftarrow \beta m + (1 - \beta) g^{k}`, leafwise.

    Computed in at least float32 and stored in each moment's dtype. ``g**k`` is the plain
    power, complex for a complex ``g``; :func:`update_moment_per_elem_norm` averages
    :math:`|g|^k`. A complex update with a real moment raises a ``TypeError``.

    Args:
        updates: the new values :math:`g`, a tree (``None`` leaves give ``None``).
        moments: the averages :math:`m`, a tree of the same structure.
        decay: :math:`\beta`, a number or 0-d array.
        order: the power :math:`k`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.update_moment({"a": jnp.array([2.0])}, {"a": jnp.array([1.0])}, 0.5, 2)["a"].tolist()
        [2.5]
    """
    return _moment_step("update_moment", updates, moments, decay, lambda g: g**order)


def update_moment_per_elem_norm(updates: PyTree, moments: PyTree, decay: Any, order: Any) -> PyTree:
    r"""One step of the exponential moving average of the ``order``-th power of each element's
    magnitude: :math:`m \leftarrow \beta m + (1 - \beta) |g|^{k}`, leafwise.

    For a complex ``g``, :math:`|g|` is the modulus; the result is real. Computed in at least
    float32 and stored in each moment's dtype.

    Args:
        updates: the new values :math:`g`, a tree (``None`` leaves give ``None``).
        moments: the averages :math:`m`, a tree of the same structure.
        decay: :math:`\beta`, a number or 0-d array.
        order: the power :math:`k`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.update_moment_per_elem_norm({"z": jnp.array([3 + 4j])}, {"z": jnp.array([0.0])}, 0.5, 2)["z"].tolist()
        [12.5]
    """

    def power(g):
        if not jnp.iscomplexobj(g):
            return jnp.abs(g) ** order
        half = order / 2
        return abs_sq(g) ** (int(half) if float(half).is_integer() else half)

    return _moment_step("update_moment_per_elem_norm", updates, moments, decay, power)


def update_infinity_moment(updates: PyTree, moments: PyTree, decay: Any, eps: Any) -> PyTree:
    r"""One step of the exponentially weighted infinity norm of AdaMax:
    :math:`u \leftarrow \max(|g| + \epsilon, \beta u)`, leafwise.

    Args:
        updates: the new values :math:`g`, a tree (``None`` leaves give ``None``).
        moments: the norms :math:`u`, a real tree of the same structure.
        decay: :math:`\beta`, a number or 0-d array.
        eps: :math:`\epsilon`, added to :math:`|g|`, so that the norm stays positive.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.update_infinity_moment({"a": jnp.array([1.0, -2.0])}, {"a": jnp.array([4.0, 1.0])}, 0.5, 0.0)["a"].tolist()
        [2.0, 2.0]
    """
    for path, m in leaves_with_path(moments):
        if jnp.iscomplexobj(m):
            raise TypeError(f"update_infinity_moment: the moment at '{path_str(path)}' is {m.dtype}; it must be real")
    return _moment_step(
        "update_infinity_moment", updates, moments, decay, jnp.abs, lambda t, dm: jnp.maximum(t + eps, dm)
    )


def bias_correction(moment: PyTree, decay: Any, count: Any) -> PyTree:
    r"""Adam's bias correction of an average started at zero: :math:`m / (1 - \beta^t)`, leafwise.

    :math:`1 - \beta^t` is computed in at least float32 (in bfloat16, :math:`0.999^t` rounds to
    1); each leaf is divided in at least float32 and keeps its dtype.

    Args:
        moment: the averages :math:`m`, a tree.
        decay: :math:`\beta`, a number or 0-d array.
        count: :math:`t`, the number of updates averaged (at least 1).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> [round(x, 4) for x in tree.bias_correction({"a": jnp.array([0.19])}, 0.9, 2)["a"].tolist()]
        [1.0]
    """
    dtype = jnp.promote_types(jnp.result_type(decay), jnp.float32)
    correction = 1 - jnp.asarray(decay).astype(dtype) ** jnp.asarray(count).astype(dtype)

    def corrected(m):
        return (m.astype(jnp.promote_types(m.dtype, dtype)) / correction).astype(m.dtype)

    return jax.tree.map(corrected, moment)


def moments_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped and sharded like each leaf, in :func:`~gradtx.core.numerics.moment_dtype`
    (complex leaves stay complex).

    Args:
        tree: the tree to imitate, usually the parameters.
        dtype: the dtype asked for (``mu_dtype``); ``None`` for each leaf's own.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.tree import moments_like
        >>> moments_like({"z": jnp.ones(1, jnp.complex64)}, jnp.bfloat16)["z"].dtype
        dtype('complex64')
    """
    return jax.tree.map(lambda x: zeros_like(x, moment_dtype(x, dtype)), tree)


def magnitudes_like(tree: PyTree, fill_value: Any = 0, dtype: Any = None) -> PyTree:
    """``fill_value`` shaped and sharded like each leaf, in :func:`~gradtx.core.numerics.magnitude_dtype`
    (real, float32 for float16).

    Args:
        tree: the tree to imitate, usually the parameters.
        fill_value: the value of every element.
        dtype: the dtype asked for; ``None`` for each leaf's own real dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.tree import magnitudes_like
        >>> magnitudes_like({"z": jnp.ones(1, jnp.complex64), "h": jnp.ones(1, jnp.float16)})["h"].dtype
        dtype('float32')
    """
    return jax.tree.map(lambda x: full_like(x, fill_value, magnitude_dtype(x, dtype)), tree)


def check_real(who: str, tree: PyTree, why: str = "it orders values, and complex numbers have no order") -> None:
    """Raise a ``TypeError`` naming ``who``, the first complex leaf of ``tree`` and its dtype, if there is one.

    For the few transforms that compare values with ``<`` or ``>``, which has no
    meaning for complex numbers; ``why`` ends the message.

    Args:
        who: the transform, named in the error.
        tree: the parameters or updates checked.
        why: the reason, ending the message.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.tree import check_real
        >>> check_real("clamp", {"b": jnp.ones(1), "w": jnp.ones(2, jnp.complex64)})
        Traceback (most recent call last):
        ...
        TypeError: clamp does not support complex parameters: 'w' is complex64 (it orders values, and complex numbers have no order)
    """

    for path, leaf in leaves_with_path(tree):
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"{who} does not support complex parameters: '{path_str(path)}' is {jnp.result_type(leaf)} ({why})"
            )
