"""Pytree arithmetic: leafwise operations, reductions and norms, as in ``optax.tree``; the trees
made like other trees (filled, random, cast, moments) are in :mod:`gradtx.core.tree_like`, and
re-exported here.

Binary operations take trees of the same structure; when they differ, the error names the
first differing path. Paths, structure checks and reading values by name are in
:mod:`gradtx.core.paths`.
"""

from __future__ import annotations

import builtins
import functools
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core import control
from gradtx.core.aliases import PyTree
from gradtx.core.numerics import (
    norm_dtype,
    stable_norm,
)
from gradtx.core.paths import check_same_structure as check_same_structure  # re-exported: see below
from gradtx.core.paths import key_name as key_name  # re-exported: see below
from gradtx.core.paths import leafwise, leaves_with_path, path_str
from gradtx.core.tree_like import (  # re-exported: the transforms reach them as _tree.<name>
    allclose,
    batch_shape,
    bias_correction,
    cast,
    cast_like,
    check_real,
    dtype,
    full_like,
    magnitudes_like,
    moments_like,
    ones_like,
    random_like,
    size,
    split_key_like,
    unwrap_random_key_data,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from gradtx.core.tree_like import (  # re-exported: the transforms reach them as _tree.X
    zeros_like as zeros_like,
)
from gradtx.core.validation import check_one_of

# The transforms check and name trees as ``_tree.check_same_structure(...)`` and ``_tree.path_str(...)``:
# those path helpers live in :mod:`gradtx.core.paths` and are re-exported here for them.


# ----------------------------------------------------------------------- arithmetic


def add(tree_x: PyTree, tree_y: PyTree, *other_trees: PyTree) -> PyTree:
    """Leafwise sum of two or more trees of the same structure.

    Args:
        tree_x: the first tree.
        tree_y: the second tree.
        *other_trees: more trees to add.

    Example:
        >>> from gradtx import tree
        >>> tree.add({"a": 1.0}, {"a": 2.0}, {"a": 3.0})
        {'a': 6.0}
    """
    names = ("tree_x", "tree_y", *(f"other_trees[{i}]" for i in range(len(other_trees))))
    return leafwise("add", names, lambda *xs: builtins.sum(xs[1:], xs[0]), tree_x, tree_y, *other_trees)


def sub(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """Leafwise ``tree_x - tree_y``.

    Args:
        tree_x: the tree subtracted from.
        tree_y: the tree subtracted.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.sub({"a": jnp.array([3.0])}, {"a": jnp.array([1.0])})["a"].tolist()
        [2.0]
    """
    return leafwise("sub", ("tree_x", "tree_y"), jnp.subtract, tree_x, tree_y)


def mul(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """Leafwise product ``tree_x * tree_y``.

    Args:
        tree_x: the first factor.
        tree_y: the second factor, a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.mul({"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, 4.0])})["a"].tolist()
        [3.0, 8.0]
    """
    return leafwise("mul", ("tree_x", "tree_y"), jnp.multiply, tree_x, tree_y)


def div(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """Leafwise true division ``tree_x / tree_y`` (integers give floats).

    Args:
        tree_x: the dividend.
        tree_y: the divisor, a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.div({"a": jnp.array([1, 3])}, {"a": jnp.array([2, 4])})["a"].tolist()
        [0.5, 0.75]
    """
    return leafwise("div", ("tree_x", "tree_y"), jnp.divide, tree_x, tree_y)


def scale(scalar: Any, tree: PyTree) -> PyTree:
    """Every leaf times ``scalar``, keeping each leaf's dtype.

    Args:
        scalar: a number or 0-d array.
        tree: the tree to scale.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.scale(2.0, {"a": jnp.ones(2, jnp.bfloat16)})["a"].dtype
        dtype(bfloat16)
    """
    return jax.tree.map(lambda x: (scalar * x).astype(x.dtype), tree)


def add_scale(tree_x: PyTree, scalar: Any, tree_y: PyTree) -> PyTree:
    """Leafwise ``tree_x + scalar * tree_y``, in the promoted dtype of the two leaves (as Optax's).

    Args:
        tree_x: the tree added to.
        scalar: a number or 0-d array multiplying ``tree_y``.
        tree_y: a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.add_scale({"a": jnp.array([1.0])}, -2.0, {"a": jnp.array([3.0])})["a"].tolist()
        [-5.0]
    """
    return leafwise("add_scale", ("tree_x", "tree_y"), lambda x, y: x + scalar * y, tree_x, tree_y)


def add_scaled(a: PyTree, scalar: Any, b: PyTree) -> PyTree:
    """Leafwise ``a + scalar * b``, in the dtype of ``a`` (:func:`add_scale` promotes instead).

    Args:
        a: the tree added to; it gives the dtypes.
        scalar: a number or 0-d array multiplying ``b``.
        b: a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.add_scaled({"a": jnp.ones(1, jnp.bfloat16)}, 0.5, {"a": jnp.ones(1)})["a"].dtype
        dtype(bfloat16)
    """
    return leafwise("add_scaled", ("a", "b"), lambda x, y: (x + scalar * y).astype(x.dtype), a, b)


def vdot(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
    r"""Inner product :math:`\sum \bar{x} y` of two trees over all their elements (``tree_x`` conjugated).

    Args:
        tree_x: the first tree, conjugated.
        tree_y: a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> complex(tree.vdot({"z": jnp.array([1j])}, {"z": jnp.array([1j])}))
        (1+0j)
    """
    products = leafwise("vdot", ("tree_x", "tree_y"), lambda x, y: jnp.sum(jnp.conj(x) * y), tree_x, tree_y)
    return builtins.sum(jax.tree.leaves(products), jnp.zeros((), jnp.result_type(float)))


def sum(tree: PyTree, associative_reduction: bool = False) -> jax.Array:  # noqa: A001 - Optax's name
    """Sum of every element of every leaf, in at least the default float dtype.

    Args:
        tree: the tree to sum.
        associative_reduction: add the leaves' sums pairwise (a tree of additions of depth
            ``log2(leaves)``, which XLA may reorder) instead of one after the other.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> float(tree.sum({"a": jnp.ones(3), "b": [jnp.array(2)]}, associative_reduction=True))
        5.0
    """
    parts = [jnp.zeros((), jnp.result_type(float))] + [jnp.sum(x) for x in jax.tree.leaves(tree)]
    if not associative_reduction:
        return builtins.sum(parts[1:], parts[0])
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _extreme(who: str, tree: PyTree, reduce: Any, pick: Any, empty: float) -> jax.Array:
    for path, x in leaves_with_path(tree):
        if jnp.iscomplexobj(x):
            raise TypeError(f"{who}: '{path_str(path)}' is {jnp.result_type(x)}, and complex numbers have no order")
    # XLA:CPU's vectorised max and min drop a NaN from 4,096 or more elements (jax 0.10.2)
    parts = [
        jnp.where(jnp.any(jnp.isnan(x)), jnp.nan, reduce(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else reduce(x)
        for x in map(jnp.asarray, jax.tree.leaves(tree))
        if x.size
    ]
    return functools.reduce(pick, parts) if parts else jnp.asarray(empty, jnp.result_type(float))


def max(tree: PyTree) -> jax.Array:  # noqa: A001 - Optax's name
    """The largest element of all leaves (``-inf`` for a tree without elements); NaN if any is NaN.

    Args:
        tree: a tree of real arrays; a complex leaf raises a ``TypeError``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> float(tree.max({"a": jnp.array([1.0, 5.0]), "b": [jnp.array(-2.0)]}))
        5.0
    """
    return _extreme("max", tree, jnp.max, jnp.maximum, -jnp.inf)


def min(tree: PyTree) -> jax.Array:  # noqa: A001 - Optax's name
    """The smallest element of all leaves (``inf`` for a tree without elements); NaN if any is NaN.

    Args:
        tree: a tree of real arrays; a complex leaf raises a ``TypeError``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> float(tree.min({"a": jnp.array([1.0, 5.0]), "b": [jnp.array(-2.0)]}))
        -2.0
    """
    return _extreme("min", tree, jnp.min, jnp.minimum, jnp.inf)


def conj(tree: PyTree) -> PyTree:
    """The complex conjugate of every leaf (real leaves are unchanged).

    Args:
        tree: any tree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.conj({"z": jnp.array([1 + 2j])})["z"].tolist()
        [(1-2j)]
    """
    return jax.tree.map(jnp.conj, tree)


def real(tree: PyTree) -> PyTree:
    """The real part of every leaf, in the real dtype of its precision (real leaves are unchanged).

    Args:
        tree: any tree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.real({"z": jnp.array([1 + 2j])})["z"].tolist()
        [1.0]
    """
    return jax.tree.map(jnp.real, tree)


def where(condition: Any, tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """Leafwise ``tree_x if condition else tree_y``; ``condition`` is one boolean or a tree of them.

    Args:
        condition: a boolean (0-d array), or a tree of boolean arrays shaped like the trees.
        tree_x: the values where ``condition`` is true.
        tree_y: the values where it is false, a tree of the same structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.where(jnp.array(False), {"a": 1.0}, {"a": 2.0})["a"].tolist()
        2.0
    """
    if jax.tree.structure(condition).num_leaves == 1 and jnp.ndim(jax.tree.leaves(condition)[0]) == 0:  # type: ignore[attr-defined]
        c = jax.tree.leaves(condition)[0]
        return leafwise("where", ("tree_x", "tree_y"), lambda x, y: jnp.where(c, x, y), tree_x, tree_y)
    return leafwise("where", ("condition", "tree_x", "tree_y"), jnp.where, condition, tree_x, tree_y)


def clip(tree: PyTree, min_value: Any = None, max_value: Any = None) -> PyTree:
    """Every element clipped to ``[min_value, max_value]``, keeping dtypes.

    Args:
        tree: the tree to clip.
        min_value: the lower bound; ``None`` for none.
        max_value: the upper bound; ``None`` for none.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.clip({"a": jnp.array([-3.0, 0.5, 3.0])}, -1.0, 1.0)["a"].tolist()
        [-1.0, 0.5, 1.0]
    """
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value).astype(x.dtype), tree)


# ---------------------------------------------------------------------------- norms


def norm(tree: PyTree, ord: Any = None, squared: bool = False, *, axis_name: Any = None) -> jax.Array:
    """The l1, l2 or infinity norm of all elements of a tree taken together.

    The l2 norm reads the leaves once; only when that sum of squares overflows
    (entries near 1e30 in float32) or underflows (near 1e-30) is it recomputed
    scaled by the largest entry, so the result is finite and accurate for any
    finite input. Sums are taken in at least float32.

    Args:
        tree: the tree whose norm is taken; complex entries count by their modulus.
        ord: ``None`` or ``2`` for the l2 norm, ``1`` for l1, ``"inf"`` or ``jnp.inf`` for the
            largest magnitude.
        squared: return the square of the norm (for l2, the sum of squares, without the root).
        axis_name: a mapped axis (of ``shard_map``, ``pmap`` or ``vmap``) across which every
            leaf is split: each device holds a disjoint part of the tree, and the norm is that
            of the whole tree (sums are taken with ``psum``, the largest magnitude with
            ``pmax``). Leave it ``None`` when each device holds the whole tree, as in data
            parallelism with averaged gradients, and under ``jit``, where XLA inserts the reductions.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> float(tree.norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
        5.0
        >>> round(float(tree.norm({"a": jnp.array([3e30]), "b": jnp.array([4e30])})) / 1e30, 5)  # no overflow
        5.0
        >>> float(tree.norm({"a": jnp.array([3.0, -4.0])}, 1, squared=True))
        49.0
    """

    check_one_of("norm: ord", ord, (None, 1, 2, "inf", float("inf")))
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    dtype = jnp.result_type(*[norm_dtype(x) for x in leaves]) if leaves else jnp.result_type(float)

    pieces = _packed(leaves)

    def total(term, reduce, collective):
        parts = [reduce(term(x)) for x in pieces]
        out = reduce(jnp.stack(parts)) if parts else jnp.zeros((), dtype)
        return out if axis_name is None else collective(out, axis_name)

    def magnitude(x):
        return jnp.abs(x).astype(dtype)

    def largest(x):
        # XLA:CPU's vectorised max drops a NaN from 4,096 or more elements (jax 0.10.2); the sum of
        # the magnitudes is NaN exactly when one of them is, and rides in the same pass
        return jnp.where(jnp.isnan(jnp.sum(x)), jnp.nan, jnp.max(x, initial=0))

    if ord in (1, "inf", float("inf")):
        out = total(magnitude, jnp.sum, jax.lax.psum) if ord == 1 else total(magnitude, largest, jax.lax.pmax)
        return jnp.square(out) if squared else out
    squares = total(lambda x: jnp.square(magnitude(x)), jnp.sum, jax.lax.psum)
    if squared:
        return squares

    def rescaled(_):
        top = total(magnitude, largest, jax.lax.pmax)
        unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
        return unit * jnp.sqrt(total(lambda x: jnp.square(magnitude(x) / unit), jnp.sum, jax.lax.psum))

    return control.cond(_out_of_range(squares), rescaled, lambda _: jnp.sqrt(squares), None)


def _out_of_range(squares: jax.Array) -> jax.Array:
    """Whether a sum of squares overflowed or fell below the smallest normal number, so
    that the norm must be recomputed scaled by the largest entry (also true for 0)."""
    return ~jnp.isfinite(squares) | (squares < jnp.finfo(squares.dtype).tiny)


PACK_BELOW = 1 << 16
"""Leaves with fewer elements than this are packed together for a reduction (see :func:`_packed`)."""


def _packed(arrays: list[jax.Array]) -> list[jax.Array]:
    """The arrays a tree-wide reduction runs over: on a single device, the small ones
    raveled and concatenated, one vector per dtype, and the large ones as they are; on
    several devices, all of them as they are, so that no sharded leaf is ever gathered.

    XLA:CPU compiles and runs one reduction kernel per leaf: a tree of 2,000 small
    leaves took 23 s to compile and 7.8 ms to run its l2 norm, against 1.3 s and
    2.7 ms for one reduction over the packed vector (docs/benchmarks.md). The raw
    leaves are packed, and the reduction's elementwise terms applied to the packed
    vector: terms applied leaf by leaf before packing would each become a kernel
    per leaf again. Sums change only by the order of additions.
    """
    small = [x for x in arrays if x.size < PACK_BELOW]
    if len(small) < 2 or jax.device_count() > 1:
        return arrays
    by_dtype: dict[Any, list[jax.Array]] = {}
    for x in small:
        by_dtype.setdefault(x.dtype, []).append(jnp.ravel(x))
    return [x for x in arrays if x.size >= PACK_BELOW] + [jnp.concatenate(v) for v in by_dtype.values()]


def block_norms(tree: PyTree, rms: bool = False) -> PyTree:
    r"""The l2 norm of each leaf (a *block*), or its root mean square, as a tree of 0-d arrays.

    .. math::
        \lVert x \rVert_2 = \sqrt{\textstyle\sum_i |x_i|^2}, \qquad
        \mathrm{rms}(x) = \lVert x \rVert_2 / \sqrt{\mathrm{size}(x)}

    Each is :func:`gradtx.core.numerics.stable_norm` of the leaf: accurate for any finite
    entries, 1e30 and 1e-30 alike. A large leaf (:data:`PACK_BELOW` elements or
    more) is read once for its sum of squares, as :func:`norm` reads the tree;
    only when some large leaf's sum overflows or falls below the smallest normal
    number (or the leaf is all zeros) are the large leaves' norms recomputed scaled
    by their largest entry, in one branch for the whole tree. Small leaves take
    the scaled norm directly: two reductions, each one kernel per leaf shape.
    ``None`` leaves stay ``None``; empty leaves have norm 0.

    Args:
        tree: the tree whose leaves' norms are taken.
        rms: return each leaf's root mean square instead of its norm.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> norms = tree.block_norms({"a": jnp.array([3.0, 4.0]), "b": jnp.array([1e30, 1e30])})
        >>> float(norms["a"]), round(float(norms["b"]) / 1e30, 5)
        (5.0, 1.41421)
        >>> round(float(tree.block_norms({"a": jnp.array([3.0, 4.0])}, rms=True)["a"]), 5)  # 5 / sqrt(2)
        3.53553
    """

    leaves, treedef = jax.tree.flatten(tree)
    leaves = [jnp.asarray(x) for x in leaves]
    norms = [None if x.size >= PACK_BELOW else stable_norm(x) for x in leaves]
    large = [i for i, x in enumerate(leaves) if x.size >= PACK_BELOW]
    if large:
        sums = [jnp.sum(jnp.square(jnp.abs(leaves[i]).astype(norm_dtype(leaves[i])))) for i in large]
        redo = [_out_of_range(s) for s in sums]

        def rescaled(fast):
            return [jnp.where(r, stable_norm(leaves[i]), f) for r, f, i in zip(redo, fast, large)]

        fast = [jnp.sqrt(s) for s in sums]
        fast = jax.lax.cond(jnp.any(jnp.stack(redo)), rescaled, lambda fast: fast, fast)
        for i, n in zip(large, fast):
            norms[i] = n
    if rms:
        norms = [n / jnp.sqrt(jnp.asarray(builtins.max(x.size, 1), n.dtype)) for n, x in zip(norms, leaves)]  # type: ignore[operator, union-attr]
    return jax.tree.unflatten(treedef, norms)


__all__ = [
    "add",
    "add_scale",
    "add_scaled",
    "allclose",
    "batch_shape",
    "bias_correction",
    "block_norms",
    "cast",
    "cast_like",
    "check_real",
    "check_same_structure",
    "clip",
    "conj",
    "div",
    "dtype",
    "full_like",
    "key_name",
    "leaves_with_path",
    "magnitudes_like",
    "max",
    "min",
    "moments_like",
    "mul",
    "norm",
    "ones_like",
    "path_str",
    "random_like",
    "real",
    "scale",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
]
