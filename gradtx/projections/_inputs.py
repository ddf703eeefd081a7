"""The checks every projection makes of its arguments, each error naming the projection and the argument."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import paths as _paths
from gradtx.core.aliases import PyTree
from gradtx.core.validation import check_nonnegative, concrete_value


def check_number(who: str, name: str, value: Any) -> Any:
    """``value`` when it is one number: a Python number or a 0-d array (traced or not);
    a ``TypeError`` or ``ValueError`` naming ``who`` and ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Number, np.generic, np.ndarray, jax.Array)):
        raise TypeError(f"{who}: {name} must be a number or a 0-d array, got {type(value).__name__}")
    shape = getattr(value, "shape", ())
    if shape != ():
        raise ValueError(f"{who}: {name} must be a number or a 0-d array, got an array of shape {shape}")
    if jnp.result_type(value) == jnp.bool_:
        raise TypeError(f"{who}: {name} must be a number or a 0-d array, got a boolean")
    return value


def check_scale(who: str, scale: Any) -> Any:
    """The radius or size of a set: one real number, at least 0 when it is known now."""
    check_number(who, "scale", scale)
    if jnp.iscomplexobj(scale):
        raise TypeError(f"{who}: scale must be a real number, got {scale!r}")
    try:
        return check_nonnegative("scale", scale)
    except ValueError as error:
        raise ValueError(f"{who}: {error}") from None


def check_leaves(who: str, tree: PyTree, *, integers: bool = False, complex_ok: bool = False) -> list[jax.Array]:
    """The leaves of ``tree`` as arrays; a ``TypeError`` naming ``who`` and the first leaf (by its
    path) whose dtype the projection has no meaning for."""
    leaves = []
    for path, leaf in _paths.leaves_with_path(tree):
        leaf = jnp.asarray(leaf)
        where = f"'{_paths.path_str(path)}' is {leaf.dtype}"
        if leaf.dtype == jnp.bool_ or (jnp.issubdtype(leaf.dtype, jnp.integer) and not integers):
            kind = "real or integer" if integers else "floating-point"
            raise TypeError(f"{who} needs {kind} leaves: {where}")
        if jnp.iscomplexobj(leaf) and not complex_ok:
            raise TypeError(f"{who} does not support complex leaves: {where} (the set is defined by an order)")
        leaves.append(leaf)
    return leaves


def check_like(who: str, x: PyTree, a: PyTree, x_name: str = "x", a_name: str = "a") -> None:
    """A ``ValueError`` naming ``who`` and the first differing path unless ``a`` has the structure
    and the leaf shapes of ``x``."""
    try:
        _paths.check_same_structure(x, a, x_name, a_name, shapes=True)
    except ValueError as error:
        raise ValueError(f"{who}: {error}") from None


def compute_dtype(*leaf_lists: list[jax.Array]) -> Any:
    """The dtype a projection computes in: the promotion of all the leaves, at least float32."""
    leaves = [x for leaves in leaf_lists for x in leaves]
    return jnp.promote_types(jnp.result_type(*leaves) if leaves else jnp.float32, jnp.float32)


def known(value: Any) -> Any:
    """``value`` as a Python number when it is known now, else None."""
    return concrete_value(value)
