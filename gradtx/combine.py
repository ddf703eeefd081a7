"""Combining transforms: in sequence (``chain``, ``named_chain``) and on a subset (``masked``)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from gradtx import tree as _tree
from gradtx.base import GradientTransformation, Params, PyTree


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is a tuple of their states.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.chain(gradtx.clip(1.0), gradtx.scale(-0.1))
        >>> tx.update(jnp.array([5.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
        [-0.10000000149011612, -0.05000000074505806]
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain member {i} is not a GradientTransformation: {t!r}")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"this chain has {len(transforms)} members but its state has "
                f"{len(state) if isinstance(state, tuple) else 'no'} entries; "
                "was the state made by this chain's init?"
            )
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def named_chain(*named: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like :func:`chain`, but the state is a dict from each member's name to its state.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.named_chain(("clip", gradtx.clip(1.0)), ("lr", gradtx.scale(-0.1)))
        >>> sorted(tx.init(jnp.zeros(2)))
        ['clip', 'lr']
    """
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain names must be unique, got {names}")
    inner = chain(*(t for _, t in named))

    def init(params):
        return dict(zip(names, inner.init(params)))

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, dict) or sorted(state) != sorted(names):
            raise ValueError(f"the state does not match this named_chain: expected the keys {names}")
        updates, new_state = inner.update(updates, tuple(state[n] for n in names), params, **extra_args)
        return updates, dict(zip(names, new_state))

    return GradientTransformation(init, update)


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask leaves out: a pytree node with no leaves."""


class MaskedState(NamedTuple):
    """The state of :func:`masked`: the inner transform's state over the selected leaves."""

    inner_state: Any


def _mask_tree(mask: PyTree | Callable[[Params], PyTree], params: PyTree) -> PyTree:
    mask_tree = mask(params) if callable(mask) else mask
    _tree.check_same_structure(params, mask_tree, "the parameters", "the mask")
    for path, leaf in _tree.leaves_with_path(mask_tree):
        if not isinstance(leaf, bool):
            raise TypeError(
                f"mask leaves must be Python bools; at '{_tree.path_str(path)}' got {type(leaf).__name__}"
            )
    return mask_tree


def _select(mask_tree: PyTree, values: PyTree) -> PyTree:
    return jax.tree.map(lambda m, v: v if m else MaskedNode(), mask_tree, values)


def masked(inner: GradientTransformation, mask: PyTree | Callable[[Params], PyTree]) -> GradientTransformation:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the others through.

    ``mask`` is a tree of Python bools shaped like the parameters, or a function
    of the parameters returning one. The inner state holds only selected leaves.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.masked(gradtx.scale(0.0), {"w": True, "b": False})
        >>> u, _ = tx.update({"w": jnp.ones(1), "b": jnp.ones(1)}, tx.init({"w": jnp.ones(1), "b": jnp.ones(1)}))
        >>> (u["w"].tolist(), u["b"].tolist())
        ([0.0], [1.0])
    """

    def init(params):
        return MaskedState(inner.init(_select(_mask_tree(mask, params), params)))

    def update(updates, state, params=None, **extra_args):
        mask_tree = _mask_tree(mask, updates if params is None else params)
        _tree.check_same_structure(mask_tree, updates, "the mask", "the updates")
        inner_params = None if params is None else _select(mask_tree, params)
        new, inner_state = inner.update(_select(mask_tree, updates), state.inner_state, inner_params, **extra_args)
        merged = jax.tree.map(lambda m, n, u: n if m else u, mask_tree, new, updates)
        return merged, MaskedState(inner_state)

    return GradientTransformation(init, update)
