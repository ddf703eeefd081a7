"""Pytree arithmetic, structure checks that name paths, and finding values by name.

Paths are written as their keys joined by ``/``: dict keys, sequence indices and
NamedTuple field names, e.g. ``"0/mu/layer/w"``. A *name* given to :func:`get`
or :func:`set` matches every path that ends with it, so ``"mu"`` finds a field
called ``mu`` anywhere and ``"0/mu"`` only the one under the first chain member.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from gradtx.core import tree as _tree
from gradtx.core.aliases import KeyPath, PyTree
from gradtx.core.numerics import magnitude_dtype, moment_dtype, norm_dtype, safe_norm

# --------------------------------------------------------------------------- paths


def key_name(key: Any) -> str:
    """The text of one path key: a dict key, an index or an attribute name."""
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, SequenceKey):
        return str(key.idx)
    if isinstance(key, GetAttrKey):
        return key.name
    if isinstance(key, FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_str(path: Sequence[Any]) -> str:
    """A key path as ``a/b/0/c``; the root is ``<root>``."""
    return "/".join(key_name(k) for k in path) or "<root>"


def leaves_with_path(tree: PyTree) -> list[tuple[KeyPath, Any]]:
    """Every leaf of ``tree`` with its key path, in flattening order."""
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _describe(tree: PyTree) -> str:
    text = str(jax.tree.structure(tree))
    return text if len(text) <= 200 else text[:200] + "..."


def _kind(tree: PyTree, path: KeyPath) -> str:
    try:
        return type(node_at(tree, path)).__name__
    except Exception:  # noqa: BLE001 - only used to word an error
        return "container"


def first_difference(expected: PyTree, got: PyTree) -> str | None:
    """A sentence naming the first path where two trees differ, or ``None`` if they match."""
    if jax.tree.structure(expected) == jax.tree.structure(got):  # type: ignore[operator]
        return None
    paths_a = [p for p, _ in leaves_with_path(expected)]
    paths_b = [p for p, _ in leaves_with_path(got)]
    for pa, pb in zip(paths_a, paths_b):
        if pa != pb:
            if pb[: len(pa)] == pa or pa[: len(pb)] == pb:  # a leaf in one tree is a container in the other
                at, container = (pa, _kind(got, pa)) if len(pa) < len(pb) else (pb, _kind(expected, pb))
                leaf_in, container_in = (
                    ("the first", "the second") if len(pa) < len(pb) else ("the second", "the first")
                )
                return f"'{path_str(at)}' is a single leaf in {leaf_in} tree but a {container} in {container_in} tree"
            if pa in set(paths_b):
                return f"'{path_str(pb)}' is present only in the second tree"
            if pb not in set(paths_a):  # a renamed key: say what stands in its place
                return f"'{path_str(pa)}' is missing from the second tree ('{path_str(pb)}' is in its place)"
            return f"'{path_str(pa)}' is missing from the second tree"
    if len(paths_a) > len(paths_b):
        return f"'{path_str(paths_a[len(paths_b)])}' is missing from the second tree"
    if len(paths_b) > len(paths_a):
        return f"'{path_str(paths_b[len(paths_a)])}' is present only in the second tree"
    return f"the leaves agree but the containers differ: {_describe(expected)} vs {_describe(got)}"


def check_same_structure(
    expected: PyTree,
    got: PyTree,
    expected_name: str,
    got_name: str,
    *,
    shapes: bool = False,
) -> None:
    """Raise a ``ValueError`` naming the first differing path unless the trees match.

    With ``shapes=True`` the leaves must also have the same shapes, and the error
    names the first leaf whose shape differs (a gradient with an extra batch axis
    would otherwise broadcast silently against a state shaped like the parameters).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> tree.check_same_structure({"w": jnp.ones(3)}, {"w": jnp.ones((8, 3))}, "the parameters", "the updates",
        ...                           shapes=True)
        Traceback (most recent call last):
        ...
        ValueError: the updates do not match the parameters: 'w' has shape (8, 3) in the updates but (3,) in the parameters.
    """
    expected_leaves, expected_def = jax.tree.flatten(expected)
    got_leaves, got_def = jax.tree.flatten(got)
    verb = "do" if got_name.split(" (")[0].endswith("s") else "does"  # "the updates do", "the mask does"
    if expected_def != got_def:  # type: ignore[operator]
        difference = first_difference(expected, got)
        difference = difference.replace("the second tree", got_name).replace("the first tree", expected_name)  # type: ignore[union-attr]
        raise ValueError(f"{got_name} {verb} not match {expected_name}: {difference}.")
    if shapes:
        for i, (e, g) in enumerate(zip(expected_leaves, got_leaves)):
            if getattr(e, "shape", None) != getattr(g, "shape", None) and jnp.shape(e) != jnp.shape(g):
                path = leaves_with_path(expected)[i][0]
                raise ValueError(
                    f"{got_name} {verb} not match {expected_name}: '{path_str(path)}' has shape {jnp.shape(g)} "
                    f"in {got_name} but {jnp.shape(e)} in {expected_name}."
                )


# ----------------------------------------------------------------------- arithmetic


def add(*trees: PyTree) -> PyTree:
    """Leafwise sum of trees of the same structure."""
    return jax.tree.map(lambda *xs: builtins.sum(xs[1:], xs[0]), *trees)


def sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a - b``."""
    return jax.tree.map(jnp.subtract, a, b)


def scale(scalar: Any, tree: PyTree) -> PyTree:
    """Every leaf times ``scalar``, keeping each leaf's dtype."""
    return jax.tree.map(lambda x: (scalar * x).astype(x.dtype), tree)


def add_scaled(a: PyTree, scalar: Any, b: PyTree) -> PyTree:
    """Leafwise ``a + scalar * b``, in the dtype of ``a``."""
    return jax.tree.map(lambda x, y: (x + scalar * y).astype(x.dtype), a, b)


def vdot(a: PyTree, b: PyTree) -> jax.Array:
    """Inner product of two trees, summed over all leaves."""
    products = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(jnp.conj(x) * y), a, b))
    return builtins.sum(products, jnp.zeros((), jnp.result_type(float)))


def sum(tree: PyTree) -> jax.Array:  # noqa: A001 - mirrors jnp.sum
    """Sum of every element of every leaf."""
    return builtins.sum((jnp.sum(x) for x in jax.tree.leaves(tree)), jnp.zeros((), jnp.result_type(float)))


def norm(tree: PyTree, ord: int | str = 2, squared: bool = False, *, axis_name: Any = None) -> jax.Array:
    """The l1, l2 or infinity norm of all elements of a tree taken together.

    The l2 norm reads the leaves once; only when that sum of squares overflows
    (entries near 1e30 in float32) or underflows (near 1e-30) is it recomputed
    scaled by the largest entry, so the result is finite and accurate for any
    finite input. Sums are taken in at least float32.

    ``axis_name`` names a mapped axis (of ``shard_map``, ``pmap`` or ``vmap``)
    across which every leaf is split: each device holds a disjoint part of the
    tree, and the norm is that of the whole tree (the squared l2 norm and the l1
    norm are summed with ``psum``, the infinity norm taken with ``pmax``). Leave
    it ``None`` when each device holds the whole tree, as in data parallelism
    with averaged gradients, and under ``jit``, where XLA inserts the reductions.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import tree
        >>> float(tree.norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
        5.0
        >>> round(float(tree.norm({"a": jnp.array([3e30]), "b": jnp.array([4e30])})) / 1e30, 5)  # no overflow
        5.0
    """

    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    if squared and ord != 2:
        raise ValueError("squared=True is only meaningful for ord=2")
    if ord not in (1, 2, "inf", float("inf")):
        raise ValueError(f"ord must be 1, 2 or 'inf', got {ord!r}")
    dtype = jnp.result_type(*[norm_dtype(x) for x in leaves]) if leaves else jnp.result_type(float)

    pieces = _packed(leaves)

    def total(term, reduce, collective):
        parts = [reduce(term(x)) for x in pieces]
        out = reduce(jnp.stack(parts)) if parts else jnp.zeros((), dtype)
        return out if axis_name is None else collective(out, axis_name)

    def magnitude(x):
        return jnp.abs(x).astype(dtype)

    def largest(x):
        return jnp.max(x, initial=0)

    if ord == 1:
        return total(magnitude, jnp.sum, jax.lax.psum)
    if ord != 2:
        return total(magnitude, largest, jax.lax.pmax)
    squares = total(lambda x: jnp.square(magnitude(x)), jnp.sum, jax.lax.psum)
    if squared:
        return squares

    def rescaled(_):
        top = total(magnitude, largest, jax.lax.pmax)
        unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
        return unit * jnp.sqrt(total(lambda x: jnp.square(magnitude(x) / unit), jnp.sum, jax.lax.psum))

    return jax.lax.cond(_out_of_range(squares), rescaled, lambda _: jnp.sqrt(squares), None)


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

    Each is :func:`gradtx.core.numerics.safe_norm` of the leaf: accurate for any finite
    entries, 1e30 and 1e-30 alike. A large leaf (:data:`PACK_BELOW` elements or
    more) is read once for its sum of squares, as :func:`norm` reads the tree;
    only when some large leaf's sum overflows or falls below the smallest normal
    number (or the leaf is all zeros) are the large leaves' norms recomputed scaled
    by their largest entry, in one branch for the whole tree. Small leaves take
    the scaled norm directly: two reductions, each one kernel per leaf shape.
    ``None`` leaves stay ``None``; empty leaves have norm 0.

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
    norms = [None if x.size >= PACK_BELOW else safe_norm(x) for x in leaves]
    large = [i for i, x in enumerate(leaves) if x.size >= PACK_BELOW]
    if large:
        sums = [jnp.sum(jnp.square(jnp.abs(leaves[i]).astype(norm_dtype(leaves[i])))) for i in large]
        redo = [_out_of_range(s) for s in sums]

        def rescaled(fast):
            return [jnp.where(r, safe_norm(leaves[i]), f) for r, f, i in zip(redo, fast, large)]

        fast = [jnp.sqrt(s) for s in sums]
        fast = jax.lax.cond(jnp.any(jnp.stack(redo)), rescaled, lambda fast: fast, fast)
        for i, n in zip(large, fast):
            norms[i] = n
    if rms:
        norms = [n / jnp.sqrt(jnp.asarray(max(x.size, 1), n.dtype)) for n, x in zip(norms, leaves)]  # type: ignore[operator, union-attr]
    return jax.tree.unflatten(treedef, norms)


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
    """
    return jax.tree.map(lambda x: _filled_like(x, 0, dtype), tree)


def full_like(tree: PyTree, fill_value: Any, dtype: Any = None) -> PyTree:
    """``fill_value`` shaped and sharded like each leaf, in ``dtype`` or the leaf's own dtype."""
    return jax.tree.map(lambda x: _filled_like(x, fill_value, dtype), tree)


def ones_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Ones shaped and sharded like each leaf, in ``dtype`` or the leaf's own dtype."""
    return full_like(tree, 1, dtype)


def where(condition: Any, a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a if condition else b``; ``condition`` is one boolean or a tree of them."""
    if jax.tree.structure(condition).num_leaves == 1 and jnp.ndim(jax.tree.leaves(condition)[0]) == 0:  # type: ignore[attr-defined]
        c = jax.tree.leaves(condition)[0]
        return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)
    return jax.tree.map(jnp.where, condition, a, b)


def clip(tree: PyTree, min_value: Any = None, max_value: Any = None) -> PyTree:
    """Every element clipped to ``[min_value, max_value]``, keeping dtypes."""
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value).astype(x.dtype), tree)


def allclose(a: PyTree, b: PyTree, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when the trees have the same structure and every pair of leaves is close."""
    if first_difference(a, b) is not None:
        return False
    return builtins.all(
        bool(jnp.allclose(x, y, rtol=rtol, atol=atol)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def random_like(key: jax.Array, tree: PyTree, sampler: Any = jax.random.normal, dtype: Any = None) -> PyTree:
    """Random values shaped like each leaf, one independent key per leaf.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import tree
        >>> noise = tree.random_like(jax.random.key(0), {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))})
        >>> noise["b"].shape, noise["a"].dtype
        ((2, 2), dtype('float32'))
    """
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(
        treedef, [sampler(k, jnp.shape(x), dtype or jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )


def cast(tree: PyTree, dtype: Any) -> PyTree:
    """Every leaf in ``dtype`` (``None`` keeps each leaf as it is)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def size(tree: PyTree) -> int:
    """The number of elements in all leaves."""
    return builtins.sum(int(jnp.size(x)) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------ values by name


def _matches(path: KeyPath, name: str) -> bool:
    wanted = name.strip("/").split("/")
    have = [key_name(k) for k in path]
    return len(have) >= len(wanted) and have[len(have) - len(wanted) :] == wanted


def node_at(tree: PyTree, path: KeyPath) -> Any:
    """The subtree of ``tree`` at ``path`` (a key path as ``jax.tree_util`` gives it)."""
    node = tree
    for key in path:
        if isinstance(key, DictKey):
            node = node[key.key]
        elif isinstance(key, SequenceKey):
            node = node[key.idx]
        elif isinstance(key, GetAttrKey):
            node = getattr(node, key.name)
        else:  # a node flattened by index only: reach it through its children
            node = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0][key.key][1]  # noqa: B023 (used at once)
    return node


def get_all_with_path(tree: PyTree, name: str) -> list[tuple[str, Any]]:
    """Every subtree whose path ends with ``name``, as ``(path, subtree)`` pairs.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> [path for path, _ in gradtx.core.tree.get_all_with_path(state, "mu")]
        ['0/mu']
    """
    found: dict[KeyPath, None] = {}
    for path, _ in leaves_with_path(tree):
        for end in range(len(path), 0, -1):
            if _matches(path[:end], name):
                found.setdefault(path[:end])
                break
    outermost = [p for p in found if not any(len(q) < len(p) and p[: len(q)] == q for q in found)]
    return [(path_str(p), node_at(tree, p)) for p in outermost]


def _only(tree: PyTree, name: str) -> tuple[str, Any]:
    matches = get_all_with_path(tree, name)
    if not matches:
        raise KeyError(f"no value named '{name}' in this tree")
    if len(matches) > 1:
        paths = ", ".join(f"'{p}'" for p, _ in matches)
        raise KeyError(f"'{name}' is ambiguous: it names {paths}; pass a longer path to choose one")
    return matches[0]


def get(tree: PyTree, name: str) -> Any:
    """The one subtree whose path ends with ``name``; ``KeyError`` if none or several."""
    return _only(tree, name)[1]


def set(tree: PyTree, **values: Any) -> PyTree:  # noqa: A001 - the natural name
    """A copy of ``tree`` with the subtree at each name replaced, structure unchanged.

    Each new value must have the structure and leaf shapes of the value it
    replaces; leaves are cast to the old dtypes, so a jitted function that takes
    the tree is not recompiled.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> state = gradtx.core.tree.set(state, **{"0/count": 5})
        >>> int(gradtx.step_count(state))
        5
    """
    leaves = leaves_with_path(tree)
    treedef = jax.tree.structure(tree)
    new_leaves = [leaf for _, leaf in leaves]
    for name, value in values.items():
        prefix_str, old = _only(tree, name)
        replacements = _conformed(old, value, prefix_str)
        positions = [
            i
            for i, (p, _) in enumerate(leaves)
            if path_str(p).startswith(prefix_str) and (path_str(p) == prefix_str or path_str(p)[len(prefix_str)] == "/")
        ]
        for i, leaf in zip(positions, replacements):
            new_leaves[i] = leaf
    return jax.tree.unflatten(treedef, new_leaves)


def _conformed(old: PyTree, new: PyTree, where: str) -> list[Any]:
    old_leaves, old_def = jax.tree.flatten(old)
    if jax.tree_util.treedef_is_leaf(old_def):
        new_leaves = [new]
    else:  # a subtree: the new value must have the same structure
        new_leaves, new_def = jax.tree.flatten(new)
        if new_def != old_def:  # type: ignore[operator]
            difference = first_difference(old, new)
            raise ValueError(f"the new value for '{where}' does not match the old one: {difference}")
    result = []
    for o, n in zip(old_leaves, new_leaves):
        n = jnp.asarray(n)
        if jnp.shape(n) != jnp.shape(o):
            raise ValueError(
                f"the new value for '{where}' has shape {jnp.shape(n)}, but the old one has shape {jnp.shape(o)}"
            )
        result.append(n.astype(jnp.asarray(o).dtype))
    return result


def moments_like(tree, dtype=None):
    """Zeros shaped and sharded like each leaf, in :func:`moment_dtype` (complex leaves stay complex)."""

    return jax.tree.map(lambda x: _tree.zeros_like(x, moment_dtype(x, dtype)), tree)


def magnitudes_like(tree, fill_value=0, dtype=None):
    """``fill_value`` shaped and sharded like each leaf, in :func:`magnitude_dtype` (real, float32 for float16)."""

    return jax.tree.map(lambda x: _tree.full_like(x, fill_value, magnitude_dtype(x, dtype)), tree)


def check_real(who: str, tree, why: str = "it orders values, and complex numbers have no order") -> None:
    """Raise a ``TypeError`` naming ``who``, the first complex leaf of ``tree`` and its dtype, if there is one.

    For the few transforms that compare values with ``<`` or ``>``, which has no
    meaning for complex numbers; ``why`` ends the message.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.tree import check_real
        >>> check_real("clamp", {"b": jnp.ones(1), "w": jnp.ones(2, jnp.complex64)})
        Traceback (most recent call last):
        ...
        TypeError: clamp does not support complex parameters: 'w' is complex64 (it orders values, and complex numbers have no order)
    """

    for path, leaf in _tree.leaves_with_path(tree):
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"{who} does not support complex parameters: '{_tree.path_str(path)}' is {jnp.result_type(leaf)} ({why})"
            )
