"""Combining transforms: in sequence (``chain``, ``named_chain``) and on a subset (``masked``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import PyTree
from gradtx.core.base import GradientTransformation
from gradtx.core.control import cond
from gradtx.core.numerics import safe_increment, zero_count

_INTEGER_PARAMS = (
    "an optimizer cannot take fractional steps on an integer parameter (and would keep integer moments); "
    "make it floating point, or keep it out of the optimizer: "
    "gradtx.partition({'train': tx, 'frozen': gradtx.set_to_zero()}, labels)"
)
_INTEGER_UPDATES = "compute gradients in floating point (jax.grad gives float0 for integer inputs)"


@functools.cache
def _inexact(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def _floating(tree: PyTree, what: str, advice: str) -> PyTree:
    """``tree`` with Python numbers as 0-d arrays; a ``TypeError`` naming the first leaf that is not floating point.

    Only Python numbers and leaves with a ``dtype`` are looked at; the paths are
    computed only to write the error.
    """
    leaves = jax.tree.leaves(tree)
    convert = False
    for i, x in enumerate(leaves):
        if isinstance(x, (float, complex)) and not isinstance(x, bool):
            convert = True
            continue
        dtype = jnp.result_type(x) if isinstance(x, (bool, int)) else getattr(x, "dtype", None)
        if dtype is not None and not _inexact(dtype):
            path = _tree.path_str(_tree.leaves_with_path(tree)[i][0])
            kind = (
                f"a Python {type(x).__name__}"
                if isinstance(x, (bool, int))
                else "float0 (the gradient of an integer input)"
                if dtype == jax.dtypes.float0
                else str(dtype)
            )
            raise TypeError(f"{what} must be floating point, but '{path}' is {kind}: {advice}")
    if not convert:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x) if isinstance(x, (float, complex)) else x, tree)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is a tuple of their states.

    Every named optimizer is a chain, and a chain checks what it is given before
    its members see it: parameters (at ``init``) and updates must be floating
    point (a ``TypeError`` names the first integer leaf), updates must match the
    parameters in structure and shapes when ``params`` is given (a ``ValueError``
    names the first differing path), and Python numbers among the leaves are
    taken as 0-d arrays. A member whose state is of the wrong kind (a state made
    by another optimizer) raises a ``TypeError`` naming the member.

    Args:
        *transforms: the transforms to apply, first to last; one that is not a
            ``GradientTransformation`` raises a ``TypeError`` naming its position.

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
        params = _floating(params, "the parameters", _INTEGER_PARAMS)
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            has = f"has {len(state)}" if isinstance(state, tuple) else f"is a {type(state).__name__}, not a tuple"
            raise ValueError(
                f"this chain has {len(transforms)} members but its state {has}; "
                "was the state made by this chain's init? (update takes updates, state, params in that order)"
            )
        updates = _floating(updates, "the updates", _INTEGER_UPDATES)
        if params is not None:
            params = _floating(params, "the parameters", _INTEGER_PARAMS)
            _tree.check_same_structure(params, updates, "the parameters", "the updates", shapes=True)
        new_state = []
        for i, (t, s) in enumerate(zip(transforms, state)):
            try:
                updates, s = t.update(updates, s, params, **extra_args)
            except AttributeError as error:
                if getattr(error, "obj", None) is not s:
                    raise
                raise TypeError(
                    f"chain member {i} cannot read its state: a {type(s).__name__} has no field '{error.name}'. "
                    "Was the state made by another optimizer's init?"
                ) from error
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def named_chain(*named: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like :func:`chain`, but the state is a dict from each member's name to its state.

    Args:
        *named: ``(name, transform)`` pairs, applied first to last; the names key the state
            and must be unique (a ``ValueError`` otherwise).

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


# ------------------------------------------------------------ conditional steps


class ConditionalState(NamedTuple):
    """``conditionally_mask``'s state: its own step count and the inner state (Optax's
    ``ConditionallyMaskState``)."""

    step: jax.Array
    inner_state: Any


ConditionallyMaskState = ConditionalState


class ConditionallyTransformState(NamedTuple):
    """``conditionally_transform``'s state: the inner state and its own step count, in Optax's order."""

    inner_state: Any
    step: jax.Array


def _conditional(inner, should_transform_fn, forward_extra_args, on_skip, kind):

    def init(params):
        return kind(step=zero_count(), inner_state=inner.init(params))

    def update(updates, state, params=None, **extra_args):
        forwarded = extra_args if forward_extra_args else {}

        def run(_):
            return inner.update(updates, state.inner_state, params, **forwarded)

        def skip(_):
            return on_skip(updates), state.inner_state

        new_updates, inner_state = cond(should_transform_fn(state.step), run, skip, None)
        return new_updates, kind(step=safe_increment(state.step), inner_state=inner_state)

    return GradientTransformation(init, update)


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: Callable[[jax.Array], jax.Array],
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Apply ``inner`` at steps where ``should_transform_fn(step)`` is True; elsewhere pass updates through.

    When skipped, the inner state is left exactly as it was.

    Args:
        inner: the transform to apply at the chosen steps.
        should_transform_fn: a function of the step, the number of updates before this one
            (an int32 0-d array, traced), returning a boolean 0-d array.
        forward_extra_args: whether ``inner.update`` receives the extra keyword arguments
            of ``update``; ``False`` drops them.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.conditionally_transform(gradtx.scale(10.0), lambda step: step % 2 == 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.ones(1), state)
        >>> second, state = tx.update(jnp.ones(1), state)
        >>> first.tolist(), second.tolist()
        ([1.0], [10.0])
    """
    return _conditional(inner, should_transform_fn, forward_extra_args, lambda u: u, ConditionallyTransformState)


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: Callable[[jax.Array], jax.Array],
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Apply ``inner`` at steps where ``should_transform_fn(step)`` is True; elsewhere return zeros.

    When skipped, the inner state is left exactly as it was.

    Args:
        inner: the transform to apply at the chosen steps.
        should_transform_fn: a function of the step, the number of updates before this one
            (an int32 0-d array, traced), returning a boolean 0-d array.
        forward_extra_args: whether ``inner.update`` receives the extra keyword arguments
            of ``update``; ``False`` drops them.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.conditionally_mask(gradtx.scale(10.0), lambda step: step >= 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.ones(1), state)
        >>> second, state = tx.update(jnp.ones(1), state)
        >>> first.tolist(), second.tolist()
        ([0.0], [10.0])
    """
    zeros = lambda u: jax.tree.map(jax.numpy.zeros_like, u)  # noqa: E731
    return _conditional(inner, should_transform_fn, forward_extra_args, zeros, ConditionalState)


def with_extra_args_support(tx: Any) -> GradientTransformation:
    """Wrap a transform whose ``update`` takes no keyword arguments so that it ignores them.

    Lets a hand-written ``(init, update)`` pair, or another library's
    transform, sit in a chain that forwards ``value=`` or ``key=``.

    Args:
        tx: anything with ``init`` and ``update(updates, state, params)``; an
            ``update`` that already takes ``**kwargs`` is kept as it is.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> legacy = gradtx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
        >>> tx = gradtx.with_extra_args_support(legacy)
        >>> tx.update(jnp.ones(1), tx.init(None), value=1.0)[0].tolist()
        [1.0]
    """
    import inspect

    try:
        parameters = inspect.signature(tx.update).parameters.values()
    except (TypeError, ValueError):
        parameters = []  # type: ignore[assignment]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return GradientTransformation(tx.init, tx.update)

    def update(updates, state, params=None, **extra_args):
        return tx.update(updates, state, params)

    return GradientTransformation(tx.init, update)
