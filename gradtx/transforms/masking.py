"""Masks and labels from patterns on parameter paths.

Every optimizer chain that treats some parameters differently (no weight decay
on biases and norm scales, a frozen embedding, a separate learning rate for a
head) needs a mask or a labelling of the parameter tree. These build one from
glob patterns on the ``/``-joined path of each leaf, so the same rule works for
plain dicts, Flax linen ``params`` and Flax NNX ``State``.

Patterns use :mod:`fnmatch` syntax: ``*`` matches within and across path parts,
so ``"*bias"`` matches ``"params/Dense_0/bias"`` and ``"*norm*/scale"`` matches
``"encoder/layer_norm/scale"``. A trailing NNX ``Variable`` attribute
(``.../bias/value``) is not part of the path that patterns see.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
from jax.tree_util import GetAttrKey

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, PyTree
from gradtx.core.base import GradientTransformation, set_to_zero

_VARIABLE_ATTRIBUTES = ("value", "raw_value")


def param_path(path: tuple) -> str:
    """The path patterns are matched against: keys joined by ``/``, without a Variable's ``value``.

    Args:
        path: a leaf's key path, as ``jax.tree_util.tree_flatten_with_path`` gives it.

    Returns:
        The keys joined by ``/``, less a trailing ``value`` or ``raw_value`` attribute (of
        a Flax NNX ``Variable``).
    """
    keys = list(path)
    while keys and isinstance(keys[-1], GetAttrKey) and keys[-1].name in _VARIABLE_ATTRIBUTES:
        keys.pop()
    return _tree.path_str(keys)


def _patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    found = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    if not found or not all(isinstance(p, str) and p for p in found):
        raise ValueError(f"patterns must be non-empty strings, got {patterns!r}")
    return found


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def path_mask(patterns: str | Iterable[str], *, invert: bool = False) -> Callable[[PyTree], PyTree]:
    """A mask function: True for the leaves whose path matches one of ``patterns``.

    Args:
        patterns: an :mod:`fnmatch` pattern, or an iterable of them (non-empty strings),
            matched against each leaf's :func:`param_path`.
        invert: True for the leaves that match none instead, the usual form of "decay
            everything except biases and norm scales".

    Returns:
        A function of the parameters returning a tree of Python bools shaped like them,
        for any ``mask`` argument.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)}}
        >>> decay = gradtx.path_mask(["*bias", "norm/scale"], invert=True)
        >>> decay(params)
        {'dense': {'bias': False, 'kernel': True}, 'norm': {'scale': False}}
        >>> tx = gradtx.adamw(1e-3, weight_decay=0.1, mask=decay)
    """
    found = _patterns(patterns)

    def mask(params: PyTree) -> PyTree:
        return jax.tree_util.tree_map_with_path(lambda p, _: _matches(param_path(p), found) != invert, params)

    return mask


def path_labels(
    rules: Mapping[str, Any] | Iterable[tuple[str, Any]], default: Any = None
) -> Callable[[PyTree], PyTree]:
    """A label function: each leaf gets the label of the first pattern its path matches.

    Args:
        rules: the :mod:`fnmatch` patterns and their labels, in order: a mapping from
            pattern to label, or an iterable of ``(pattern, label)`` pairs.
        default: the label of a leaf that matches no pattern; with ``None``, such a leaf
            is a ``ValueError`` naming its path.

    Returns:
        A function of the parameters returning a tree of labels shaped like them, for
        :func:`partition`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"embed": jnp.ones((4, 2)), "head": {"kernel": jnp.ones((2, 2))}}
        >>> labels = gradtx.path_labels({"embed": "frozen"}, default="trained")
        >>> labels(params)
        {'embed': 'frozen', 'head': {'kernel': 'trained'}}
    """
    ordered = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    for pattern, _ in ordered:
        _patterns(pattern)

    def label(path: tuple, _leaf: Any) -> Any:
        text = param_path(path)
        for pattern, value in ordered:
            if fnmatch.fnmatchcase(text, pattern):
                return value
        if default is None:
            raise ValueError(f"no rule matches the parameter '{text}' and no default label was given")
        return default

    return lambda params: jax.tree_util.tree_map_with_path(label, params)


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask leaves out: a pytree node with no leaves."""


class MaskedState(NamedTuple):
    """The state of :func:`masked`: the inner transform's state over the selected leaves."""

    inner_state: Any


def broadcast_prefix(prefix: PyTree, full: PyTree, full_name: str, prefix_name: str) -> PyTree:
    """``prefix`` shaped like ``full``: returned as it is when it already is, else each of its
    leaves repeated over the subtree of ``full`` it stands for (a mask ``{"encoder": True,
    "decoder": False}`` for parameters nested below those keys). A tree that is neither raises the
    ``ValueError`` naming the first path where the two differ.

    Args:
        prefix: a tree shaped like ``full`` or like a prefix of it.
        full: the tree to match.
        full_name: what ``full`` is, for the error message.
        prefix_name: what ``prefix`` is, for the error message.

    Example:
        >>> from gradtx.transforms.masking import broadcast_prefix
        >>> broadcast_prefix({"a": True, "b": False}, {"a": {"w": 1, "b": 2}, "b": 3}, "params", "mask")
        {'a': {'b': True, 'w': True}, 'b': False}
    """
    if jax.tree.structure(prefix) == jax.tree.structure(full):  # type: ignore[operator]
        return prefix
    try:
        return jax.tree.map(lambda leaf, subtree: jax.tree.map(lambda _: leaf, subtree), prefix, full)
    except (ValueError, TypeError):
        _tree.check_same_structure(full, prefix, full_name, prefix_name)  # raises, naming the difference
        raise


def resolve_mask(mask: PyTree | Callable[[Params], PyTree], params: PyTree) -> PyTree:
    """The mask for ``params``, checked: a ``ValueError`` if it is not shaped like them (or like a
    prefix of them, which is broadcast), a ``TypeError`` naming the first leaf that is not a Python bool.

    Args:
        mask: a tree of Python bools shaped like ``params`` or a prefix of them, or a function of
            ``params`` returning one.
        params: the tree the mask is for.

    Returns:
        The tree of Python bools, shaped like ``params``.
    """
    mask_tree = mask(params) if callable(mask) else mask
    for path, leaf in _tree.leaves_with_path(mask_tree):
        if not isinstance(leaf, bool):
            raise TypeError(f"mask leaves must be Python bools; at '{_tree.path_str(path)}' got {type(leaf).__name__}")
    return broadcast_prefix(mask_tree, params, "the parameters", "the mask")


def _masked_extra_args(selected: PyTree, updates: PyTree, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra arguments shaped like the updates, masked as the updates are; the others as they are."""
    structure = jax.tree.structure(updates)
    return {k: _select(selected, v) if jax.tree.structure(v) == structure else v for k, v in extra_args.items()}  # type: ignore[operator]


def _select(mask_tree: PyTree, values: PyTree) -> PyTree:
    return jax.tree.map(lambda m, v: v if m else MaskedNode(), mask_tree, values)


def masked(
    inner: GradientTransformation,
    mask: PyTree | Callable[[Params], PyTree],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the others through.

    Args:
        inner: the transform for the selected leaves; it sees only them, and its state
            holds only them.
        mask: a tree of Python bools shaped like the parameters or like a prefix of them (a
            bool for a whole subtree), or a function of the parameters returning one (such as
            :func:`path_mask`'s); True selects a leaf.
        mask_compatible_extra_args: mask the extra arguments shaped like the updates (a tree of
            per-parameter values) as the updates are; False passes every extra argument whole.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.masked(gradtx.scale(0.0), {"w": True, "b": False})
        >>> u, _ = tx.update({"w": jnp.ones(1), "b": jnp.ones(1)}, tx.init({"w": jnp.ones(1), "b": jnp.ones(1)}))
        >>> (u["w"].tolist(), u["b"].tolist())
        ([0.0], [1.0])
    """

    def init(params):
        return MaskedState(inner.init(_select(resolve_mask(mask, params), params)))

    def update(updates, state, params=None, **extra_args):
        mask_tree = resolve_mask(mask, updates if params is None else params)
        _tree.check_same_structure(mask_tree, updates, "the mask", "the updates")
        inner_params = None if params is None else _select(mask_tree, params)
        if mask_compatible_extra_args:
            extra_args = _masked_extra_args(mask_tree, updates, extra_args)
        new, inner_state = inner.update(_select(mask_tree, updates), state.inner_state, inner_params, **extra_args)
        merged = jax.tree.map(lambda m, n, u: n if m else u, mask_tree, new, updates)
        return merged, MaskedState(inner_state)

    return GradientTransformation(init, update)


class PartitionState(NamedTuple):
    """``partition``: each label's transform state, over that label's leaves only."""

    inner_states: dict[Any, Any]


MultiTransformState = PartitionState


def _label_tree(param_labels: PyTree | Callable[[Params], PyTree], params: PyTree, known) -> PyTree:
    labels = param_labels(params) if callable(param_labels) else param_labels
    labels = broadcast_prefix(labels, params, "the parameters", "the labels")
    for path, label in _tree.leaves_with_path(labels):
        if label not in known:
            raise ValueError(
                f"the label {label!r} at '{_tree.path_str(path)}' has no transform; the transforms are for {sorted(known, key=str)}"
            )
    return labels


def partition(
    transforms: dict[Any, GradientTransformation],
    param_labels: PyTree | Callable[[Params], PyTree],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Apply a different transform to each group of parameters.

    Each label's transform sees only its leaves, and its state holds only them.
    Also known as ``multi_transform``.

    Args:
        transforms: a dict from each label to its transform; a label without one is a
            ``ValueError``.
        param_labels: each leaf's label: a tree of labels shaped like the parameters or like a
            prefix of them (one label for a whole subtree), or a function of the parameters
            returning one (such as :func:`path_labels`'s).
        mask_compatible_extra_args: give each transform the extra arguments shaped like the
            updates restricted to its leaves; False passes every extra argument whole.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> tx = gradtx.partition({"fast": gradtx.sgd(1.0), "frozen": gradtx.set_to_zero()},
        ...                       {"w": "fast", "b": "frozen"})
        >>> updates, _ = tx.update(params, tx.init(params))
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([-1.0, -1.0], [0.0, 0.0])
    """
    names = list(transforms)

    def init(params):
        labels = _label_tree(param_labels, params, transforms)
        return PartitionState(
            {
                name: transforms[name].init(_select(jax.tree.map(lambda l: l == name, labels), params))  # noqa: B023 (used at once)
                for name in names
            }
        )

    def update(updates, state, params=None, **extra_args):
        labels = _label_tree(param_labels, updates if params is None else params, transforms)
        _tree.check_same_structure(labels, updates, "the labels", "the updates")
        outputs, new_states = {}, {}
        for name in names:
            selected = jax.tree.map(lambda l: l == name, labels)  # noqa: B023 (used at once)
            inner_params = None if params is None else _select(selected, params)
            args = _masked_extra_args(selected, updates, extra_args) if mask_compatible_extra_args else extra_args
            outputs[name], new_states[name] = transforms[name].update(
                _select(selected, updates), state.inner_states[name], inner_params, **args
            )
        merged = jax.tree.map(lambda label, *outs: outs[names.index(label)], labels, *(outputs[n] for n in names))
        return merged, PartitionState(new_states)

    return GradientTransformation(init, update)


multi_transform = partition


def freeze(mask: PyTree | Callable[[Params], PyTree]) -> GradientTransformation:
    """Zero the updates of the leaves where ``mask`` is True (frozen parameters).

    Args:
        mask: a tree of Python bools shaped like the parameters, or a function of the
            parameters returning one; True freezes a leaf.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.freeze({"w": True, "b": False})
        >>> updates, _ = tx.update({"w": jnp.ones(1), "b": jnp.ones(1)}, tx.init({"w": jnp.ones(1), "b": jnp.ones(1)}))
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([0.0], [1.0])
    """

    return masked(set_to_zero(), mask)


def selective_transform(
    optimizer: GradientTransformation,
    *,
    freeze_mask: PyTree | Callable[[Params], PyTree],
) -> GradientTransformation:
    """Run ``optimizer`` on the leaves where ``freeze_mask`` is False; the others get zero updates.

    Args:
        optimizer: the transform for the trained leaves; its state holds only them.
        freeze_mask: a tree of Python bools shaped like the parameters, or a function of
            the parameters returning one; True freezes a leaf.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"w": jnp.ones(1), "b": jnp.ones(1)}
        >>> tx = gradtx.selective_transform(gradtx.sgd(0.5), freeze_mask={"w": False, "b": True})
        >>> updates, _ = tx.update(params, tx.init(params))
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([-0.5], [0.0])
    """

    def labels(params):
        mask = resolve_mask(freeze_mask, params)
        return jax.tree.map(lambda frozen: "frozen" if frozen else "trained", mask)

    return partition({"trained": optimizer, "frozen": set_to_zero()}, labels)
