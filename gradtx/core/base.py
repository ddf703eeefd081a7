"""The optimizer protocol: a gradient transformation is a pure ``(init, update)`` pair.

``init(params) -> state`` builds the state for a tree of parameters;
``update(updates, state, params=None, **extra_args) -> (updates, state)`` turns
incoming updates (usually gradients) into outgoing updates and a new state.
Every transform accepts keyword ``extra_args`` and ignores the ones it does not
use, so a chain can forward a loss value or a PRNG key to the member that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import OptState, Params, PyTree, Updates
from gradtx.core.recipe import recipe


class InitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class UpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


TransformInitFn = InitFn
"""Optax's name for the type of ``init``."""

TransformUpdateFn = UpdateFn
"""Optax's name for the type of ``update``."""

TransformUpdateExtraArgsFn = UpdateFn
"""Optax's name for ``update`` taking ``**extra_args``: every gradtx ``update`` does."""


class GradientTransformation(NamedTuple):
    """An optimizer or one block of one: ``init(params) -> state`` and
    ``update(updates, state, params=None, **extra_args) -> (updates, state)``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale(0.5)
        >>> state = tx.init({"w": jnp.ones(2)})
        >>> updates, state = tx.update({"w": jnp.ones(2)}, state)
        >>> updates["w"].tolist()
        [0.5, 0.5]
    """

    init: InitFn
    update: UpdateFn

    # Equal when built the same way (gradtx.core.recipe), so that gradtx.adam(1e-3) ==
    # gradtx.adam(1e-3) and one passed as a static argument of jax.jit is not recompiled.
    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, GradientTransformation):
            return (recipe(self.init), recipe(self.update)) == (recipe(other.init), recipe(other.update))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((recipe(self.init), recipe(self.update)))


GradientTransformationExtraArgs = GradientTransformation
"""Optax's name for a transformation whose ``update`` takes extra arguments; in gradtx that is
every ``GradientTransformation``, so the two names are one class."""


class EmptyState(NamedTuple):
    """The state of a transform that keeps none."""


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a transform without state: ignores ``params`` and returns ``EmptyState()``.

    Args:
        params: the parameters (unused).

    Example:
        >>> import gradtx
        >>> gradtx.init_empty_state({"w": 1.0})
        EmptyState()
    """
    del params
    return EmptyState()


def check_state(who: str, state: Any, kind: type) -> None:
    """Raise a ``TypeError`` naming ``who`` when ``state`` is not the ``kind`` of state its ``init`` makes.

    For wrappers, whose state holds the inner optimizer's: given the inner state
    by mistake, they say so instead of failing on a missing field.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> inner = gradtx.sgd(0.1)
        >>> gradtx.apply_if_finite(inner, 3).update(jnp.ones(2), inner.init(jnp.ones(2)))
        Traceback (most recent call last):
        ...
        TypeError: apply_if_finite was given a state of type tuple, not the ApplyIfFiniteState its init makes; ...
    """
    if not isinstance(state, kind):
        raise TypeError(
            f"{who} was given a state of type {type(state).__name__}, not the {kind.__name__} its init makes; "
            f"was it the inner optimizer's state? Pass the state from {who}'s own init "
            "(update takes updates, state, params in that order)"
        )


def identity() -> GradientTransformation:
    """The transform that returns its updates unchanged and keeps no state."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """A transform from a pure function ``f(updates, params) -> updates``.

    Args:
        f: the function of the whole update tree and the parameters (None when not given).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> negate = gradtx.stateless(lambda u, p: jax.tree.map(jnp.negative, u))
        >>> negate.update(jnp.ones(2), negate.init(jnp.ones(2)))[0].tolist()
        [-1.0, -1.0]
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return f(updates, params), state

    return GradientTransformation(init, update)


def stateless_with_tree_map(f: Callable[[jax.Array, jax.Array | None], jax.Array]) -> GradientTransformation:
    """A transform from a function of one leaf, ``f(update, param) -> update``, applied leaf by leaf
    (``param`` is None when no parameters are given).

    Args:
        f: the function of one update leaf and its parameter leaf.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> halve = gradtx.stateless_with_tree_map(lambda g, p: g / 2)
        >>> halve.update({"w": jnp.ones(2)}, halve.init(None))[0]["w"].tolist()
        [0.5, 0.5]
    """

    def leafwise(updates, params):
        if params is None:
            return jax.tree.map(lambda g: f(g, None), updates)
        return jax.tree.map(f, updates, params)

    return stateless(leafwise)


def set_to_zero() -> GradientTransformation:
    """The transform that replaces every update by zeros (for frozen parameters)."""
    return stateless(lambda updates, params: jax.tree.map(jnp.zeros_like, updates))


def negate() -> GradientTransformation:
    """The transform that flips the sign of every update: a direction to ascend becomes one to descend.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.base import negate
        >>> tx = negate()
        >>> tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))[0].tolist()
        [-1.0, 2.0]
    """
    return stateless(lambda updates, params: jax.tree.map(jnp.negative, updates))


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return ``params + updates``, each leaf in its parameter's dtype.

    ``None`` leaves stay ``None``. A tree of updates that does not match the
    parameters, in structure or in a leaf's shape, raises a ``ValueError`` naming
    the first differing path. An integer parameter keeps its value under a
    ``float0`` update (the gradient JAX gives an integer input) and refuses a
    floating-point one with a ``TypeError``, since the cast would round it away.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> gradtx.apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, -0.25)})["w"].tolist()
        [0.75, 0.75]
    """
    _tree.check_same_structure(params, updates, "params", "updates", shapes=True)
    return jax.tree_util.tree_map_with_path(_add_update, params, updates)


def _add_update(path, p, u):
    dtype = jnp.asarray(p).dtype
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.asarray(p + u).astype(dtype)
    u_dtype = u.dtype if hasattr(u, "dtype") else jnp.result_type(u)
    if u_dtype == jax.dtypes.float0:
        return p
    if jnp.issubdtype(u_dtype, jnp.inexact):
        raise TypeError(
            f"apply_updates: the parameter '{_tree.path_str(path)}' is {dtype} but its update is "
            f"{u_dtype}; adding it would round the update away. Make the parameter "
            "floating point, or keep it out of the optimizer (gradtx.partition with gradtx.set_to_zero())"
        )
    return jnp.asarray(p + u).astype(dtype)


def incremental_update(new_tensors: PyTree, old_tensors: PyTree, step_size: float | jax.Array) -> PyTree:
    """Polyak averaging: ``step_size * new + (1 - step_size) * old``, leaf by leaf.

    Used for target networks and weight averages.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> gradtx.incremental_update(jnp.ones(2), jnp.zeros(2), 0.1).tolist()
        [0.10000000149011612, 0.10000000149011612]
    """
    _tree.check_same_structure(old_tensors, new_tensors, "old_tensors", "new_tensors")
    return jax.tree.map(
        lambda new, old: (step_size * new + (1.0 - step_size) * old).astype(old.dtype),
        new_tensors,
        old_tensors,
    )


def periodic_update(new_tensors: PyTree, old_tensors: PyTree, steps: jax.Array, update_period: int) -> PyTree:
    """Return ``new_tensors`` when ``steps`` is a multiple of ``update_period``, else ``old_tensors``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> gradtx.periodic_update(jnp.ones(1), jnp.zeros(1), jnp.asarray(4), 2).tolist()
        [1.0]
    """
    if isinstance(update_period, int) and update_period < 1:
        raise ValueError(f"update_period must be a positive integer, got {update_period!r}")
    _tree.check_same_structure(old_tensors, new_tensors, "old_tensors", "new_tensors")
    return jax.lax.cond(jnp.mod(steps, update_period) == 0, lambda: new_tensors, lambda: old_tensors)
