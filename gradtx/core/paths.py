"""Paths in a pytree: naming them, comparing two trees by them, and reading and setting the
values of an optimizer state by name.

A *path* is the sequence of keys from the root to a node: dict keys, sequence indices and field
names. It is written with its keys joined by ``/``, e.g. ``"0/mu/layer/w"``.

:func:`get`, :func:`get_all_with_path` and :func:`set` find values by a *key*, as
``optax.tree.get`` does: a key names a dict entry, a NamedTuple field, or a NamedTuple by its
class name (``"ScaleByAdamState"``); gradtx adds the attribute names of other nodes (registered
dataclasses) and *path suffixes*: a key with a ``/`` names every node whose path ends with
those keys, so ``"0/mu"`` is the ``mu`` under the first member of a chain, and a leading ``/``
anchors it at the root (``"/count"`` is only the outermost ``count``). The paths these
functions return, and give to a ``filtering(path, value)`` function, name NamedTuple fields
with :class:`NamedTupleKey`.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from gradtx.core.aliases import KeyPath, OptState, PyTree

HYPERPARAMS_FIELD = "hyperparams"
"""The field gradtx's states keep their hyperparameters in (:mod:`gradtx.core.hyperparams`)."""


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
    """The key of a NamedTuple field in the paths :func:`get_all_with_path` returns.

    It names the tuple's class as well as the field, so that a ``filtering`` function can tell
    apart two fields of the same name in different states: ``NamedTupleKey("ScaleByAdamState",
    "count")``. It prints as ``ScaleByAdamState.count``.

    Args:
        tuple_name: the name of the NamedTuple's class.
        name: the name of the field.

    Example:
        >>> from gradtx.tree_utils import NamedTupleKey
        >>> key = NamedTupleKey("ScaleByAdamState", "count")
        >>> str(key), key.name
        ('ScaleByAdamState.count', 'count')
    """

    tuple_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.tuple_name}.{self.name}"


def key_name(key: Any) -> str:
    """The text of one path key: a dict key, an index or a field or attribute name.

    Args:
        key: a key of a path, as ``jax.tree_util`` or :func:`get_all_with_path` gives it.

    Example:
        >>> from jax.tree_util import DictKey, SequenceKey
        >>> from gradtx import tree
        >>> tree.key_name(DictKey("w")), tree.key_name(SequenceKey(0)), tree.key_name(tree.NamedTupleKey("S", "mu"))
        ('w', '0', 'mu')
    """
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, SequenceKey):
        return str(key.idx)
    if isinstance(key, (GetAttrKey, NamedTupleKey)):
        return key.name
    if isinstance(key, FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_str(path: Sequence[Any]) -> str:
    """A key path as ``a/b/0/c``; the root is ``<root>``.

    Args:
        path: a sequence of path keys.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import tree
        >>> [tree.path_str(p) for p, _ in tree.leaves_with_path({"a": [jnp.ones(1), {"b": 2.0}]})]
        ['a/0', 'a/1/b']
    """
    return "/".join(key_name(k) for k in path) or "<root>"


def leaves_with_path(tree: PyTree) -> list[tuple[KeyPath, Any]]:
    """Every leaf of ``tree`` with its key path (as ``jax.tree_util`` gives it), in flattening order.

    Args:
        tree: any pytree.

    Example:
        >>> from gradtx import tree
        >>> [(tree.path_str(p), x) for p, x in tree.leaves_with_path({"b": 2, "a": (1, None)})]
        [('a/0', 1), ('b', 2)]
    """
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def node_at(tree: PyTree, path: KeyPath) -> Any:
    """The subtree of ``tree`` at ``path``.

    Args:
        tree: any pytree.
        path: a key path, as ``jax.tree_util`` or :func:`get_all_with_path` gives it.

    Example:
        >>> from jax.tree_util import DictKey, SequenceKey
        >>> from gradtx import tree
        >>> tree.node_at({"a": [1, {"b": 2}]}, (DictKey("a"), SequenceKey(1)))
        {'b': 2}
    """
    node = tree
    for key in path:
        if isinstance(key, DictKey):
            node = node[key.key]
        elif isinstance(key, SequenceKey):
            node = node[key.idx]
        elif isinstance(key, (GetAttrKey, NamedTupleKey)):
            node = getattr(node, key.name)
        else:  # a node flattened by index only: reach it through its children
            node = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0][key.key][1]  # noqa: B023 (used at once)
    return node


# ------------------------------------------------------------------- structure


def _describe(tree: PyTree) -> str:
    text = str(jax.tree.structure(tree))
    return text if len(text) <= 200 else text[:200] + "..."


def _kind(tree: PyTree, path: KeyPath) -> str:
    try:
        return type(node_at(tree, path)).__name__
    except Exception:  # noqa: BLE001 - only used to word an error
        return "container"


def first_difference(expected: PyTree, got: PyTree) -> str | None:
    """A sentence naming the first path where two trees differ, or ``None`` if they match.

    Args:
        expected: the first tree.
        got: the second tree.

    Example:
        >>> from gradtx import tree
        >>> tree.first_difference({"a": 1, "b": 2}, {"a": 1})
        "'b' is missing from the second tree"
    """
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
            if pa in builtins.set(paths_b):
                return f"'{path_str(pb)}' is present only in the second tree"
            if pb not in builtins.set(paths_a):  # a renamed key: say what stands in its place
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

    Args:
        expected: the tree ``got`` must match.
        got: the tree checked.
        expected_name: what the error calls ``expected`` (``"the parameters"``).
        got_name: what the error calls ``got`` (``"the updates"``).
        shapes: whether the leaves' shapes must match too.

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


# --------------------------------------------------------------- values by key

Filtering = Callable[[KeyPath, Any], bool]


def _is_named_tuple(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _nodes(tree: PyTree, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every node of ``tree``, the root and the leaves included, with its path, parents first."""
    yield path, tree
    if jax.tree_util.all_leaves([tree]):
        return
    for (key,), child in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)[0]:
        if _is_named_tuple(tree) and isinstance(key, GetAttrKey):
            key = NamedTupleKey(type(tree).__name__, key.name)
        yield from _nodes(child, (*path, key))


def _matcher(key: Any) -> Callable[[KeyPath, Any], bool]:
    """Whether a node (given with its path) is named by ``key``; see the module's docstring."""
    parts = [part for part in key.split("/") if part] if isinstance(key, str) and "/" in key else []
    suffix = (key.startswith("/"), parts) if parts else None

    def named(path: KeyPath, node: Any) -> bool:
        if _is_named_tuple(node) and type(node).__name__ == key:
            return True
        last = path[-1] if path else None
        if isinstance(last, DictKey) and last.key == key:
            return True
        if isinstance(last, (NamedTupleKey, GetAttrKey)) and last.name == key:
            return True
        if suffix is None:
            return False
        anchored, parts = suffix
        names = [key_name(k) for k in path]
        return names == parts if anchored else names[builtins.max(len(names) - len(parts), 0) :] == parts

    return named


def get_all_with_path(tree: PyTree, key: Any, filtering: Filtering | None = None) -> list[tuple[KeyPath, Any]]:
    """Every subtree of ``tree`` named by ``key``, with its path, parents before their children.

    A match inside another match is listed too (``{"a": {"a": 1}}`` has two values for
    ``"a"``). The paths name NamedTuple fields with :class:`NamedTupleKey`;
    :func:`path_str` writes them as ``0/mu``.

    Args:
        tree: the tree to search, usually an optimizer state.
        key: a dict key, a NamedTuple field or class name, an attribute name, or a path suffix
            such as ``"0/nu"`` (see the module's docstring).
        filtering: ``filtering(path, value) -> bool``, called on each match; only those for which
            it returns true are kept.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> [gradtx.tree.path_str(path) for path, _ in gradtx.tree.get_all_with_path(state, "count")]
        ['0/count', '1/count']
        >>> [str(path[-1]) for path, _ in gradtx.tree.get_all_with_path(state, "mu")]
        ['ScaleByAdamState.mu']
    """
    named = _matcher(key)
    return [(p, node) for p, node in _nodes(tree) if named(p, node) and (filtering is None or filtering(p, node))]


def _storage_owner(path: KeyPath) -> KeyPath | None:
    """The path of the state whose hyperparameter storage holds (or is) the node at ``path``."""
    names = [key_name(k) for k in path]
    if HYPERPARAMS_FIELD not in names:
        return None
    return tuple(path[: len(names) - 1 - names[::-1].index(HYPERPARAMS_FIELD)])


def _is_step_counter(path: KeyPath, value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    integer = dtype is not None and jnp.issubdtype(dtype, jnp.integer) and jnp.ndim(value) == 0
    return bool(path) and key_name(path[-1]) == "count" and integer


def _governing(found: list[tuple[KeyPath, Any]]) -> list[tuple[KeyPath, Any]]:
    """Of several matches, the one that stands for all of them, if the rules of :func:`get` give one."""
    if all(_is_step_counter(p, v) for p, v in found):
        return found[:1]
    owners = [_storage_owner(p) for p, _ in found]
    known = [o for o in owners if o is not None]
    if len(known) < len(owners):
        return found
    outer = builtins.min(range(len(found)), key=lambda i: len(known[i]))
    top = known[outer]
    nested = all(len(o) > len(top) and o[: len(top)] == top for i, o in enumerate(known) if i != outer)
    return [found[outer]] if nested else found


def get(tree: PyTree, key: Any, default: Any = None, filtering: Filtering | None = None) -> Any:
    """The one value of ``tree`` named by ``key``, or ``default`` when none is.

    Keys are matched as by :func:`get_all_with_path`. gradtx's states hold more values of a
    name than Optax's, so two rules choose among several matches before they are an error:

    1. *Step counters.* When every match is a step counter (a 0-d integer array named
       ``count``), the first in flattening order is returned: the one :func:`gradtx.step_count`
       reads (a wrapper's own counter, when it has one, comes before those it wraps). Every
       gradtx block counts its steps, and schedules theirs, so
       ``get(gradtx.adam(1e-3).init(params), "count")`` is the step count, as in Optax.
    2. *Hyperparameters of a wrapper.* When every match is in hyperparameter storage (a
       ``hyperparams`` field) and one state's storage encloses all the others (a wrapper such as
       ``inject_hyperparams`` and the states it wraps), that outermost one is returned: the
       wrapper writes its value into the inner states.

    Any other several matches (``"b1"`` of two chained Adams) raise a ``KeyError`` naming them.

    Args:
        tree: the tree to search, usually an optimizer state.
        key: a dict key, a NamedTuple field or class name, an attribute name, or a path suffix
            such as ``"0/nu"`` (see the module's docstring).
        default: what to return when nothing matches.
        filtering: ``filtering(path, value) -> bool``, called on each match; only those for which
            it returns true are kept.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> int(gradtx.tree.get(state, "count")), gradtx.tree.get(state, "nu")["w"].tolist()
        (0, [0.0, 0.0])
        >>> gradtx.tree.get(state, "nope", default=-1)
        -1
        >>> gradtx.tree.get(state, "w")
        Traceback (most recent call last):
        ...
        KeyError: "get: 'w' names several values: '0/mu/w', '0/nu/w'; pass a longer path ('0/mu/w') or a filtering function to choose one"
    """
    found = get_all_with_path(tree, key, filtering)
    if len(found) > 1:
        found = _governing(found)
    if not found:
        return default
    if len(found) > 1:
        paths = ", ".join(f"'{path_str(p)}'" for p, _ in found)
        raise KeyError(
            f"get: {key!r} names several values: {paths}; "
            f"pass a longer path ('{path_str(found[0][0])}') or a filtering function to choose one"
        )
    return found[0][1]


def _plain_key(key: Any) -> Any:
    """A key of :func:`get_all_with_path` as ``jax.tree_util`` writes it in a leaf's path."""
    return GetAttrKey(key.name) if isinstance(key, NamedTupleKey) else key


def set(tree: PyTree, filtering: Filtering | None = None, /, **kwargs: Any) -> PyTree:  # noqa: A001 - Optax's name
    """A copy of ``tree`` with every value named by each keyword replaced, structure unchanged.

    Keys are matched as by :func:`get_all_with_path`, and every match is replaced, as in
    Optax (``set(state, count=0)`` resets every step counter); a match inside another is
    left to the outer one's new value. A path suffix is given as ``**{"0/count": 5}``.

    Unlike Optax's, each new value must have the structure and leaf shapes of the value it
    replaces, and its leaves are cast to the old dtypes, so that a jitted function taking the
    tree is not recompiled. A key that matches nothing raises a ``KeyError``.

    Args:
        tree: the tree to copy, usually an optimizer state.
        filtering: ``filtering(path, value) -> bool``, called on each match; only those for which
            it returns true are replaced. Positional only.
        **kwargs: the new values, by key.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> state = gradtx.tree.set(state, count=5)
        >>> [int(c) for _, c in gradtx.tree.get_all_with_path(state, "count")]
        [5, 5]
        >>> int(gradtx.step_count(gradtx.tree.set(state, **{"0/count": 7})))
        7
    """
    targets: dict[KeyPath, tuple[str, Any, Any]] = {}
    for key, value in kwargs.items():
        found = get_all_with_path(tree, key, filtering)
        if not found:
            which = " that filtering accepts" if filtering is not None else ""
            raise KeyError(f"set: no value{which} is named {key!r} in this tree")
        for path, old in found:
            plain = tuple(_plain_key(k) for k in path)
            if plain in targets and targets[plain][0] != key:
                raise ValueError(f"set: '{path_str(path)}' is named by both {targets[plain][0]!r} and {key!r}")
            targets[plain] = (key, old, value)
    outermost = {p: t for p, t in targets.items() if not any(len(q) < len(p) and p[: len(q)] == q for q in targets)}
    leaves = leaves_with_path(tree)
    new_leaves = [leaf for _, leaf in leaves]
    for target, (_, old, value) in outermost.items():
        replacements = iter(_conformed(old, value, path_str(target)))
        for i, (p, _) in enumerate(leaves):
            if p[: len(target)] == target:
                new_leaves[i] = next(replacements)
    return jax.tree.unflatten(jax.tree.structure(tree), new_leaves)


def _conformed(old: PyTree, new: PyTree, where: str) -> list[Any]:
    old_leaves, old_def = jax.tree.flatten(old)
    if jax.tree_util.treedef_is_leaf(old_def) and old_def.num_leaves == 1:  # type: ignore[attr-defined]
        new_leaves = [new]
    else:  # a subtree: the new value must have the same structure
        new_leaves, new_def = jax.tree.flatten(new)
        if new_def != old_def:  # type: ignore[operator]
            raise ValueError(
                f"set: the new value for '{where}' does not match the old one: {first_difference(old, new)}"
            )
    result = []
    for o, n in zip(old_leaves, new_leaves):
        try:
            n = jnp.asarray(n)
        except TypeError:
            raise TypeError(f"set: the new value for '{where}' must be an array or a number, got {n!r}") from None
        if jnp.shape(n) != jnp.shape(o):
            raise ValueError(
                f"set: the new value for '{where}' has shape {jnp.shape(n)}, but the old one has shape {jnp.shape(o)}"
            )
        result.append(n.astype(jnp.asarray(o).dtype))
    return result


# ------------------------------------------------------------ the params in a state


@jax.tree_util.register_pytree_node_class
class _Placeholder:
    """Stands for a whole tree of parameters: a pytree node without children, so that ``init``
    builds, in place of every subtree shaped like the parameters, a new placeholder."""

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls()


def map_params(
    initable: Any,
    f: Callable[..., Any],
    state: OptState,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> OptState:
    """Apply ``f`` leafwise to every subtree of an optimizer state shaped like the parameters.

    Which subtrees those are is found by initialising ``initable`` on a placeholder that stands
    for the whole parameter tree: where the placeholder comes back (a momentum, a second
    moment), ``f`` is mapped over the state's subtree and the trees ``rest``; every other leaf
    (step counts, hyperparameters) goes through ``transform_non_params``, or is kept. The
    common use is to give a state the sharding specs of the parameters.

    Args:
        initable: an optimizer (anything with ``init``) or an ``init`` function.
        f: called as ``f(leaf, *rest_leaves)`` on the leaves of each params-shaped subtree.
        state: the state to map over, made by ``initable``'s ``init``.
        *rest: trees shaped like the parameters whose leaves are given to ``f`` too.
        transform_non_params: called on every other leaf of the state; ``None`` keeps them.
        is_leaf: given to the ``jax.tree.map`` over each params-shaped subtree.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adam(1e-3)
        >>> params = {"w": jnp.zeros(2)}
        >>> specs = gradtx.tree.map_params(tx, lambda _, spec: spec, tx.init(params), {"w": "rows"},
        ...                                transform_non_params=lambda _: None)
        >>> specs[0].mu, specs[0].nu, specs[0].count
        ({'w': 'rows'}, {'w': 'rows'}, None)
    """
    init = initable.init if hasattr(initable, "init") else initable
    marked = init(_Placeholder())

    def leaf(mark: Any, value: Any) -> Any:
        if isinstance(mark, _Placeholder):
            return jax.tree.map(f, value, *rest, is_leaf=is_leaf)
        return value if transform_non_params is None else transform_non_params(value)

    try:
        return jax.tree.map(leaf, marked, state, is_leaf=lambda x: isinstance(x, _Placeholder))
    except ValueError as error:
        raise ValueError(f"map_params: the state does not have the structure initable's init gives: {error}") from None


def leafwise(who: str, names: tuple[str, ...], fn: Any, *trees: PyTree, with_path: bool = False, is_leaf=None):
    """``jax.tree.map(fn, *trees)`` (with the paths when ``with_path``); when the trees do not
    match, a ``ValueError`` naming ``who``, the trees by their ``names`` and the first differing
    path (looked for only after the map has failed, so matching trees cost nothing extra).

    Args:
        who: the function to name in the error.
        names: what each tree is, for the error (``("tree_x", "tree_y")``).
        fn: the function of the leaves.
        trees: the trees.
        with_path: pass each leaf's path to ``fn`` first.
        is_leaf: as for ``jax.tree.map``.

    Example:
        >>> from gradtx.core.paths import leafwise
        >>> leafwise("add", ("tree_x", "tree_y"), lambda a, b: a + b, {"a": 1}, {"a": 2})
        {'a': 3}
    """
    try:
        if with_path:
            return jax.tree_util.tree_map_with_path(fn, *trees, is_leaf=is_leaf)
        return jax.tree.map(fn, *trees, is_leaf=is_leaf)
    except (ValueError, TypeError, AttributeError):
        for name, other in zip(names[1:], trees[1:]):
            difference = first_difference(trees[0], other)
            if difference is not None:
                difference = difference.replace("the second tree", name).replace("the first tree", names[0])
                verb = "do" if name.endswith("s") else "does"
                raise ValueError(f"{who}: {name} {verb} not match {names[0]}: {difference}") from None
        raise
