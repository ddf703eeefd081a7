"""Injecting hyperparameters: any numeric argument of an optimizer factory becomes a value in the
state, readable and settable as ``state.hyperparams[name]`` (Optax's field), and any argument
may be a schedule, plain (a function of the step) or stateful (an object with its own state).

Every gradtx optimizer already keeps its hyperparameters in its state; the wrapper adds Optax's
``hyperparams`` dict on top and writes it into the inner state before every update, so both
``state.hyperparams["learning_rate"] = 0.01`` (Optax's idiom, outside ``jit``) and
``gradtx.set_hyperparams(state, learning_rate=0.01)`` change the next step.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import HYPERPARAMS_FIELD, Scheduled, float_dtype, forwarded, hyperparam_entries
from gradtx.core.numerics import safe_increment, zero_count


@runtime_checkable
class StatefulSchedule(Protocol):
    """A schedule with a state of its own: ``init()`` makes it, ``update(state, **extra_args)``
    advances it after a step, and ``schedule(state, **extra_args)`` is the value for the step."""

    def init(self) -> Any: ...

    def update(self, state: Any, **extra_args: Any) -> Any: ...

    def __call__(self, state: Any, **extra_args: Any) -> Any: ...


class WrappedScheduleState(NamedTuple):
    """``WrappedSchedule``: the number of steps taken."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count


class WrappedSchedule:
    """A plain schedule ``step -> value`` as a ``StatefulSchedule`` whose state is the step count.

    Args:
        schedule_fn: the schedule, a function of the step count.

    Example:
        >>> import gradtx
        >>> schedule = gradtx.WrappedSchedule(lambda step: 0.1 * step)
        >>> state = schedule.update(schedule.init())
        >>> print(schedule(state))
        0.1
    """

    def __init__(self, schedule_fn: Callable[[Any], Any]):
        self.schedule_fn = schedule_fn

    def init(self) -> WrappedScheduleState:
        return WrappedScheduleState(zero_count())

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        del extra_args
        return WrappedScheduleState(safe_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        del extra_args
        return self.schedule_fn(state.count)


class InjectHyperparamsState(NamedTuple):
    """Optax's state of a wrapper with injected hyperparameters and no stateful schedule."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    inner_state: Any


class InjectStatefulHyperparamsState(NamedTuple):
    """``inject_hyperparams``: the step count; ``hyperparams``, the values the last update used
    (before the first, those it will use), by argument name; the schedules' own states; and the
    inner optimizer's state."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: Any


forwarded(InjectHyperparamsState)  # the injected values are written into the inner state
forwarded(InjectStatefulHyperparamsState)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, (jax.Array, np.ndarray, np.generic)) and np.ndim(value) == 0 and value.dtype != bool


def _write(inner_state: Any, plain: dict[str, Any], scheduled: dict[str, Any]) -> tuple[Any, set[str]]:
    """``inner_state`` with its hyperparameters named in ``plain`` set to those values and those
    named in ``scheduled`` stored as ``Scheduled(value)``, dtypes kept; returns the names found."""
    found: set[str] = set()

    def replace(path, leaf):
        names = [_tree.key_name(k) for k in path]
        if len(names) < 2 or names[-2] != HYPERPARAMS_FIELD:
            return leaf
        name = names[-1]
        old = leaf.value if isinstance(leaf, Scheduled) else leaf
        if name in scheduled:
            found.add(name)
            return Scheduled(jnp.asarray(scheduled[name]).astype(jnp.asarray(old).dtype))
        if name in plain:
            found.add(name)
            return jnp.asarray(plain[name]).astype(jnp.asarray(old).dtype)
        return leaf

    new = jax.tree_util.tree_map_with_path(replace, inner_state, is_leaf=lambda x: isinstance(x, Scheduled))
    return new, found


def inject_stateful_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """``inject_hyperparams`` that also takes stateful schedules (``StatefulSchedule``), such as
    a schedule that reacts to the loss passed as an extra argument.

    Args:
        inner_factory: the optimizer factory, such as :func:`gradtx.adam`.
        static_args: the name, or names, of arguments passed through as they are (callables that
            are not schedules, such as a weight-decay ``mask`` function).
        hyperparam_dtype: the dtype of the values in ``state.hyperparams``; None for float32
            (float64 under x64). The inner state keeps its own dtypes.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> schedule = gradtx.WrappedSchedule(lambda step: 0.1 / (1 + step))
        >>> tx = gradtx.inject_stateful_hyperparams(gradtx.sgd)(learning_rate=schedule)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.ones(1), state)
        >>> print(state.hyperparams["learning_rate"], gradtx.hyperparams(state)["learning_rate"])
        0.1 0.05
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    who = getattr(inner_factory, "__name__", repr(inner_factory))

    def build(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        passed = dict(bound.arguments)
        bound.apply_defaults()
        given = dict(bound.arguments)  # defaults too: Optax puts every numeric argument in the dict
        schedules: dict[str, StatefulSchedule] = {}
        for name, value in passed.items():
            if name in static or isinstance(value, type):
                continue
            if isinstance(value, StatefulSchedule):
                schedules[name] = value
            elif callable(value):
                schedules[name] = WrappedSchedule(value)
        dtype = hyperparam_dtype or float_dtype()
        first_states = {k: s.init() for k, s in schedules.items()}
        placeholders = {k: jnp.asarray(s(first_states[k]), dtype=float_dtype()) for k, s in schedules.items()}
        inner = inner_factory(**{**given, **placeholders})
        numbers_given = {k: v for k, v in given.items() if k not in static and k not in schedules and _is_number(v)}

        def values_at(states: dict[str, Any], extra_args: dict[str, Any]) -> dict[str, jax.Array]:
            return {k: jnp.asarray(s(states[k], **extra_args)) for k, s in schedules.items()}

        def init(params):
            inner_state = inner.init(params)
            kept = {e.name for e in hyperparam_entries(inner_state)}
            missing = sorted(set(schedules) - kept)
            if missing:
                raise ValueError(
                    f"inject_hyperparams: the state of {who} keeps no hyperparameter named {missing}; "
                    f"it keeps {sorted(kept)}"
                )
            states = {k: s.init() for k, s in schedules.items()}
            scheduled = values_at(states, {})
            inner_state, _ = _write(inner_state, {}, scheduled)
            plain = {k: v for k, v in numbers_given.items() if k in kept}
            hyperparams = {k: jnp.asarray(v, dtype) for k, v in {**plain, **scheduled}.items()}
            return InjectStatefulHyperparamsState(zero_count(), hyperparams, states, inner_state)

        def update(updates, state, params=None, **extra_args):
            used = values_at(state.hyperparams_states, extra_args)
            plain = {k: v for k, v in state.hyperparams.items() if k not in schedules}
            inner_state, _ = _write(state.inner_state, plain, used)
            updates, inner_state = inner.update(updates, inner_state, params, **extra_args)
            states = {k: s.update(state.hyperparams_states[k], **extra_args) for k, s in schedules.items()}
            inner_state, _ = _write(inner_state, {}, values_at(states, extra_args))  # what the next step uses
            hyperparams = {k: jnp.asarray(used.get(k, v)).astype(dtype) for k, v in state.hyperparams.items()}
            return updates, InjectStatefulHyperparamsState(
                safe_increment(state.count), hyperparams, states, inner_state
            )

        return GradientTransformation(init, update)

    return build


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Let any numeric argument of an optimizer factory be a schedule, and put every numeric
    argument in ``state.hyperparams``, by name, as Optax does.

    ``inject_hyperparams(gradtx.adam)(learning_rate=schedule)`` builds Adam whose learning rate
    follows ``schedule``: before each update the schedule's value for that step is written into the
    state. ``state.hyperparams`` holds the values the last update used (as in Optax); assigning to
    it, or calling :func:`gradtx.set_hyperparams`, changes the next update; a scheduled value is
    recomputed at every step. :func:`gradtx.hyperparams` reports, for a scheduled value, the one
    the next update uses.

    Args:
        inner_factory: the optimizer factory, such as :func:`gradtx.adam`; each argument given
            as a schedule must be a hyperparameter its state keeps by that name (``init`` raises a
            ``ValueError`` otherwise); a numeric argument the state does not keep is passed to the
            factory and left out of ``state.hyperparams``.
        static_args: the name, or names, of arguments that are callables but not schedules
            (such as a weight-decay ``mask`` function), passed through as they are.
        hyperparam_dtype: the dtype of the values in ``state.hyperparams``; None for float32
            (float64 under x64). The inner state keeps its own dtypes.

    Returns:
        A function taking ``inner_factory``'s arguments and returning the ``GradientTransformation``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=lambda t: 0.1 / (1 + t), momentum=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.ones(1), state)
        >>> gradtx.hyperparams(state)
        {'momentum': 0.9, 'learning_rate': 0.05}
        >>> state.hyperparams["momentum"] = 0.5  # Optax's idiom: the next update uses 0.5
        >>> print(state.hyperparams["learning_rate"])  # the value the last update used
        0.1
    """
    return inject_stateful_hyperparams(inner_factory, static_args, hyperparam_dtype)
